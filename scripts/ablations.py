"""Re-run the paper's ablations (Devlin et al. 2019, Section 5: Tables 5, 6 and 8) at one scale, with seeds.

Every variant (:data:`minibert.ablations.RECIPES` and Table 6's sizes, :func:`minibert.ablations.variants_for`)
is pre-trained with the same budget (steps, sequences per step, sequence length, documents) and fine-tuned on
SST-2 and MRPC (the LTR model also with the BiLSTM head; Table 8's mixtures also CoNLL-2003 feature-based), once
per seed. After EVERY finished run the results file is rewritten atomically (every run's numbers, the command,
the machine, the times) and one line is printed; a second invocation skips the runs already in the file.

    python scripts/ablations.py --scale book                  # the book's run: one CPU core, a few hours
    python scripts/ablations.py --scale book --dry-run        # list the runs
    python scripts/ablations.py --scale mini --out results/ablations_mini.json   # on a GPU
    python scripts/ablations.py --scale book --variants bert,no_nsp --seeds 0,1

A results file holds one scale: pointing a run at a file of another scale is an error. Without the Hugging Face
hub, point ``MINIBERT_DATA`` at the local data mirror (e.g. ``MINIBERT_DATA=../shared/data``).

Several processes may share one results file (one per core or GPU, started with the same command): each claims
a run in the file before starting it (under a lock, ``.<name>.lock`` beside the file), skips the runs other
processes have claimed, and merges its finished run into the file as it is then. A claim whose process has
died on this machine is taken over.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))                 # this checkout's minibert, from any folder

SCHEMA = 1
DEFAULT_OUT = ROOT / "results" / "ablations.json"


def build_parser() -> argparse.ArgumentParser:
    from minibert.ablations import SCALES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="book", choices=sorted(SCALES), help="budget of every run (default: book)")
    p.add_argument("--variants", default=None, help="comma-separated variant names (default: all)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="results file (default: results/ablations.json)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--dry-run", action="store_true", help="list the runs to do and exit")
    return p


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds: expected distinct non-negative integers, got {text!r}")
    return seeds


def machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def load_results(path: Path, scale) -> dict:
    from minibert.ablations import scale_dict

    settings = json.loads(json.dumps(scale_dict(scale)))     # as the file holds them (lists, not tuples)
    if not path.exists():
        return {"schema": SCHEMA, "scale": scale.name, "scale_settings": settings, "runs": {}}
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SystemExit(f"--out {path}: not a JSON file ({e}); move it away or choose another --out") from None
    if results.get("schema") != SCHEMA or not isinstance(results.get("runs"), dict):
        raise SystemExit(f"--out {path}: not an ablations results file of schema {SCHEMA}")
    if results.get("scale") != scale.name or results.get("scale_settings") != settings:
        raise SystemExit(f"--out {path} holds runs of scale {results.get('scale')!r} with other settings than "
                         f"--scale {scale.name}: choose another --out to keep the budgets apart")
    return results


def save(path: Path, results: dict) -> None:
    from minibert.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=1, sort_keys=True) + "\n")


def _alive(claim: dict) -> bool:
    """Whether the process that claimed a run still runs (a claim from another machine counts as alive)."""
    if claim.get("host") != platform.node():
        return True
    try:
        os.kill(int(claim["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError, KeyError):
        return True
    return True


class SharedResults:
    """The results file, shared by every process running ablations into it: claims and finished runs are
    read, changed and written back under one lock, atomically."""

    def __init__(self, path: Path, scale):
        from filelock import FileLock

        self.path, self.scale = path, scale
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(path.parent / f".{path.name}.lock"))

    def read(self) -> dict:
        with self.lock:
            return load_results(self.path, self.scale)

    def claim(self, key: str) -> bool:
        """Claim ``key`` for this process; False when it is finished or another live process runs it."""
        with self.lock:
            results = load_results(self.path, self.scale)
            running = results.setdefault("running", {})
            if key in results["runs"] or (key in running and _alive(running[key])):
                return False
            running[key] = {"pid": os.getpid(), "host": platform.node(), "started": now()}
            save(self.path, results)
            return True

    def release(self, key: str, run: dict | None = None, **fields) -> dict:
        """Drop this process's claim on ``key``; with ``run``, record it (and ``fields``) in the file."""
        with self.lock:
            results = load_results(self.path, self.scale)
            running = results.get("running", {})
            if running.get(key, {}).get("pid") == os.getpid():
                del running[key]
            if not running:
                results.pop("running", None)
            if run is not None:
                results["runs"][key] = run
                results.update(fields)
                results.setdefault("created", run["started"])
            save(self.path, results)
            return results


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def summary_line(key: str, run: dict) -> str:
    pre, ft = run["pretrain"], run["finetune"]
    parts = [f"{key:28s}"]
    if "mlm_perplexity" in pre:
        parts.append(f"mlm ppl {pre['mlm_perplexity']:8.1f}")
    else:
        parts.append(f"ltr ppl {pre['ltr_perplexity']:8.1f}")
    for name, m in ft.items():
        value = m.get("f1") if name.startswith("conll") else m.get("accuracy")
        parts.append(f"{name} {value:.3f}")
    parts.append(f"{run['seconds']:.0f} s ({run['cpu_seconds']:.0f} s CPU)")
    return "  ".join(parts)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    import logging

    import torch

    # A fine-tuning model starts with new heads: minibert.checkpoint says so for every run; that is expected here.
    logging.getLogger("minibert").setLevel(logging.ERROR)

    from minibert.ablations import SCALES, finetune_plan, finetune_variant, load_documents, load_tokenizer, \
        pretrain_variant, recipe_dict, variants_for

    scale = SCALES[args.scale]
    variants = variants_for(scale)
    if args.variants:
        chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = [v for v in chosen if v not in variants]
        if unknown:
            raise SystemExit(f"--variants: unknown {unknown}; at --scale {scale.name} choose from {list(variants)}")
        variants = {v: variants[v] for v in chosen}
    seeds = parse_seeds(args.seeds)
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    out = Path(args.out)
    shared = SharedResults(out, scale)
    results = shared.read() if out.exists() else load_results(out, scale)
    todo = [(name, seed) for seed in seeds for name in variants if f"{name}/seed{seed}" not in results["runs"]]
    print(f"{len(todo)} of {len(variants) * len(seeds)} runs to do at scale {scale.name!r} -> {out}", flush=True)
    if args.dry_run:
        for name, seed in todo:
            plan = ", ".join(t if h == "linear" else f"{t}_{h}" for t, h in finetune_plan(variants[name]))
            print(f"  {name}/seed{seed}: pre-train {scale.steps} steps x {scale.batch_size} x {scale.max_seq_length}"
                  f" tokens, then {plan}")
        return results
    if not todo:
        return results
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(scale)
    train_docs, held_out_docs = load_documents(scale, tokenizer)
    command = " ".join(shlex.quote(a) for a in ["python", "scripts/ablations.py", *(sys.argv[1:] if argv is None
                                                                                   else argv)])
    for name, seed in todo:
        key = f"{name}/seed{seed}"
        if not shared.claim(key):
            print(f"{key:28s} done or running in another process: skipped", flush=True)
            continue
        recipe = variants[name]
        try:
            start, cpu_start, started = time.perf_counter(), time.process_time(), now()
            model, pre = pretrain_variant(recipe, scale, seed, tokenizer, train_docs, held_out_docs)
            ft = finetune_variant(model, recipe, scale, seed, tokenizer)
        except BaseException:
            shared.release(key)
            raise
        run = {"variant": name, "seed": seed, "recipe": recipe_dict(recipe),
               "size": list(recipe.size or scale.size), "pretrain": pre, "finetune": ft,
               "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
               "started": started, "finished": now(),
               "command": command, "machine": machine()}
        results = shared.release(key, run, command=command, machine=run["machine"], updated=run["finished"])
        print(summary_line(key, run), flush=True)
    return results


if __name__ == "__main__":
    main()
