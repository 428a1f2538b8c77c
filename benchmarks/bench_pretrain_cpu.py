"""CPU benchmark: pre-training steps of minibert vs transformers' BertForPreTraining, side by side.

A step is what ``minibert.train.Trainer`` does: forward (MLM + NSP loss), backward, clip the gradient norm
at 1.0, AdamW step. Both models are the tiny configuration (L=2, H=128, bert-base-uncased vocabulary of
30522), start from the same weights and see the same batches (sequence length 128, 20 masked positions a
sequence, as Google's ``max_predictions_per_seq`` for 128). Three variants run interleaved, round by round,
so that a busy machine slows them alike:

* ``hf``               transformers BertForPreTraining (SDPA attention, dense MLM head: logits at every position)
* ``minibert-dense``   minibert with the same dense head
* ``minibert-sparse``  minibert with Google's sparse head (``masked_lm_positions``: logits at masked positions only)

    python benchmarks/bench_pretrain_cpu.py [--batch-size 32] [--seq-len 128] [--rounds 5] [--threads 2]

Prints the median tokens/s of each and the ratios to transformers.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench_pretrain_gpu import make_batch   # the same synthetic batches as the GPU benchmark


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--predictions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (each: a few steps of every variant)")
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import transformers
    from minibert.config import BertConfig
    from minibert.model import BertForPreTraining
    from minibert.train import create_optimizer

    config = BertConfig.from_preset("tiny")
    torch.manual_seed(0)
    ours = BertForPreTraining(config)
    hf_config = transformers.BertConfig(**{k: v for k, v in config.to_dict().items()
                                           if k not in ("attn_implementation", "architectures")})
    theirs = transformers.BertForPreTraining._from_config(hf_config, attn_implementation="sdpa")
    missing = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert not [k for k in missing.missing_keys if "position_ids" not in k], missing
    ours_dense = BertForPreTraining(config)
    ours_dense.load_state_dict(ours.state_dict())

    dense, sparse = make_batch(args.batch_size, args.seq_len, args.predictions, config.vocab_size, "cpu")
    variants = {"hf": (theirs, dense), "minibert-dense": (ours_dense, dense), "minibert-sparse": (ours, sparse)}
    optimizers = {name: create_optimizer(model, lr=1e-4) for name, (model, _) in variants.items()}

    def step(name):
        model, batch = variants[name]
        out = model(**batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        return float(out.loss.detach())

    # Same weights, same batch: without dropout the three compute the same loss (up to float rounding).
    with torch.no_grad():
        first = {name: float(model.eval()(**batch).loss) for name, (model, batch) in variants.items()}
    print("losses before training (eval mode):", {k: round(v, 4) for k, v in first.items()})
    assert max(first.values()) - min(first.values()) < 1e-4, first
    for model, _ in variants.values():
        model.train()
    for name in variants:                                                   # one untimed warm-up step
        step(name)

    tokens = args.batch_size * args.seq_len
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            start = time.perf_counter()
            for _ in range(args.steps):
                step(name)
            rates[name].append(tokens * args.steps / (time.perf_counter() - start))
    median = {name: statistics.median(r) for name, r in rates.items()}
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads; "
          f"tiny config, batch {args.batch_size} x {args.seq_len} tokens, {args.predictions} masked a sequence")
    for name, rate in median.items():
        print(f"  {name:16s} {rate:8.0f} tokens/s   ({tokens / rate * 1000:6.0f} ms/step)  "
              f"x{rate / median['hf']:.2f} vs transformers")
    if args.out:
        import json
        import platform
        import sys
        from pathlib import Path
        report = {"command": "python benchmarks/bench_pretrain_cpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads",
                  "torch": torch.__version__, "transformers": transformers.__version__,
                  "batch_size": args.batch_size, "seq_len": args.seq_len, "predictions": args.predictions,
                  "tokens_per_s": median, "ratio_vs_transformers": {k: v / median["hf"] for k, v in median.items()}}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return median


if __name__ == "__main__":
    main()
