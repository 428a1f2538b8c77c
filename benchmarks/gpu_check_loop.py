"""GPU check: a Trainer step makes no host-device synchronisation (issue 14), under
``torch.cuda.set_sync_debug_mode("error")``, which turns every synchronising CUDA call into an error.

The real Trainer on real instances from the local corpora (static shapes, sparse head, tiny config),
after two warm-up steps, with every later ``train_step`` under the error mode; logging steps (every 4th)
read their values outside ``train_step``, as designed. Four runs: eager and compiled, collating in the
loop (``num_workers=0``) and in DataLoader workers (pinned memory, ``non_blocking`` copies).

    python benchmarks/gpu_check_loop.py --out gpu_check_loop.json      # exit status 1 if a run synced
    python benchmarks/gpu_check_loop.py --cpu-dry-run                    # the same runs on CPU, no check

Needs the data mirror (MINIBERT_DATA) or the hub.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(arrays, tokenizer, device, compile: bool, workers: int, steps: int = 12) -> dict:
    from minibert.config import BertConfig
    from minibert.model import BertForPreTraining
    from minibert.pretraining import DataCollatorForPreTraining
    from minibert.train import Batches, DistInfo, TrainConfig, Trainer, set_seed

    collate = DataCollatorForPreTraining(tokenizer, mlm_format="sparse", pad_to_length=128, pad_predictions_to=20)
    set_seed(0)
    model = BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size)).set_fused_qkv()
    config = TrainConfig(steps=steps, lr=1e-4, warmup_steps=1, log_every=4, compile=compile, num_workers=workers,
                         handle_signals=False)
    trainer = Trainer(model, Batches(arrays, collate, 32, seed=0), config, DistInfo(device=device))
    step, checked = trainer.train_step, []

    def guarded():
        strict = device.type == "cuda" and trainer.step >= 2          # after compilation and the first batches
        if strict:
            torch.cuda.set_sync_debug_mode("error")
        try:
            return step()
        finally:
            if strict:
                torch.cuda.set_sync_debug_mode("default")
                checked.append(trainer.step)

    trainer.train_step = guarded
    result = {"compile": compile, "num_workers": workers}
    try:
        trainer.train()
        result.update(ok=True, steps_checked=checked, final_loss=trainer.history[-1]["loss"])
    except Exception as exc:                                           # a synchronising call, or another error
        result.update(ok=False, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}", steps_checked=checked)
    print(json.dumps(result))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--cpu-dry-run", action="store_true", help="run on CPU without the sync check")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled runs")
    args = parser.parse_args(argv)
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("gpu_check_loop: no CUDA GPU on this machine; nothing checked.")
        return 0
    from minibert.corpus import load_corpora
    from minibert.pretrain import LOCAL_CORPORA, load_tokenizer
    from minibert.pretraining import InstanceArrays, create_pretraining_dataset

    device = torch.device("cpu" if args.cpu_dry_run else "cuda")
    tokenizer = load_tokenizer()
    data = create_pretraining_dataset(load_corpora(LOCAL_CORPORA, max_documents=60), tokenizer,
                                      max_seq_length=128, max_predictions_per_seq=20, dupe_factor=2)
    arrays = InstanceArrays.from_dataset(data, pad_token_id=tokenizer.pad_token_id)
    runs = [run(arrays, tokenizer, device, compile, workers)
            for compile in ((False,) if args.no_compile or args.cpu_dry_run else (False, True))
            for workers in (0, 2)]
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (dry run, not checked)",
              "torch": torch.__version__, "sync_debug_mode": "error" if device.type == "cuda" else None,
              "ok": all(r["ok"] for r in runs), "runs": runs}
    if args.out:
        from minibert.atomic import atomic_write_text
        atomic_write_text(Path(args.out), json.dumps(report, indent=2) + "\n")
    print("OK: no synchronisation inside a training step" if report["ok"] else "FAILED: see the runs above")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
