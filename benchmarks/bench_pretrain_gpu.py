"""GPU benchmark: pre-training throughput and MFU of minibert vs transformers, BERT-BASE and BERT-LARGE.

One run, one GPU, every variant on the same batches. A step is a full training step as
``minibert.train.Trainer`` takes it: forward under bf16 autocast (fp32 weights), MLM + NSP loss, backward,
clip the global gradient norm at 1.0, fused AdamW step. Sequences are full (no padding), with
``max_predictions_per_seq`` masked positions (20 at 128 tokens, 80 at 512: Google's settings).

Variants (``--variants``):

* ``hf``                 transformers ``BertForPreTraining``, SDPA attention, dense MLM head (its only one)
* ``hf-compile``         the same under ``torch.compile``
* ``minibert-dense``     minibert with the dense MLM head (logits at every position, like transformers)
* ``minibert``           minibert with Google's sparse MLM head (logits at the masked positions only)
* ``minibert-compile``   the same under ``torch.compile``
* ``minibert-flash``     sparse head, compiled, and no attention mask: SDPA may then pick the flash kernel
  (legitimate here because no sequence is padded; with padding the mask is needed)

Levers and where they show: the sparse head (``minibert`` vs ``minibert-dense``), ``torch.compile``
(``*-compile``), SDPA's flash kernel (``minibert-flash``), fused AdamW (every variant uses it). Not measured
here: skipping computation on padding. minibert's collator pads each batch only to its longest sequence,
but the model still computes on the padded positions of shorter sequences.

MFU (model FLOPs utilisation) = useful FLOPs per second / 989e12, the H100 SXM's dense bf16 peak. Useful
FLOPs per token follow PaLM's appendix B (``minibert.train.flops_per_token``: 6N + 12LHT), with the MLM
head counted at the masked positions only, for every variant: a dense head's extra work is waste, and
shows as a lower MFU.

    python benchmarks/bench_pretrain_gpu.py                       # everything, writes results/pretrain_gpu.json
    python benchmarks/bench_pretrain_gpu.py --models base --seq-lens 128 --variants hf minibert

On a machine without a CUDA GPU it says so and exits with status 0, writing nothing.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("hf", "hf-compile", "minibert-dense", "minibert", "minibert-compile", "minibert-flash")
PREDICTIONS = {128: 20, 512: 80}


def make_batch(batch_size: int, seq_len: int, predictions: int, vocab: int, device, seed: int = 0):
    """Dense (transformers) and sparse (minibert) versions of one batch with the same masked tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (batch_size, seq_len), generator=g)
    positions = torch.stack([torch.randperm(seq_len - 2, generator=g)[:predictions] + 1
                             for _ in range(batch_size)])                            # (B, P)
    sparse_labels = torch.gather(ids, 1, positions)                                 # (B, P)
    ids = ids.scatter(1, positions, 103)                                             # [MASK]
    dense_labels = torch.full_like(ids, -100).scatter(1, positions, sparse_labels)   # (B, S)
    common = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "token_type_ids": (torch.arange(seq_len) >= seq_len // 2).long().expand(batch_size, -1).contiguous(),
              "next_sentence_label": torch.randint(0, 2, (batch_size,), generator=g)}
    dense = {**common, "labels": dense_labels}
    sparse = {**common, "labels": sparse_labels, "masked_lm_positions": positions}
    to = lambda b: {k: v.to(device) for k, v in b.items()}  # noqa: E731
    return to(dense), to(sparse)


def build(variant: str, config):
    import transformers

    from minibert.model import BertForPreTraining

    torch.manual_seed(0)
    if variant.startswith("hf"):
        hf_config = transformers.BertConfig(**{k: v for k, v in config.to_dict().items()
                                               if k not in ("attn_implementation", "architectures")})
        return transformers.BertForPreTraining._from_config(hf_config, attn_implementation="sdpa")
    return BertForPreTraining(config.replace(attn_implementation="sdpa"))


def measure(variant: str, config, seq_len: int, batch_size: int, steps: int, warmup: int) -> dict:
    from minibert.train import create_optimizer

    device = torch.device("cuda")
    model = build(variant, config).to(device).train()
    optimizer = create_optimizer(model, lr=1e-4)                      # fused AdamW on CUDA
    dense, sparse = make_batch(batch_size, seq_len, PREDICTIONS[seq_len], config.vocab_size, device)
    batch = dense if variant in ("hf", "hf-compile", "minibert-dense") else sparse
    if variant == "minibert-flash":
        batch = {k: v for k, v in batch.items() if k != "attention_mask"}
    forward = torch.compile(model) if variant.endswith("compile") or variant == "minibert-flash" else model

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = forward(**batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss

    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(warmup):                                           # includes compilation
        loss = step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    result = {"step_ms": 1000 * elapsed / steps, "tokens_per_s": batch_size * seq_len * steps / elapsed,
              "warmup_s": warmup_s, "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
              "final_loss": float(loss)}
    del model, optimizer, forward, batch, dense, sparse
    gc.collect()
    torch.cuda.empty_cache()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["base", "large"], choices=["tiny", "mini", "small",
                                                                                    "medium", "base", "large"])
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[128, 512], choices=sorted(PREDICTIONS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--tokens-per-batch", type=int, default=32768, help="batch size = this / sequence length")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    parser.add_argument("--out", default=str(ROOT / "results" / "pretrain_gpu.json"))
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("bench_pretrain_gpu: no CUDA GPU on this machine; nothing measured, nothing written.")
        return 0

    import transformers

    sys.path.insert(0, str(ROOT))
    from minibert.config import BertConfig
    from minibert.train import H100_BF16_PEAK_FLOPS, flops_per_token

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device_name = torch.cuda.get_device_name()
    print(f"{device_name}, torch {torch.__version__}, transformers {transformers.__version__}")
    results = []
    for name in args.models:
        config = BertConfig.from_preset(name)
        for seq_len in args.seq_lens:
            batch_size = max(1, args.tokens_per_batch // seq_len)
            useful = flops_per_token(config, seq_len, PREDICTIONS[seq_len])
            for variant in args.variants:
                row = {"model": name, "impl": variant, "seq_len": seq_len, "batch_size": batch_size,
                       "useful_flops_per_token": useful}
                try:
                    row.update(measure(variant, config, seq_len, batch_size, args.steps, args.warmup))
                    row["mfu"] = row["tokens_per_s"] * useful / H100_BF16_PEAK_FLOPS
                    print(f"  {name:5s} seq {seq_len:3d} batch {batch_size:3d} {variant:17s} "
                          f"{row['tokens_per_s']:>9,.0f} tokens/s  {row['step_ms']:7.1f} ms/step  "
                          f"MFU {row['mfu']:6.1%}  {row['peak_memory_gb']:5.1f} GB")
                except Exception as exc:                  # e.g. out of memory: record it and go on
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    print(f"  {name:5s} seq {seq_len:3d} {variant:17s} failed: {row['error']}")
                    gc.collect()
                    torch.cuda.empty_cache()
                results.append(row)

    # Ratios: each minibert variant against transformers (plain and compiled) on the same model and length.
    ratios = []
    by_key = {(r["model"], r["seq_len"], r["impl"]): r for r in results if "tokens_per_s" in r}
    for (name, seq_len, impl), row in by_key.items():
        if impl.startswith("minibert"):
            for ref in ("hf", "hf-compile"):
                if (name, seq_len, ref) in by_key:
                    ratios.append({"model": name, "seq_len": seq_len, "impl": impl, "vs": ref,
                                   "ratio": row["tokens_per_s"] / by_key[(name, seq_len, ref)]["tokens_per_s"]})
    for r in ratios:
        print(f"  {r['model']:5s} seq {r['seq_len']:3d} {r['impl']:17s} / {r['vs']:10s} x{r['ratio']:.2f}")

    report = {
        "command": "python benchmarks/bench_pretrain_gpu.py" + ("" if not argv and len(sys.argv) < 2
                                                                 else " " + " ".join(argv if argv else sys.argv[1:])),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": device_name, "torch": torch.__version__, "transformers": transformers.__version__,
        "peak_flops": H100_BF16_PEAK_FLOPS, "peak_flops_note": "H100 SXM dense bf16; MFU is against this",
        "steps": args.steps, "warmup": args.warmup, "results": results, "ratios": ratios,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
