"""Pre-train BERT from the command line: ``python -m minibert.pretrain`` (Devlin et al. 2019, Appendix A.2).

The pipeline, end to end:

1. documents (:func:`minibert.corpus.load_corpora`: the book's stand-ins for Wikipedia and BookCorpus, or the
   hub's corpora by name when no local mirror is configured);
2. a held-out slice of documents (every ``eval_every_nth`` document) for evaluation, the rest for training;
3. instances with static masks, as Google's ``create_pretraining_data.py``
   (:func:`minibert.pretraining.create_pretraining_dataset`);
4. batches in Google's sparse format (``masked_lm_positions``: the MLM head runs only at masked positions);
5. :class:`minibert.train.Trainer`: AdamW, linear warmup and decay, clipping, checkpoints;
6. the model (``save_pretrained``: config.json + model.safetensors) and the vocabulary in ``--out``.

The paper trains 90% of the steps on sequences of 128 tokens and the last 10% on 512 (Appendix A.2), "to
learn the positional embeddings". ``--phase2-steps N --phase2-seq-len 512`` does that in one run (one
optimizer, one schedule); running twice, the second time with ``--init-from`` the first run's output and
``--max-seq-length 512``, does it as Google's scripts did (their second run starts a new optimizer).

Examples::

    python -m minibert.pretrain --steps 300 --out runs/tiny                       # tiny model, CPU
    python -m minibert.pretrain --steps 300 --out runs/tiny --resume              # continue after a stop
    torchrun --nproc_per_node=8 -m minibert.pretrain --config base --batch-size 32 \\
        --steps 900000 --phase2-steps 100000 --lr 1e-4 --warmup 10000 --compile --out runs/base
    # several machines: the same on every node, with --nnodes=N --node-rank=i --rdzv-endpoint=host:port

Safety: every flag is checked before any data is read (exit status 2, the message names the flag); a
lock file makes a second run into the same ``--out`` fail at once; a run already in ``--out`` is replaced
only with ``--overwrite``; ``--resume`` needs a checkpoint and refuses settings that differ from the
checkpoint's, listing them (``--allow-config-change`` continues with the new ones; the model's shape never
changes). Checkpoints are written every ``--checkpoint-minutes`` (default 10) or ``--checkpoint-every``
steps, on Ctrl-C/SIGTERM (exit status 130/143) and on an error; a diverged run (NaN or infinite loss or
gradient norm) stops with exit status 1 and writes no model.

``--batch-size`` is per process and micro-batch; the global batch is batch_size x grad_accum x processes
(the paper's is 256 sequences).

Speed (issue 14): the instances are held as padded NumPy arrays (a batch is a slice of rows); on CUDA four
DataLoader workers collate ahead (``--num-workers``); a step reads nothing back from the GPU except every
``--log-every`` steps; ``--compile`` pads every batch to the phase's length (``--static-shapes``), so the
compiled step sees one shape; ``--compile-mode reduce-overhead`` adds CUDA graphs and ``--fused-qkv`` one
Q/K/V matmul per layer. None of them changes the batches or the checkpoints.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .atomic import atomic_write_text, remove_stale_temporaries
from .corpus import load_corpora
from .train import (Batches, CheckpointLoadError, NonFiniteError, TrainConfig, Trainer, TrainingInterrupted,
                    cleanup_distributed, evaluate, read_checkpoint, set_seed, setup_distributed)
from .wordpiece_training import train_tokenizer

LOCAL_CORPORA = ("wikipedia_summaries", "books")


@dataclass
class PretrainConfig:
    """Everything a run needs; the CLI flags map one to one onto these fields."""
    config: str = "tiny"                  # BertConfig preset: tiny, mini, small, medium, base, large
    corpora: tuple[str, ...] = LOCAL_CORPORA
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20     # Google: 20 for 128 tokens, 80 for 512
    dupe_factor: int = 5                  # Google: 10 (each document is cut and masked that many times)
    max_documents: int | None = None      # per corpus, for quick runs
    eval_every_nth: int = 50              # every n-th document is held out for evaluation
    vocab_size: int | None = None         # learn a WordPiece vocabulary of this size (default: bert-base-uncased's)
    batch_size: int = 32                  # per process and micro-batch
    grad_accum: int = 1
    steps: int = 1000                     # all phases
    phase2_steps: int = 0                 # the last steps, on longer sequences
    phase2_seq_len: int = 512
    phase2_batch_size: int | None = None  # default: batch_size
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    data_seed: int = 12345                # Google's create_pretraining_data.py default random_seed
    out: str = "runs/pretrain"
    resume: bool = False
    init_from: str | None = None
    compile: bool = False
    compile_mode: str | None = None       # torch.compile mode; "reduce-overhead": CUDA graphs
    static_shapes: bool | None = None     # pad every batch to the phase's length (default: with --compile)
    num_workers: int | None = None        # DataLoader workers collating ahead (default: 4 on CUDA, 0 on CPU)
    fused_qkv: bool = False               # one Q/K/V matmul (the same weights, the same parameter names)
    device: str | None = None
    log_every: int = 10
    checkpoint_every: int = 0             # steps between checkpoints (0: by time only)
    checkpoint_minutes: float = 10.0      # minutes between checkpoints (0: by steps only)
    eval_batches: int = 20
    dropout: float | None = None          # override hidden and attention dropout (default: the config's 0.1)
    config_overrides: dict = field(default_factory=dict)
    overwrite: bool = False               # replace a run already in ``out``
    allow_changes: bool = False           # --resume with settings that differ from the checkpoint's


# Fields that do not change what a run computes: they may differ between a run and its resume.
BOOKKEEPING = ("out", "resume", "overwrite", "allow_changes", "compile", "compile_mode", "static_shapes",
               "num_workers", "fused_qkv", "device", "log_every",
               "checkpoint_every", "checkpoint_minutes", "eval_batches")
# Fields that fix the model's shape: a resume can never change them.
MODEL_FIELDS = ("config", "config_overrides", "vocab_size")
# What a run leaves in its folder; one of them there means the folder holds a run.
RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "model.safetensors", "config.json", "eval.json", "vocab.txt",
             "tokenizer_config.json", "tokenizer.json", "pretrain_config.json")
LOCK_NAME = ".minibert.lock"


class RunError(RuntimeError):
    """The output folder cannot take this run: in use, holding another run, or no checkpoint to resume."""


def flag(name: str) -> str:
    """The command-line flag of a PretrainConfig field: ``warmup`` -> ``--warmup``."""
    return "--" + name.replace("_", "-")


def validate(cfg: PretrainConfig) -> None:
    """Raise ValueError naming the flag of the first setting that cannot work; reads no data.

    Checks every number's range, the relations between flags (``--warmup`` <= ``--steps``, sequence
    lengths within the model's position table, ...), ``--device``, ``--init-from`` and ``--out``.
    """
    from .checkpoint import PYTORCH_NAME, SAFETENSORS_NAME
    from .config import PRESETS, BertConfig

    def positive_int(name, value, minimum=1):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{flag(name)} must be an integer >= {minimum}, got {value!r}")

    for name in ("steps", "batch_size", "grad_accum", "max_seq_length", "max_predictions_per_seq",
                 "dupe_factor", "log_every", "eval_batches"):
        positive_int(name, getattr(cfg, name))
    positive_int("eval_every_nth", cfg.eval_every_nth, 2)          # 1 would hold out every document
    positive_int("checkpoint_every", cfg.checkpoint_every, 0)
    positive_int("phase2_steps", cfg.phase2_steps, 0)
    for name in ("max_documents", "phase2_batch_size"):
        if getattr(cfg, name) is not None:
            positive_int(name, getattr(cfg, name))
    if cfg.vocab_size is not None:
        positive_int("vocab_size", cfg.vocab_size, MIN_VOCAB_SIZE)
        if cfg.init_from:
            raise ValueError("--vocab-size cannot be used with --init-from: the model there has its vocabulary "
                             "(its word-embedding matrix) already")
    if cfg.phase2_steps >= cfg.steps:
        raise ValueError(f"--phase2-steps {cfg.phase2_steps} must be smaller than --steps {cfg.steps}")
    positive_int("warmup", cfg.warmup, 0)
    if cfg.warmup > cfg.steps:
        raise ValueError(f"--warmup {cfg.warmup} is larger than --steps {cfg.steps}")
    if not (isinstance(cfg.seed, int) and 0 <= cfg.seed < 2**63):
        raise ValueError(f"--seed must be an integer in [0, 2**63), got {cfg.seed!r}")
    if not (isinstance(cfg.lr, (int, float)) and math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ValueError(f"--lr must be a positive finite number, got {cfg.lr!r}")
    if not (isinstance(cfg.weight_decay, (int, float)) and math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise ValueError(f"--weight-decay must be a finite number >= 0, got {cfg.weight_decay!r}")
    if cfg.dropout is not None and not 0 <= cfg.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {cfg.dropout!r}")
    if not (math.isfinite(cfg.checkpoint_minutes) and cfg.checkpoint_minutes >= 0):
        raise ValueError(f"--checkpoint-minutes must be a finite number >= 0, got {cfg.checkpoint_minutes!r}")
    if cfg.max_predictions_per_seq >= cfg.max_seq_length:
        raise ValueError(f"--max-predictions-per-seq {cfg.max_predictions_per_seq} must be smaller than "
                         f"--max-seq-length {cfg.max_seq_length}")
    if cfg.max_seq_length < 8:
        raise ValueError(f"--max-seq-length must be at least 8 ([CLS], two [SEP] and a few tokens), got {cfg.max_seq_length}")
    if not cfg.corpora:
        raise ValueError("--corpora needs at least one corpus name")
    from .data import DATASETS
    unknown = [name for name in cfg.corpora if name not in DATASETS]
    if unknown:
        raise ValueError(f"--corpora: unknown corpus name(s) {', '.join(unknown)}; known: {', '.join(LOCAL_CORPORA)}")
    check_device(cfg.device)
    if cfg.num_workers is not None:
        positive_int("num_workers", cfg.num_workers, 0)
    if cfg.compile_mode not in (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
        raise ValueError(f"--compile-mode must be default, reduce-overhead, max-autotune or "
                         f"max-autotune-no-cudagraphs, got {cfg.compile_mode!r}")
    if cfg.compile_mode is not None and not cfg.compile:
        raise ValueError(f"--compile-mode {cfg.compile_mode} needs --compile")
    # The position table: the preset's (or --init-from's) max_position_embeddings.
    if cfg.init_from is not None:
        source = Path(cfg.init_from)
        if not (source / "config.json").is_file():
            raise ValueError(f"--init-from {cfg.init_from!r} is not a model folder (no config.json in it)")
        if not any((source / name).is_file() for name in (SAFETENSORS_NAME, PYTORCH_NAME)):
            raise ValueError(f"--init-from {cfg.init_from!r} has a config.json but no weights "
                             f"({SAFETENSORS_NAME} or {PYTORCH_NAME})")
        positions = BertConfig.from_pretrained(source).max_position_embeddings
        where = f"--init-from {cfg.init_from}"
    else:
        if cfg.config not in PRESETS:
            raise ValueError(f"--config must be one of {', '.join(PRESETS)}, got {cfg.config!r}")
        positions = cfg.config_overrides.get("max_position_embeddings", BertConfig.max_position_embeddings)
        where = f"--config {cfg.config}"
    if cfg.max_seq_length > positions:
        raise ValueError(f"--max-seq-length {cfg.max_seq_length} is larger than the model's position table "
                         f"({where}: max_position_embeddings {positions})")
    if cfg.phase2_steps:
        positive_int("phase2_seq_len", cfg.phase2_seq_len, 8)
        if cfg.phase2_seq_len > positions:
            raise ValueError(f"--phase2-seq-len {cfg.phase2_seq_len} is larger than the model's position table "
                             f"({where}: max_position_embeddings {positions})")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {cfg.out} is a file, not a folder")
    if cfg.resume and cfg.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: continue the run, or replace it")


def check_device(device: str | None) -> None:
    """Raise ValueError unless ``--device`` is None, cpu, or cuda[:N] with that GPU present."""
    if device is None or device == "cpu":
        return
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not match:
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold ``out/.minibert.lock`` for the run: a second run into the same folder fails at once.

    The lock is an OS file lock (``filelock``), released when the process ends, even by SIGKILL.
    A run that fails leaves no trace of the lock: the lock file goes if this run made it, and so does
    ``out`` if this run made it and nothing else is in it (a folder that was there before stays).
    """
    from filelock import FileLock, Timeout

    made = [p for p in (out, *out.parents) if not p.exists()]       # the folders mkdir will create
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    lock_existed = path.exists()
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunError(f"--out {out} is in use by another run (it holds the lock {path}); "
                       "wait for that run to end or choose another --out") from None
    failed = True
    try:
        yield
        failed = False
    finally:
        if failed and not lock_existed:
            path.unlink(missing_ok=True)         # still held: no other run can have taken it meanwhile
        lock.release()
        if failed:
            for folder in made:                  # innermost first; rmdir refuses a folder that has files
                try:
                    folder.rmdir()
                except OSError:
                    break


def run_config_changes(saved: dict, cfg: PretrainConfig) -> list[tuple[str, object, object]]:
    """(field, checkpoint's value, this run's value) for every setting that changes what the run computes."""
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))          # tuples as lists, as stored
    return [(name, saved.get(name), now[name]) for name in now
            if name not in BOOKKEEPING and saved.get(name) != now[name]]


def check_resume(state: dict, cfg: PretrainConfig, path: Path) -> list[str]:
    """Compare the checkpoint's run configuration with ``cfg``; raise RunError listing forbidden changes.

    Returns the names of the fields that changed (allowed by ``cfg.allow_changes``).
    """
    recorded = state.get("run", {}).get("pretrain_config")
    if recorded is None:
        if cfg.allow_changes:
            return []
        raise RunError(f"{path} does not record the settings of its run, so a resume cannot check them; "
                       "pass --allow-config-change to resume anyway")
    changes = run_config_changes(json.loads(recorded), cfg)
    if not changes:
        return []
    listing = "; ".join(f"{flag(n)}: checkpoint {old!r}, now {new!r}" for n, old, new in changes)
    model_changes = [n for n, _, _ in changes if n in MODEL_FIELDS]
    if model_changes:
        raise RunError(f"--resume cannot change the model ({listing}); the checkpoint {path} holds a "
                       f"different architecture")
    if not cfg.allow_changes:
        raise RunError(f"--resume with settings that differ from the checkpoint's ({listing}); they would make "
                       f"this a different run. Use the checkpoint's values, or pass --allow-config-change to "
                       f"continue with the new ones")
    print(f"resuming with changed settings: {listing}", file=sys.stderr)
    return [n for n, _, _ in changes]


def prepare_out(cfg: PretrainConfig, out: Path) -> dict | None:
    """Check ``out`` for this run (under the lock); returns the checkpoint to resume from, or None.

    Removes temporary files of killed saves; with ``--overwrite``, the files of the previous run.
    """
    remove_stale_temporaries(out, RUN_FILES)
    checkpoint = out / "checkpoint.pt"
    if cfg.resume:
        if not checkpoint.is_file():
            raise RunError(f"--resume: there is no checkpoint to resume from at {checkpoint} "
                           "(is --out right? leave out --resume to start a new run)")
        state = read_checkpoint(checkpoint)
        return state
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not cfg.overwrite:
        raise RunError(f"--out {out} already holds a run ({', '.join(existing)}); pass --resume to continue "
                       "it, --overwrite to replace it, or choose another --out")
    for name in existing:                                           # --overwrite: a clean folder
        (out / name).unlink()
    return None


# Room for the five special tokens and an alphabet: a smaller vocabulary could not spell the corpus.
MIN_VOCAB_SIZE = 200


def train_vocabulary(cfg: PretrainConfig):
    """A WordPiece vocabulary of ``cfg.vocab_size`` entries learned on the run's training documents (the
    held-out ones excluded), with Chapter 1's trainer (:func:`minibert.wordpiece_training.train_tokenizer`),
    lowercased as bert-base-uncased. About 20 s for the book's two corpora (1.9 million words) on one core.

    Google pre-trained with a fixed 30,522-entry vocabulary; a small model on a small corpus spends most of its
    parameters and output-layer time on that vocabulary, so the book's own runs learn one (Chapter 7).
    """
    return learn_vocabulary(cfg.corpora, cfg.vocab_size, max_documents=cfg.max_documents,
                            eval_every_nth=cfg.eval_every_nth)


def learn_vocabulary(corpora, vocab_size: int, *, max_documents: int | None, eval_every_nth: int):
    """A tokenizer with a WordPiece vocabulary of ``vocab_size`` entries learned on the documents of ``corpora``
    (the first ``max_documents`` of each) except every ``eval_every_nth`` one, which is held out."""
    corpus = load_corpora(corpora, max_documents=max_documents)
    texts = (text for i, text in enumerate(corpus["text"]) if i % eval_every_nth != 0)
    return train_tokenizer(texts, vocab_size=vocab_size)


def load_tokenizer(cfg: PretrainConfig | None = None, out: Path | None = None):
    """The run's tokenizer: bert-base-uncased's vocabulary, or with ``cfg.vocab_size`` one learned for the run
    (:func:`train_vocabulary`; a resumed run reads the one it saved in ``out``)."""
    from .data import vocab_path
    from .tokenizer import BertTokenizer

    if cfg is None or cfg.vocab_size is None:
        return BertTokenizer.from_pretrained(vocab_path())
    if cfg.resume and out is not None and (out / "vocab.txt").is_file():
        return BertTokenizer.from_pretrained(out)
    return train_vocabulary(cfg)


def build_datasets(cfg: PretrainConfig, tokenizer, max_seq_length: int, max_predictions: int):
    """(train instances, eval instances): documents split by position, instances as Google builds them."""
    from .pretraining import create_pretraining_dataset

    corpus = load_corpora(cfg.corpora, max_documents=cfg.max_documents)
    held_out = [i for i in range(len(corpus)) if i % cfg.eval_every_nth == 0]
    if len(held_out) < 2:
        raise ValueError(f"holding out every {cfg.eval_every_nth}-th of {len(corpus)} documents leaves "
                         f"{len(held_out)} for evaluation; next sentence prediction needs at least 2")
    train_docs = corpus.filter(lambda _, i: i % cfg.eval_every_nth != 0, with_indices=True)
    eval_docs = corpus.select(held_out)
    common = dict(max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions)
    train = create_pretraining_dataset(train_docs, tokenizer, dupe_factor=cfg.dupe_factor, seed=cfg.data_seed,
                                       **common)
    evaluation = create_pretraining_dataset(eval_docs, tokenizer, dupe_factor=1, seed=cfg.data_seed + 1, **common)
    return train, evaluation


def build_model(cfg: PretrainConfig, vocab_size: int):
    from .config import BertConfig
    from .model import BertForPreTraining

    overrides = dict(cfg.config_overrides)
    if cfg.dropout is not None:
        overrides.update(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
    if cfg.init_from:
        model = BertForPreTraining.from_pretrained(cfg.init_from, **overrides)
    else:
        model = BertForPreTraining(BertConfig.from_preset(cfg.config, vocab_size=vocab_size, **overrides))
    return model.set_fused_qkv(cfg.fused_qkv)


def pretrain(cfg: PretrainConfig, *, on_record=None) -> dict:
    """Run pre-training as ``cfg`` says; returns a summary (history, evaluation, output folder).

    Before any data is read: the settings are checked (:func:`validate`), ``cfg.out`` is locked against a
    second run, and an existing run there is refused unless ``cfg.overwrite`` (or continued, ``cfg.resume``,
    when its recorded settings match; :func:`check_resume`). Checkpoints are written every
    ``checkpoint_every`` steps / ``checkpoint_minutes`` minutes, on SIGINT/SIGTERM and on an error.
    Raises :class:`RunError`, :class:`~minibert.train.CheckpointLoadError`,
    :class:`~minibert.train.NonFiniteError` (the run diverged; no model is written) or
    :class:`~minibert.train.TrainingInterrupted`. ``on_record`` is called with each metrics record (every
    ``cfg.log_every`` steps; see :meth:`~minibert.train.Trainer.train`).
    """
    from .pretraining import DataCollatorForPreTraining

    validate(cfg)
    info = setup_distributed(cfg.device)
    out = Path(cfg.out)
    lock = run_lock(out) if info.is_main else contextlib.nullcontext()
    with lock:
        saved = prepare_out(cfg, out) if info.is_main else None
        if info.distributed:                                        # every rank resumes, or none
            flags = [saved is not None]
            torch.distributed.broadcast_object_list(flags, src=0)
            if flags[0] and saved is None:
                saved = read_checkpoint(out / "checkpoint.pt")
        changed = check_resume(saved, cfg, out / "checkpoint.pt") if saved is not None else []
        summary = _pretrain(cfg, info, out, saved, changed, DataCollatorForPreTraining, on_record=on_record)
    cleanup_distributed()
    return summary


def _pretrain(cfg, info, out, saved, changed, collator_cls, on_record=None) -> dict:
    from .pretraining import InstanceArrays

    tokenizer = load_tokenizer(cfg, out)
    if info.is_main and cfg.vocab_size is not None:
        tokenizer.save_pretrained(out)                    # before training: a resumed run reads this one
    collate = collator_cls(tokenizer, mlm_format="sparse")
    static = cfg.compile if cfg.static_shapes is None else cfg.static_shapes
    workers = cfg.num_workers if cfg.num_workers is not None else (4 if info.device.type == "cuda" else 0)

    # Rank 0 tokenizes first (and fills the datasets cache); the others then read the cache.
    def datasets_for(seq_len, predictions):
        if not info.is_main:
            torch.distributed.barrier()
        result = build_datasets(cfg, tokenizer, seq_len, predictions)
        if info.is_main and info.distributed:
            torch.distributed.barrier()
        return result

    def batches(instances, batch_size, seq_len, predictions):
        # Padded NumPy arrays: a batch is a slice of rows (the same batches as the dataset's rows give).
        arrays = InstanceArrays.from_dataset(instances, pad_token_id=tokenizer.pad_token_id)
        phase_collate = (collator_cls(tokenizer, mlm_format="sparse", pad_to_length=seq_len,
                                      pad_predictions_to=predictions) if static else collate)
        return Batches(arrays, phase_collate, batch_size, grad_accum=cfg.grad_accum, seed=cfg.seed,
                       rank=info.rank, world_size=info.world_size)

    train1, eval1 = datasets_for(cfg.max_seq_length, cfg.max_predictions_per_seq)
    phases = [(batches(train1, cfg.batch_size, cfg.max_seq_length, cfg.max_predictions_per_seq),
               cfg.steps - cfg.phase2_steps)]
    if cfg.phase2_steps:
        # Google's ratio: 80 predictions for 512 tokens (0.15 x 512 = 77).
        predictions2 = max(cfg.max_predictions_per_seq, round(0.15 * cfg.phase2_seq_len))
        train2, _ = datasets_for(cfg.phase2_seq_len, predictions2)
        phases.append((batches(train2, cfg.phase2_batch_size or cfg.batch_size, cfg.phase2_seq_len, predictions2),
                       cfg.phase2_steps))

    set_seed(cfg.seed)                                    # the same initial weights in every process
    model = build_model(cfg, tokenizer.vocab_size)
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"the model's vocab_size {model.config.vocab_size} (from "
                         f"{'--init-from ' + str(cfg.init_from) if cfg.init_from else '--config ' + cfg.config}) "
                         f"differs from the tokenizer's {tokenizer.vocab_size} entries")
    train_config = TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup, weight_decay=cfg.weight_decay,
                               grad_accum=cfg.grad_accum, seed=cfg.seed, log_every=cfg.log_every,
                               checkpoint_every=cfg.checkpoint_every, checkpoint_minutes=cfg.checkpoint_minutes,
                               out_dir=str(out), compile=cfg.compile, compile_mode=cfg.compile_mode,
                               num_workers=workers)
    trainer = Trainer(model, phases, train_config, info)
    trainer.run_info["pretrain_config"] = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    if saved is not None:
        trainer.load_checkpoint(out / "checkpoint.pt", saved)
        if set(changed) & {"lr", "weight_decay", "warmup", "steps", "phase2_steps"}:
            trainer.apply_hyperparameters()
    else:
        set_seed(cfg.seed + info.rank)                    # dropout masks differ between processes
    trainer.train(on_record=on_record)

    summary = {"out": str(out), "history": trainer.history, "steps": trainer.step}
    if info.is_main:
        eval_stream = Batches(eval1, collate, cfg.batch_size, shuffle=False)
        n = min(cfg.eval_batches, eval_stream.steps_per_epoch)
        summary["eval"] = evaluate(model, (eval_stream.next_step()[0] for _ in range(n)), info.device)
        token, accuracy = unigram_baseline(train1, eval1)
        summary["eval"].update(unigram_baseline_acc=accuracy, unigram_baseline_token=token,
                               train_instances=len(train1), eval_instances=len(eval1))
        if not all(math.isfinite(v) for v in summary["eval"].values()):
            raise NonFiniteError(f"the trained model's evaluation is not finite ({summary['eval']}); "
                                 f"no model written to {out}")
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        atomic_write_text(out / "eval.json", json.dumps(summary["eval"], indent=2) + "\n")
    return summary


# --------------------------------------------------------------------------------------- what to compare with
def _masked_ids(instances):
    import numpy as np

    column = instances.data.column("masked_lm_ids").combine_chunks()
    return np.asarray(column.flatten(), dtype=np.int64)


def unigram_baseline(train, evaluation) -> tuple[int, float]:
    """The accuracy of always predicting the most frequent masked token of ``train`` on ``evaluation``.

    Both are instance datasets with static masks (a ``masked_lm_ids`` column). Returns (token id, accuracy).
    A model that ignored the context could do no better than this.
    """
    import numpy as np

    token = int(np.bincount(_masked_ids(train)).argmax())
    return token, float((_masked_ids(evaluation) == token).mean())


def frequency_ranks(train, vocab_size: int):
    """Each token id's rank (1 = most frequent) among the masked tokens of ``train`` (instances with static
    masks): where a model that ignored the context would rank it. Ties keep id order. Returns an int64 array
    of shape (vocab_size,)."""
    import numpy as np

    counts = np.bincount(_masked_ids(train), minlength=vocab_size)
    ranks = np.empty(vocab_size, dtype=np.int64)
    ranks[np.argsort(-counts, kind="stable")] = np.arange(1, vocab_size + 1)
    return ranks


def _mask_logits(model, tokenizer, text: str):
    """The MLM head's logits at each [MASK] of "A" or "A [SEP] B", shape (number of [MASK] tokens, V)."""
    if "[MASK]" not in text:
        raise ValueError(f"text has no [MASK] token: {text!r}")
    parts = text.split("[SEP]")[:2]                                      # "A" or "A [SEP] B"
    enc = tokenizer(*parts, return_tensors="pt")                          # [MASK] stays one token
    input_ids, types = enc["input_ids"], enc["token_type_ids"]            # (1, S)
    was_training = model.training
    model.eval()
    logits = model(input_ids=input_ids, token_type_ids=types,
                   attention_mask=torch.ones_like(input_ids)).prediction_logits[0]   # (S, V)
    model.train(was_training)
    return logits[input_ids[0] == tokenizer.mask_token_id]


@torch.no_grad()
def fill_mask(model, tokenizer, text: str, top_k: int = 3) -> list[list[str]]:
    """The ``top_k`` tokens the MLM head predicts for each [MASK] of ``text`` (a sentence or "A [SEP] B")."""
    logits = _mask_logits(model, tokenizer, text)
    return [tokenizer.convert_ids_to_tokens(row.topk(top_k).indices.tolist()) for row in logits]


@torch.no_grad()
def mask_rank(model, tokenizer, text: str, answer: str) -> int:
    """The rank (1 = the model's first guess) of the token ``answer`` among the whole vocabulary at the first
    [MASK] of ``text``, by the MLM head's logits; ties count in the answer's favour. Raises ValueError when
    ``answer`` is not one token of the vocabulary or ``text`` has no [MASK]."""
    if answer not in tokenizer.vocab:
        raise ValueError(f"answer {answer!r} is not a token of the vocabulary")
    logits = _mask_logits(model, tokenizer, text)[0]                       # (V,) at the first [MASK]
    return int((logits > logits[tokenizer.vocab[answer]]).sum()) + 1


# --------------------------------------------------------------------------------------- the book's model
TINY_STEPS = 2000         # sized for about 8 minutes on two idle CPU cores (Chapter 7 measures it)
TINY_VOCAB_SIZE = 8000    # a WordPiece vocabulary learned on the corpora (Chapter 1's trainer)
TINY_THREADS = 2          # the same on every machine: the floating-point sums depend on the thread count
# checkpoints/ch07_tiny at the root of the book's checkout, whatever the working directory (chapters/ or root).
TINY_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "ch07_tiny"


def tiny_config(out_dir: str | os.PathLike = TINY_CHECKPOINT, steps: int = TINY_STEPS) -> PretrainConfig:
    """The run of Chapter 7: BERT-Tiny (L=2, H=128) on the local corpora, sequences of 128, batch 32, with an
    8,000-entry WordPiece vocabulary learned on the training documents (``vocab_size``).

    Two deviations from the paper, for a model this small trained this briefly: the vocabulary (with
    bert-base-uncased's 30,522 entries the word-embedding matrix would be 3.9 of the model's 4.4 million
    parameters, and each step twice as slow), and the peak learning rate, 2e-3, twenty times the paper's.
    ``dupe_factor`` 1: 2,000 steps of 32 instances go through the ~34,000 instances of one pass almost twice,
    with the same masks (Google's ``dupe_factor`` 10 would give fresh ones, at ten times the preparation).
    """
    return PretrainConfig(config="tiny", steps=steps, warmup=max(1, steps // 10), batch_size=32, lr=2e-3,
                          dupe_factor=1, vocab_size=TINY_VOCAB_SIZE, out=str(out_dir), log_every=20,
                          device="cpu")


def pretrain_tiny(out_dir: str | os.PathLike = TINY_CHECKPOINT, *, steps: int = TINY_STEPS,
                  overwrite: bool = False) -> Path:
    """Train Chapter 7's tiny BERT into ``out_dir`` (unless it is there already) and return ``out_dir``.

    A finished run leaves ``pretrain_config.json``; a folder whose recipe differs from today's (an older
    version of the book, other ``steps``) is trained again. Training is deterministic (seeded, two threads),
    so a model found there is the model a new run would produce.

    ``out_dir`` defaults to ``checkpoints/ch07_tiny`` at the root of the checkout (:data:`TINY_CHECKPOINT`).

    The fine-tuning chapter calls this to get the pre-trained model whether or not Chapter 7 ran first, and
    so does Chapter 7. The folder holds config.json, model.safetensors (a
    ``BertForPreTraining``), the learned vocab.txt (load the tokenizer from the folder), metrics.jsonl and
    eval.json.
    """
    out = Path(out_dir)
    config = tiny_config(out, steps)
    recipe = out / "pretrain_config.json"
    wanted = dataclasses.asdict(config) | {"out": None}

    def same_recipe() -> bool:                            # settings that change the model, not bookkeeping
        try:
            found = json.loads(recipe.read_text())
        except (OSError, ValueError):
            return False
        strip = lambda d: {k: v for k, v in d.items() if k not in BOOKKEEPING}   # noqa: E731
        return strip(found) == strip(json.loads(json.dumps(wanted)))

    if (not overwrite and (out / "model.safetensors").exists() and (out / "eval.json").exists()
            and recipe.exists() and same_recipe()):
        return out                                        # trained before, with the same recipe
    config.overwrite = True                               # another recipe's (or a half-done) run: replace it
    # A fixed number of threads (two: a laptop has them), so that floating-point sums come out the same on
    # every machine, whatever its number of cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(TINY_THREADS)
    try:
        pretrain(config)
    finally:
        torch.set_num_threads(threads)
    atomic_write_text(recipe, json.dumps(wanted, sort_keys=True))
    return out


# --------------------------------------------------------------------------------------- command line
def format_record(record: dict, steps: int) -> str:
    """One progress line of a metrics record, printed by the command line when the progress bar is off
    (TQDM_DISABLE), so that a log file shows the run's progress."""
    def number(key, spec):
        return "n/a" if record.get(key) is None else format(record[key], spec)
    return (f"step {record['step']}/{steps}  loss {number('loss', '.4f')}  mlm_acc {number('mlm_acc', '.3f')}  "
            f"nsp_acc {number('nsp_acc', '.3f')}  tokens/s {number('tokens_per_s', '.0f')}")


def parse_args(argv=None) -> PretrainConfig:
    d = PretrainConfig()
    from .cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m minibert.pretrain",
                                description="Pre-train BERT (masked LM + next sentence prediction, Devlin et al. "
                                            "2019, Section 3.1) from scratch on the book's corpora.",
                                epilog="examples:\n  python -m minibert.pretrain --config tiny --steps 600 --out "
                                       "runs/tiny\n  python -m minibert.pretrain --config tiny --steps 600 --out runs/tiny --resume   "
                                       "# the same settings, continued",
                                formatter_class=HelpFormatter)
    p.add_argument("--config", default=d.config, choices=["tiny", "mini", "small", "medium", "base", "large"],
                   help="model size: a BertConfig preset (tiny: L=2 H=128; base: L=12 H=768, the paper's BASE)")
    p.add_argument("--corpora", nargs="+", default=list(d.corpora),
                   help="corpus names (the local mirror's, or the hub's when MINIBERT_DATA is unset)")
    p.add_argument("--max-documents", type=int, default=d.max_documents,
                   help="use only the first N documents of each corpus, for quick runs (default: all)")
    p.add_argument("--max-seq-length", type=int, default=d.max_seq_length,
                   help="tokens per training instance, [CLS] and [SEP]s included (Google: 128, then 512)")
    p.add_argument("--max-predictions-per-seq", type=int, default=d.max_predictions_per_seq,
                   help="most masked positions per instance (Google: 20 for 128 tokens, 80 for 512)")
    p.add_argument("--dupe-factor", type=int, default=d.dupe_factor,
                   help="how many times each document is cut into instances and masked differently (Google: 10)")
    p.add_argument("--eval-every-nth", type=int, default=d.eval_every_nth, help="hold out every n-th document")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="learn a WordPiece vocabulary of this many entries on the training documents (Chapter 1's "
                        "trainer), saved in --out (default: bert-base-uncased's 30,522)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process and micro-batch")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum,
                   help="micro-batches per optimizer step (the step's batch is batch-size times this)")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps, all phases")
    p.add_argument("--phase2-steps", type=int, default=d.phase2_steps, help="last steps on longer sequences")
    p.add_argument("--phase2-seq-len", type=int, default=d.phase2_seq_len,
                   help="sequence length of the phase-2 steps (the paper's last 10%% use 512)")
    p.add_argument("--phase2-batch-size", type=int, default=None,
                   help="batch size of the phase-2 steps (default: --batch-size)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (paper: 1e-4 for BASE/LARGE)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="warmup steps (paper: 10000)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="AdamW weight decay, not on biases and LayerNorm (paper: 0.01)")
    p.add_argument("--dropout", type=float, default=None,
                   help="hidden and attention dropout (default: the config's, 0.1 as in the paper)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed of the model and the batch order")
    p.add_argument("--out", default=d.out,
                   help="folder for checkpoints, metrics.jsonl and the final model (refused when it already "
                        "holds a run, unless --resume or --overwrite)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in OUT")
    p.add_argument("--allow-config-change", action="store_true",
                   help="with --resume: continue although settings differ from the checkpoint's")
    p.add_argument("--init-from", default=None,
                   help="start from a save_pretrained folder, e.g. for a second phase (default: random init)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode (reduce-overhead: CUDA graphs over the static-shape step; "
                        "default: torch's own default)")
    p.add_argument("--static-shapes", action=argparse.BooleanOptionalAction, default=None,
                   help="pad every batch to the phase's sequence length (default: on with --compile)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="DataLoader workers collating batches ahead (default: 4 on CUDA, 0 on CPU)")
    p.add_argument("--fused-qkv", action="store_true", help="one Q/K/V projection matmul per layer")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--log-every", type=int, default=d.log_every, help="print and record the loss every N steps")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps (0: by time only)")
    p.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes,
                   help="minutes between checkpoints (0: by steps only)")
    a = p.parse_args(argv)
    return PretrainConfig(config=a.config, corpora=tuple(a.corpora), max_documents=a.max_documents,
                          max_seq_length=a.max_seq_length, max_predictions_per_seq=a.max_predictions_per_seq,
                          dupe_factor=a.dupe_factor, eval_every_nth=a.eval_every_nth, vocab_size=a.vocab_size,
                          batch_size=a.batch_size, grad_accum=a.grad_accum,
                          steps=a.steps, phase2_steps=a.phase2_steps, phase2_seq_len=a.phase2_seq_len,
                          phase2_batch_size=a.phase2_batch_size, lr=a.lr, warmup=a.warmup,
                          weight_decay=a.weight_decay, dropout=a.dropout, seed=a.seed, out=a.out, resume=a.resume,
                          init_from=a.init_from, compile=a.compile, compile_mode=a.compile_mode,
                          static_shapes=a.static_shapes, num_workers=a.num_workers, fused_qkv=a.fused_qkv,
                          device=a.device, log_every=a.log_every,
                          checkpoint_every=a.checkpoint_every, checkpoint_minutes=a.checkpoint_minutes,
                          overwrite=a.overwrite, allow_changes=a.allow_config_change)


PROG = "python -m minibert.pretrain"


def main(argv=None) -> None:
    """The command line. Bad flags exit with status 2, a run that cannot go on with 1 (the message names
    the flag or file), an interrupted run with 128 + the signal number after writing its checkpoint."""
    from .checkpoint import CheckpointError

    cfg = parse_args(argv)
    try:
        validate(cfg)
    except ValueError as exc:
        print(f"usage: {PROG} [options]\n{PROG}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        # Without a progress bar (TQDM_DISABLE), one line per --log-every steps shows the run's progress.
        show = (lambda record: print(format_record(record, cfg.steps), flush=True)) \
            if os.environ.get("TQDM_DISABLE") else None
        summary = pretrain(cfg, on_record=show)
    except TrainingInterrupted as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        raise SystemExit(128 + exc.signum) from None
    except (RunError, CheckpointLoadError, CheckpointError, NonFiniteError, ValueError, OSError) as exc:
        notes = "".join(f"\n{note}" for note in getattr(exc, "__notes__", []))
        print(f"{PROG}: error: {exc}{notes}", file=sys.stderr)
        raise SystemExit(1) from None
    if "eval" in summary:
        print(json.dumps({"out": summary["out"], "steps": summary["steps"],
                          **{k: round(v, 4) for k, v in summary["eval"].items()}}))


if __name__ == "__main__":
    main()
