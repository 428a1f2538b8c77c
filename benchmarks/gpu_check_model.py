"""GPU check: BERT-BASE and BERT-LARGE, forward + backward in bf16, SDPA kernel vs the explicit one.

For each size the same BertForPreTraining (dropout off, Google initialisation, seed 0) runs one
pre-training step's forward and backward on a padded batch at sequence length 512, under bf16 autocast,
once with ``attn_implementation="sdpa"`` and once with the explicit softmax(QK^T/sqrt(d) + mask) V. It
reports the largest absolute differences between the two (MLM logits, loss, every gradient), how far each is
from an fp32 explicit reference, whether anything is NaN/inf (a padded sequence is all padding), and the
time and peak memory of each path.

    python benchmarks/gpu_check_model.py [--sizes base large] [--batch-size 8] [--seq-len 512] [--out results.json]

On a machine without CUDA it prints a message and exits with status 0. Exit status 1 when a path gives a
non-finite value or the bf16 paths disagree by more than bf16 rounding explains (see --tolerance).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def make_batch(config, batch_size: int, seq_len: int, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, config.vocab_size, (batch_size, seq_len), generator=g)
    mask = torch.ones(batch_size, seq_len, dtype=torch.long)
    lengths = torch.randint(seq_len // 4, seq_len + 1, (batch_size,), generator=g)
    lengths[0] = seq_len                              # one full sequence
    for b, n in enumerate(lengths.tolist()):
        mask[b, n:] = 0
    mask[-1] = 0                                      # one sequence that is all padding
    types = (torch.arange(seq_len) >= seq_len // 2).long().expand(batch_size, -1).contiguous()
    labels = torch.full((batch_size, seq_len), -100)
    pick = torch.rand(batch_size, seq_len, generator=g) < 0.15
    labels[pick & mask.bool()] = ids[pick & mask.bool()]
    nsp = torch.randint(0, 2, (batch_size,), generator=g)
    batch = dict(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels, next_sentence_label=nsp)
    return {k: v.to(device) for k, v in batch.items()}


def run_path(model, batch, impl: str, dtype, repeats: int):
    """Forward + backward; returns (logits, loss, grads, seconds per step, peak GiB)."""
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    model.set_attn_implementation(impl)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step():
        model.zero_grad(set_to_none=True)
        with autocast:
            out = model(**batch)
        out.loss.backward()
        return out

    step()                                            # warm-up (kernel selection, allocator)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(repeats):
        out = step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.prediction_logits.detach().float(), out.loss.detach().float(), grads, seconds, peak


def max_diff(a, b, keep=None):
    if keep is not None:                              # compare real tokens only
        a, b = a[keep], b[keep]
    return (a - b).abs().max().item()


def check_size(name: str, args, device: str = "cuda") -> dict:
    from minibert.config import BertConfig
    from minibert.model import BertForPreTraining

    config = BertConfig.from_preset(name, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = BertForPreTraining(config).to(device).train()
    batch = make_batch(config, args.batch_size, args.seq_len, device)
    keep = batch["attention_mask"].bool()

    ref_logits, ref_loss, ref_grads, _, _ = run_path(model, batch, "eager", torch.float32, repeats=1)
    results = {"size": name, "parameters": model.num_parameters(), "batch_size": args.batch_size,
               "seq_len": args.seq_len}
    runs = {}
    for impl in ("sdpa", "eager"):
        logits, loss, grads, seconds, peak = run_path(model, batch, impl, torch.bfloat16, args.repeats)
        finite = bool(torch.isfinite(logits).all() and torch.isfinite(loss)
                      and all(torch.isfinite(g).all() for g in grads.values()))
        runs[impl] = (logits, loss, grads)
        results[impl] = {
            "loss": loss.item(), "finite": finite, "ms_per_step": 1000 * seconds, "peak_gib": peak,
            "logits_vs_fp32": max_diff(logits, ref_logits, keep),
            "grad_vs_fp32": max(max_diff(grads[n], ref_grads[n]) for n in ref_grads),
        }
    (l1, loss1, g1), (l2, loss2, g2) = runs["sdpa"], runs["eager"]
    grad_diffs = {n: max_diff(g1[n], g2[n]) for n in g1}
    worst = max(grad_diffs, key=grad_diffs.get)
    results["sdpa_vs_eager"] = {
        "logits_max_abs_diff": max_diff(l1, l2, keep), "loss_abs_diff": (loss1 - loss2).abs().item(),
        "grad_max_abs_diff": grad_diffs[worst], "worst_grad": worst,
        "logit_scale": ref_logits[keep].abs().max().item(),
    }
    results["fp32_loss"] = ref_loss.item()
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["base", "large"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tolerance", type=float, default=5e-2,
                        help="largest allowed |sdpa - eager| of the logits, relative to their largest |value|")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="exercise this script's logic on the CPU (use a small size: --sizes tiny)")
    args = parser.parse_args(argv)

    device = "cpu" if args.cpu_dry_run else "cuda"
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("gpu_check_model: no CUDA device here; nothing to check (run this on a machine with an NVIDIA GPU).")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False     # the fp32 reference is real fp32
    torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (dry run)"
    print(f"device: {name}  torch {torch.__version__}")
    ok, all_results = True, []
    for name in args.sizes:
        r = check_size(name, args, device)
        all_results.append(r)
        d = r["sdpa_vs_eager"]
        print(f"\n{name.upper()} ({r['parameters']:,} parameters), batch {r['batch_size']} x {r['seq_len']}, bf16 autocast")
        for impl in ("sdpa", "eager"):
            x = r[impl]
            print(f"  {impl:5s}: loss {x['loss']:.5f} (fp32 {r['fp32_loss']:.5f})  finite={x['finite']}  "
                  f"{x['ms_per_step']:.1f} ms/step  peak {x['peak_gib']:.2f} GiB  "
                  f"|logits - fp32| {x['logits_vs_fp32']:.3g}  |grad - fp32| {x['grad_vs_fp32']:.3g}")
        print(f"  sdpa vs eager: logits {d['logits_max_abs_diff']:.3g} (scale {d['logit_scale']:.3g}), "
              f"loss {d['loss_abs_diff']:.3g}, grads {d['grad_max_abs_diff']:.3g} ({d['worst_grad']})")
        if not (r["sdpa"]["finite"] and r["eager"]["finite"]):
            print("  FAIL: non-finite values")
            ok = False
        if d["logits_max_abs_diff"] > args.tolerance * d["logit_scale"]:
            print(f"  FAIL: sdpa and eager logits differ by more than {args.tolerance:g} x their scale")
            ok = False
    if args.out:
        with open(args.out, "w") as f:
            json.dump(all_results, f, indent=2)
    print("\nOK" if ok else "\nFAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
