"""CPU benchmark: padding and step time of fine-tuning batches, shuffled vs grouped by length (issue 14, item 4).

For SST-2, MRPC (GLUE) and CoNLL-2003 (NER), tokenized as the chapters do (max_seq_length 128), batch 32:

* ``padding``: the share of the batches' token slots that are padding, over one epoch;
* ``step ms``: a full fine-tuning step (forward, backward, AdamW) of the tiny config (L=2, H=128) on the
  first ``--steps`` batches, median of ``--repeats`` runs, one thread;
* for each, today's loader (``make_loader(shuffle=True)``) against ``make_loader(group_by_length=True)``.

    MINIBERT_DATA=path/to/data nice -n 10 python benchmarks/bench_finetune_padding.py

Prints one table. A benchmark, not a test: timings depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from minibert.config import BertConfig
from minibert.data import load_dataset
from minibert.finetune import create_optimizer, make_loader
from minibert.glue import encode_glue
from minibert.model import BertForSequenceClassification, BertForTokenClassification
from minibert.ner import encode_ner, label_names
from minibert.pretrain import load_tokenizer


def features_of(task: str, tokenizer, limit: int):
    if task == "conll2003":
        data = load_dataset(task, "train")
        data = data.select(range(min(limit, len(data))))
        feats = encode_ner(data, tokenizer, 128)
        keep = ("input_ids", "token_type_ids", "attention_mask", "labels")
        return [{k: f[k] for k in keep if k in f} for f in feats], len(label_names(data))
    data = load_dataset(task, "train")
    data = data.select(range(min(limit, len(data))))
    return encode_glue(task, data, tokenizer, 128), 2


def padding_share(loader) -> float:
    pad = total = 0
    for batch in loader:
        mask = batch["attention_mask"]
        pad += int((mask == 0).sum())
        total += mask.numel()
    return pad / total


def step_ms(task, features, num_labels, vocab, group, steps, seed=0) -> float:
    torch.manual_seed(seed)
    cls = BertForTokenClassification if task == "conll2003" else BertForSequenceClassification
    model = cls(BertConfig.from_preset("tiny", vocab_size=vocab, num_labels=num_labels)).train()
    optimizer = create_optimizer(model, lr=2e-5)
    loader = make_loader(features, 32, shuffle=True, seed=seed, group_by_length=group)
    batches = [b for _, b in zip(range(steps + 2), loader)]
    times = []
    for batch in batches:
        start = time.perf_counter()
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[2:])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc", "conll2003"])
    parser.add_argument("--examples", type=int, default=8000, help="training examples per task")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tokenizer = load_tokenizer()
    print(f"{'task':10s} {'loader':9s} {'padding':>8s} {'step ms':>8s}")
    for task in args.tasks:
        features, num_labels = features_of(task, tokenizer, args.examples)
        for group in (False, True):
            loader = make_loader(features, 32, shuffle=True, seed=0, group_by_length=group)
            share = padding_share(loader)
            ms = step_ms(task, features, num_labels, tokenizer.vocab_size, group, args.steps)
            print(f"{task:10s} {'grouped' if group else 'shuffled':9s} {100 * share:7.1f}% {ms:8.1f}")


if __name__ == "__main__":
    main()
