"""``python -m minibert.predict``: run a trained model on texts from the command line or a file.

Prints one JSON line per input, in order: what :func:`minibert.pipeline` returns for it (see
:mod:`minibert.pipelines` for each task's keys). Inputs come as arguments or, with ``--file``, as JSON lines:
a JSON string per line, or an object with the task's keys (``{"text": ..., "text_pair": ...}`` for a
sentence pair, ``{"question": ..., "context": ...}`` for question answering).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .pipelines import ALIASES, TASK_HEADS

EXAMPLES = """\
examples:
  python -m minibert.predict --model runs/sst2 "a gripping, funny film" "a dull mess"
      {"label": "positive", "score": 0.98}   (one line per text)
  python -m minibert.predict --model runs/conll2003 "Angela Merkel visited Paris"
      [{"entity_group": "PER", "score": 0.99, "word": "angela merkel", "start": 0, "end": 13}, ...]
  python -m minibert.predict --model runs/squad --context "BERT was published in 2018." "When was BERT published?"
      {"score": 0.93, "start": 22, "end": 26, "answer": "2018"}
  python -m minibert.predict --model checkpoints/ch07_tiny --top-k 3 "the cat sat on the [MASK]."
  python -m minibert.predict --model runs/mrpc --file pairs.jsonl
      where each line of pairs.jsonl is {"text": "...", "text_pair": "..."}

The task is read from the model's config.json unless --task is given. Inputs in a --file are JSON lines:
a string, or an object with "text" (and "text_pair"), or "question" and "context".
"""


def build_parser() -> argparse.ArgumentParser:
    from .cli import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="python -m minibert.predict",
        description="Run a fine-tuned (or pre-trained, for fill-mask) minibert checkpoint on texts and print "
                    "one JSON line per input: labels with scores, entities with character offsets, answer "
                    "spans, or the tokens for [MASK].",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("texts", nargs="*", metavar="TEXT",
                        help="texts to run on (questions with --context); or use --file")
    parser.add_argument("--model", required=True,
                        help="checkpoint directory (config.json, model.safetensors, vocab.txt), e.g. the --out "
                             "of python -m minibert.finetune")
    parser.add_argument("--task", choices=list(TASK_HEADS) + list(ALIASES), default=None,
                        help="what to predict (default: the task the checkpoint was trained for, from config.json)")
    parser.add_argument("--file", default=None,
                        help="read the inputs from this JSON-lines file ('-' for standard input; default: the TEXT "
                             "arguments)")
    parser.add_argument("--context", default=None,
                        help="question-answering: the passage every TEXT (a question) is asked about (default: none; "
                             "--file lines then carry their own context)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="how many labels, spans or tokens to give per input (default: the task's, 1 or "
                             "5 for fill-mask)")
    parser.add_argument("--batch-size", type=int, default=8, help="inputs per forward pass")
    parser.add_argument("--tokenizer", default=None,
                        help="vocab.txt or a directory holding one (default: the model's, else bert-base-uncased)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    return parser


def read_inputs(path: str) -> list:
    """The inputs of a JSON-lines file (blank lines skipped); ValueError names the file and line."""
    if path == "-":
        lines = sys.stdin.read().splitlines()
        name = "standard input"
    else:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"--file {path}: no such file")
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise ValueError(f"--file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        name = path
    inputs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name} line {number} is not JSON ({exc.msg}); write one JSON string or object "
                             f"per line, e.g. \"a fine film\" or {{\"text\": \"...\", \"text_pair\": \"...\"}}") from None
        if not isinstance(value, (str, dict)):
            raise ValueError(f"{name} line {number}: expected a JSON string or object, got {type(value).__name__}")
        inputs.append(value)
    if not inputs:
        raise ValueError(f"{name} holds no inputs")
    return inputs


def check_input(task: str, item, where: str):
    """``item`` if it is an input ``task`` takes (a str, or an object with the task's keys), else ValueError."""
    if task == "question-answering":
        if not isinstance(item, dict) or set(item) != {"question", "context"}:
            raise ValueError(f"{where}: question answering needs {{\"question\": ..., \"context\": ...}} "
                             f"(or TEXT questions with --context), got {json.dumps(item)[:80]}")
    elif isinstance(item, dict):
        if task != "text-classification" or "text" not in item or set(item) - {"text", "text_pair"}:
            keys = "\"text\" and optionally \"text_pair\"" if task == "text-classification" else "none (give a string)"
            raise ValueError(f"{where}: a {task} input object takes the keys {keys}, got {sorted(item)}")
    return item


def main(argv: Sequence[str] | None = None) -> list:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.batch_size <= 0:
            raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
        if args.top_k is not None and args.top_k <= 0:
            raise ValueError(f"--top-k must be positive, got {args.top_k}")
        if args.file is not None and args.texts:
            raise ValueError("give the inputs as TEXT arguments or with --file, not both")
        if args.file is None and not args.texts:
            raise ValueError("no inputs: give one or more TEXT arguments, or --file FILE (JSON lines)")
        from .pipelines import pipeline
        pipe = pipeline(args.task, model=args.model, tokenizer=args.tokenizer, device=args.device,
                        batch_size=args.batch_size)
        if args.context is not None and pipe.task != "question-answering":
            raise ValueError(f"--context is for question answering, but the task is {pipe.task}")
        if args.file is not None:
            inputs, where = read_inputs(args.file), f"{args.file} input"
        elif pipe.task == "question-answering":
            if args.context is None:
                raise ValueError("question answering needs --context PASSAGE (the TEXTs are the questions), "
                                 "or --file with {\"question\": ..., \"context\": ...} lines")
            inputs, where = [{"question": q, "context": args.context} for q in args.texts], "TEXT"
        else:
            inputs, where = list(args.texts), "TEXT"
        inputs = [check_input(pipe.task, item, f"{where} {n}") for n, item in enumerate(inputs, 1)]
        results = pipe(inputs, **({} if args.top_k is None else {"top_k": args.top_k}))   # batched
        if pipe.task == "fill-mask" and len(inputs) == 1:
            results = [results]              # transformers' fill-mask unwraps a list of one
        for result in results:
            print(json.dumps(result, ensure_ascii=False))
        return results
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
