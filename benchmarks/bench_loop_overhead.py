"""CPU benchmark: the training loop's cost per step outside forward/backward (issue 14, item 6).

What it times, on real instances from the local corpora (sequences of 128, static masks, Google's sparse
batches as ``python -m minibert.pretrain`` builds them):

* ``collate``: ``Batches.next_step()`` alone: reading the step's instances and building the padded batch.
* ``loop``: a full ``Trainer`` step (metrics, clipping, AdamW, the resume snapshot, logging every 10 steps,
  ``.to(device)`` copies) around a *stub model* whose forward and backward cost nothing: a module with two
  parameters that returns a loss and logits of the batch's shape with 2 classes. So ``loop`` is the
  per-step overhead of the loop itself (it includes ``collate``).
* ``tiny step``: the real tiny config (L=2, H=128) at batch 32, a full Trainer step: the yardstick.

Two batch sizes: 32 (the tiny run of Chapter 7) and 256 with BASE's sequence length (128) and predictions
(20). BASE's forward is not run on CPU: only the data, collate and metrics side is measured at BASE shapes,
and that side does not depend on the model's width.

Run it against this checkout and against another (the code before a change) to compare::

    nice -n 10 python benchmarks/bench_loop_overhead.py                 # this checkout's minibert
    PYTHONPATH=../main nice -n 10 python benchmarks/bench_loop_overhead.py --label before

Prints one table; ``--json PATH`` also writes the numbers. Timings are medians of ``--repeats`` runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from types import SimpleNamespace

import torch
from torch import nn

import minibert
from minibert.config import BertConfig
from minibert.corpus import load_corpora
from minibert.model import BertForPreTraining
from minibert.pretrain import load_tokenizer
from minibert.pretraining import DataCollatorForPreTraining, create_pretraining_dataset
from minibert.train import Batches, TrainConfig, Trainer, set_seed

try:                                                    # after issue 14: instances as arrays
    from minibert.pretraining import InstanceArrays
except ImportError:                                     # before: the dataset's rows
    InstanceArrays = None


class StubModel(nn.Module):
    """Free forward/backward with the outputs the loop reads (loss parts, MLM and NSP logits)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.bias = nn.Parameter(torch.zeros(2))

    def forward(self, input_ids, labels=None, next_sentence_label=None, **_):
        B, P = labels.shape
        loss = (self.w.sum() + self.bias.sum()) * 0.5 + 1.0
        return SimpleNamespace(loss=loss, mlm_loss=loss, nsp_loss=loss,
                               prediction_logits=(self.w + self.bias).expand(B, P, 2),
                               seq_relationship_logits=(self.w + self.bias).expand(B, 2))


def instances(seq_len=128, predictions=20, documents=400, dupe=3):
    tokenizer = load_tokenizer()
    corpus = load_corpora(("wikipedia_summaries", "books"), max_documents=documents)
    data = create_pretraining_dataset(corpus, tokenizer, max_seq_length=seq_len, max_predictions_per_seq=predictions,
                                      dupe_factor=dupe, seed=12345)
    return tokenizer, data


def stream(tokenizer, data, batch_size):
    collate = DataCollatorForPreTraining(tokenizer, mlm_format="sparse")
    source = InstanceArrays.from_dataset(data, pad_token_id=tokenizer.pad_token_id) if InstanceArrays else data
    return Batches(source, collate, batch_size, seed=0)


def time_collate(tokenizer, data, batch_size, steps):
    batches = stream(tokenizer, data, batch_size)
    batches.next_step()
    start = time.perf_counter()
    for _ in range(steps):
        batches.next_step()
    return (time.perf_counter() - start) / steps


def time_trainer(model, tokenizer, data, batch_size, steps):
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(steps=steps + 10, lr=1e-3, warmup_steps=1, log_every=10, out_dir=out,
                             checkpoint_minutes=0, handle_signals=False)
        trainer = Trainer(model, stream(tokenizer, data, batch_size), config)
        trainer.train(until=10)                          # warm-up: first steps, first log
        start = time.perf_counter()
        trainer.train(until=10 + steps)
        return (time.perf_counter() - start) / steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", default="after")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tokenizer, data = instances()
    print(f"minibert from {minibert.__file__}; {len(data)} instances of <=128 tokens; "
          f"{'InstanceArrays' if InstanceArrays else 'dataset rows'}; 1 thread")
    rows = {}
    for batch_size in (32, 256):
        collate = statistics.median(time_collate(tokenizer, data, batch_size, args.steps) for _ in range(args.repeats))
        loop = statistics.median(time_trainer(StubModel(), tokenizer, data, batch_size, args.steps)
                                 for _ in range(args.repeats))
        rows[batch_size] = {"collate_ms": 1e3 * collate, "loop_ms": 1e3 * loop}
    set_seed(0)
    tiny = BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size))
    tiny_ms = 1e3 * statistics.median(time_trainer(tiny, tokenizer, data, 32, 10) for _ in range(args.repeats))
    print(f"\n{args.label}: tiny-config Trainer step, batch 32: {tiny_ms:.1f} ms")
    print(f"{'batch':>5} {'collate ms':>11} {'loop ms':>9} {'loop / tiny step':>17}")
    for batch_size, r in rows.items():
        print(f"{batch_size:5d} {r['collate_ms']:11.2f} {r['loop_ms']:9.2f} {100 * r['loop_ms'] / tiny_ms:16.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"label": args.label, "tiny_step_ms": tiny_ms, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
