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
* ``minibert-fused``     ``minibert-compile`` with one fused Q/K/V projection per layer (issue 14)
* ``minibert-fused-flash`` the fused projection and no mask
* ``minibert-graphs``    ``minibert-fused-flash`` compiled with ``mode="reduce-overhead"`` (CUDA graphs; the
  shapes are static)
* ``trainer``            the real ``minibert.train.Trainer`` (compiled, fused Q/K/V, static shapes, DataLoader
  workers, metrics read every 10 steps) on real instances built from the local corpora, reported beside
  the bare step with the ratio; ``tokens_per_s`` counts every slot of the padded batch (comparable with the
  bare step), ``real_tokens_per_s`` the non-padding ones
* ``trainer-graphs``     the same with ``compile_mode="reduce-overhead"``

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

On a machine without a CUDA GPU it says so and exits with status 0, writing nothing (``--device cpu`` runs
the same code on the CPU at toy sizes, to check the script; ``--dry-run`` prints the plan). The JSON is
written (atomically) after every variant, so a run stopped by a time limit keeps its finished rows.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("hf", "hf-compile", "minibert-dense", "minibert", "minibert-compile", "minibert-flash",
            "minibert-fused", "minibert-fused-flash", "minibert-graphs", "trainer", "trainer-graphs")
# The bare step each Trainer variant is built on (its levers, full batches): the ratio's denominator.
TRAINER_BASE = {"trainer": "minibert-fused", "trainer-graphs": "minibert-graphs"}
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


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(variant: str, config, seq_len: int, batch_size: int, steps: int, warmup: int,
            device=torch.device("cuda")) -> dict:
    from minibert.train import create_optimizer

    model = build(variant, config).to(device).train()
    if "fused" in variant or variant == "minibert-graphs":
        model.set_fused_qkv(True)
    optimizer = create_optimizer(model, lr=1e-4)                      # fused AdamW
    dense, sparse = make_batch(batch_size, seq_len, PREDICTIONS[seq_len], config.vocab_size, device)
    batch = dense if variant in ("hf", "hf-compile", "minibert-dense") else sparse
    if variant.endswith("flash") or variant == "minibert-graphs":
        batch = {k: v for k, v in batch.items() if k != "attention_mask"}
    graphs = variant == "minibert-graphs"
    compiled = variant.endswith("compile") or variant.startswith("minibert-") and variant != "minibert-dense"
    forward = (torch.compile(model, mode="reduce-overhead" if graphs else None)
               if compiled else model)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())

    def step():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            out = forward(**batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss.detach().clone()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(warmup):                                           # includes compilation
        loss = step()
    _sync(device)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    _sync(device)
    elapsed = time.perf_counter() - start
    result = {"step_ms": 1000 * elapsed / steps, "tokens_per_s": batch_size * seq_len * steps / elapsed,
              "warmup_s": warmup_s, "final_loss": float(loss),
              "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}
    del model, optimizer, forward, batch, dense, sparse
    _free(device)
    return result


def _free(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


_INSTANCES: dict = {}


def real_instances(seq_len: int, documents: int):
    """Instances from the local corpora, as ``python -m minibert.pretrain`` builds them (cached per length)."""
    from minibert.corpus import load_corpora
    from minibert.pretrain import LOCAL_CORPORA, load_tokenizer
    from minibert.pretraining import InstanceArrays, create_pretraining_dataset

    if seq_len not in _INSTANCES:
        tokenizer = load_tokenizer()
        corpus = load_corpora(LOCAL_CORPORA, max_documents=documents)
        data = create_pretraining_dataset(corpus, tokenizer, max_seq_length=seq_len,
                                          max_predictions_per_seq=PREDICTIONS[seq_len], dupe_factor=2)
        _INSTANCES[seq_len] = (tokenizer, InstanceArrays.from_dataset(data, pad_token_id=tokenizer.pad_token_id))
    return _INSTANCES[seq_len]


def measure_trainer(variant: str, config, seq_len: int, batch_size: int, steps: int, warmup: int,
                    device=torch.device("cuda"), documents: int = 2000, workers: int = 4) -> dict:
    """The real Trainer, as the CLI runs it with --compile --fused-qkv: tokens/s over ``steps`` steps."""
    from minibert.model import BertForPreTraining
    from minibert.pretraining import DataCollatorForPreTraining
    from minibert.train import Batches, DistInfo, TrainConfig, Trainer, set_seed

    tokenizer, arrays = real_instances(seq_len, documents)
    predictions = PREDICTIONS[seq_len]
    collate = DataCollatorForPreTraining(tokenizer, mlm_format="sparse", pad_to_length=seq_len,
                                         pad_predictions_to=predictions)
    batches = Batches(arrays, collate, batch_size, seed=0)
    set_seed(0)
    model = BertForPreTraining(config.replace(attn_implementation="sdpa", vocab_size=tokenizer.vocab_size))
    model.set_fused_qkv(True)
    compiled = device.type == "cuda"                                  # on CPU (a check of the script): eager
    train_config = TrainConfig(steps=warmup + steps, lr=1e-4, warmup_steps=1, log_every=10, compile=compiled,
                               compile_mode="reduce-overhead" if variant == "trainer-graphs" else None,
                               num_workers=workers if device.type == "cuda" else 0, handle_signals=False)
    trainer = Trainer(model, batches, train_config, DistInfo(device=device))
    start = time.perf_counter()
    trainer.train(until=warmup)                                       # compilation, first batches
    _sync(device)
    warmup_s = time.perf_counter() - start
    position = batches.state_dict()
    start = time.perf_counter()
    trainer.train(until=warmup + steps)
    _sync(device)
    elapsed = time.perf_counter() - start
    replay = Batches(arrays, collate, batch_size, seed=0)             # the timed steps' instances
    replay.load_state_dict(position)
    real = sum(int(arrays.arrays["lengths"][indices].sum()) for _ in range(steps) for indices in replay.advance())
    result = {"step_ms": 1000 * elapsed / steps, "tokens_per_s": batch_size * seq_len * steps / elapsed,
              "real_tokens_per_s": real / elapsed, "padding": 1 - real / (batch_size * seq_len * steps),
              "warmup_s": warmup_s, "final_loss": trainer.history[-1]["loss"], "instances": len(arrays),
              "compiled": compiled,
              "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}
    del trainer, model
    _free(device)
    return result


def ratios_of(results: list[dict]) -> list[dict]:
    """Each minibert variant against transformers (plain and compiled), each Trainer against its bare step."""
    ratios = []
    by_key = {(r["model"], r["seq_len"], r["impl"]): r for r in results if "tokens_per_s" in r}
    for (name, seq_len, impl), row in by_key.items():
        refs = ("hf", "hf-compile") if impl.startswith("minibert") else ()
        if impl in TRAINER_BASE:
            refs = (TRAINER_BASE[impl], "minibert-compile", "hf-compile")
        for ref in refs:
            if (name, seq_len, ref) in by_key:
                ratios.append({"model": name, "seq_len": seq_len, "impl": impl, "vs": ref,
                               "ratio": row["tokens_per_s"] / by_key[(name, seq_len, ref)]["tokens_per_s"]})
    return ratios


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
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: run the same code at toy sizes, to check the script (no bf16)")
    parser.add_argument("--trainer-documents", type=int, default=2000,
                        help="documents per corpus for the trainer variants' instances")
    parser.add_argument("--dry-run", action="store_true", help="print what would run; measure nothing")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from minibert.atomic import atomic_write_text
    from minibert.config import BertConfig
    from minibert.train import H100_BF16_PEAK_FLOPS, flops_per_token

    plan = [(name, seq_len, max(1, args.tokens_per_batch // seq_len), variant)
            for name in args.models for seq_len in args.seq_lens for variant in args.variants]
    if args.dry_run:
        for name, seq_len, batch_size, variant in plan:
            print(f"  would run {name:5s} seq {seq_len:3d} batch {batch_size:3d} {variant}")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_pretrain_gpu: no CUDA GPU on this machine; nothing measured, nothing written.")
        return 0

    import transformers

    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"{device_name}, torch {torch.__version__}, transformers {transformers.__version__}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": "python benchmarks/bench_pretrain_gpu.py" + ("" if not argv and len(sys.argv) < 2
                                                                 else " " + " ".join(argv if argv else sys.argv[1:])),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": device_name, "torch": torch.__version__, "transformers": transformers.__version__,
        "peak_flops": H100_BF16_PEAK_FLOPS, "peak_flops_note": "H100 SXM dense bf16; MFU is against this",
        "steps": args.steps, "warmup": args.warmup, "complete": False, "results": [], "ratios": [],
    }
    results = report["results"]
    for name in args.models:
        config = BertConfig.from_preset(name)
        for seq_len in args.seq_lens:
            batch_size = max(1, args.tokens_per_batch // seq_len)
            useful = flops_per_token(config, seq_len, PREDICTIONS[seq_len])
            for variant in args.variants:
                row = {"model": name, "impl": variant, "seq_len": seq_len, "batch_size": batch_size,
                       "useful_flops_per_token": useful}
                try:
                    if variant in TRAINER_BASE:
                        row.update(measure_trainer(variant, config, seq_len, batch_size, args.steps, args.warmup,
                                                   device, documents=args.trainer_documents))
                    else:
                        row.update(measure(variant, config, seq_len, batch_size, args.steps, args.warmup, device))
                    row["mfu"] = row["tokens_per_s"] * useful / H100_BF16_PEAK_FLOPS
                    print(f"  {name:5s} seq {seq_len:3d} batch {batch_size:3d} {variant:17s} "
                          f"{row['tokens_per_s']:>9,.0f} tokens/s  {row['step_ms']:7.1f} ms/step  "
                          f"MFU {row['mfu']:6.1%}  {row['peak_memory_gb'] or 0:5.1f} GB")
                except Exception as exc:                  # e.g. out of memory: record it and go on
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    print(f"  {name:5s} seq {seq_len:3d} {variant:17s} failed: {row['error']}")
                    _free(device)
                results.append(row)
                report["ratios"] = ratios_of(results)
                atomic_write_text(out, json.dumps(report, indent=2) + "\n")   # after every variant

    for r in report["ratios"]:
        print(f"  {r['model']:5s} seq {r['seq_len']:3d} {r['impl']:20s} / {r['vs']:20s} x{r['ratio']:.2f}")
    report["complete"] = True
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
