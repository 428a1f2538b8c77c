"""``python -m minibert.finetune``: fine-tune BERT on a downstream task (Devlin et al. 2019, Section 4).

The modules read top-down: the loop every task shares is :mod:`minibert.finetuning` (``fit``, ``predict``,
``pad_collate``, ``make_loader``, ``load_model``, re-exported here); the tasks build on it —
:mod:`minibert.glue` (sentence and sentence-pair classification and regression), :mod:`minibert.squad`
(extractive question answering), :mod:`minibert.ner` (tagging, and the feature-based approach of Section
5.3), and multiple choice (SWAG, Section 4.4) at the end of this file; this module's command line builds on
the tasks. :data:`TASKS` is the task registry the command line reads, and :func:`main` is
``python -m minibert.finetune``. A fine-tuned folder is used with :func:`minibert.pipeline` or
``python -m minibert.predict``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .finetuning import (DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_MAX_GRAD_NORM,  # noqa: F401
                         DEFAULT_WARMUP, DEFAULT_WEIGHT_DECAY, HEADS, FitResult, fit, load_model, load_tokenizer,
                         LengthGroupedBatchSampler, make_loader, pad_collate, predict,
                         set_seed)   # re-exported: the loop lives there


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
    from .cli import HelpFormatter

    tasks = "\n".join(f"  {name:<10} {info.metrics}" for name, info in TASKS.items())
    parser = argparse.ArgumentParser(
        prog="python -m minibert.finetune",
        description="Fine-tune a BERT checkpoint on a downstream task (Devlin et al. 2019, Section 4) "
                    "with Google's recipe, then evaluate it.",
        epilog=f"tasks and their metrics:\n{tasks}\n\nexample:\n  python -m minibert.finetune --task sst2 "
               f"--model PATH --max-train-examples 2000 --epochs 1 --out runs/sst2",
        formatter_class=HelpFormatter)
    parser.add_argument("--task", required=True, choices=list(TASKS), help="the task to fine-tune on")
    parser.add_argument("--model", required=True,
                        help="checkpoint directory with config.json and weights (minibert or Hugging Face "
                             "format); a BertModel-only checkpoint gets a freshly initialised head")
    parser.add_argument("--ignore-mismatched-sizes", action="store_true",
                        help="start head weights fresh when their shape differs from --model's (a classifier "
                             "fine-tuned with another number of labels); encoder weights must still fit")
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
    parser.add_argument("--log-every", type=int, default=10, help="print the mean training loss every N steps")
    parser.add_argument("--group-by-length", action="store_true",
                        help="batch training examples of similar length together (far less padding; "
                             "the order stays random and seeded)")
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
    if getattr(args, "log_every", 10) <= 0:
        raise ValueError(f"--log-every must be positive, got {args.log_every}")
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
    from .checkpoint import PYTORCH_NAME, SAFETENSORS_NAME
    if not any((path / name).is_file() for name in (SAFETENSORS_NAME, PYTORCH_NAME)):
        raise ValueError(f"--model {args.model!r} has a config.json but no weights ({SAFETENSORS_NAME} or "
                         f"{PYTORCH_NAME})")
    out = getattr(args, "out", None)
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {args.out} is a file, not a folder")
        existing = [n for n in OUT_FILES + RUN_FILES if (out / n).exists()]
        if existing and not getattr(args, "overwrite", False):
            what = "a pre-training run" if set(existing) & set(RUN_FILES) else "a model"
            raise ValueError(f"--out {args.out} already holds {what} ({', '.join(existing)}); pass --overwrite "
                             "to replace it, or choose another --out")
        if out.resolve() == path.resolve():
            raise ValueError("--out must differ from --model: the fine-tuned model would replace its starting point")


OUT_FILES = ("model.safetensors", "config.json", "metrics.json", "vocab.txt")
# A pre-training run's files: a fine-tuned model written beside them would be replaced by a later --resume.
RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "eval.json", "pretrain_config.json")


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
    if args.out:                          # a second run into the same folder fails at once (as pretrain's)
        from .pretrain import run_lock
        with run_lock(Path(args.out)):
            return _run_and_save(args, runner, device)
    return _run_and_save(args, runner, device)


def _run_and_save(args: argparse.Namespace, runner, device) -> dict:
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
        for name in RUN_FILES:            # --overwrite of a pre-training run: nothing left to resume over it
            (out / name).unlink(missing_ok=True)
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
    from .checkpoint import CheckpointError
    from .pretrain import RunError
    try:
        return run(args)
    except (FloatingPointError, ValueError, FileNotFoundError, CheckpointError, RunError) as exc:
        # Bad data, files or settings found while running: one line naming the problem, not a traceback.
        message = str(exc).replace("pass ignore_mismatched_sizes=True", "pass --ignore-mismatched-sizes")
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
