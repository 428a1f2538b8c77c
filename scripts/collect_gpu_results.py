"""Collect the raw GPU outputs of one session into results/pretrain_gpu.json, saying where each number comes from.

A GPU session (``scripts/gpu_suite.sh`` or the commands written in its README) leaves a folder of raw outputs:
the JSON files of ``benchmarks/bench_pretrain_gpu.py``, the printed logs, and the ``metrics.jsonl`` of real
``python -m minibert.pretrain`` runs. This script reads that folder and writes one results file that the book
(Chapter 7) and the README read. Nothing is typed by hand:

* every row of a benchmark JSON file is taken with the file's own command (``source``: the file name);
* a benchmark line that a log printed but no JSON file holds (a run stopped by a time limit after printing its
  line, before writing its file) is parsed from the log and marked so (``source``: ``"<log>, printed line"``);
* a trainer run's tokens/s is the median over its logged records after the first (the first includes start-up
  and compilation), from its ``metrics.jsonl`` or, for a run whose records only a log holds, from those lines.

Ratios are taken against ``hf-compile`` (transformers + torch.compile) of the same model and sequence length on
the same machine, and the trainer against the bare step it is built on.

Usage::

    python scripts/collect_gpu_results.py ../shared/gpu-results      # writes results/pretrain_gpu.json
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from minibert.atomic import atomic_write_text  # noqa: E402

# "  base  seq 128 batch 256 hf-compile   514,541 tokens/s   63.7 ms/step  MFU  28.4%   20.0 GB"
BENCH_LINE = re.compile(r"^\s*(?P<model>base|large|tiny|mini|small|medium)\s+seq\s+(?P<seq_len>\d+)\s+batch\s+"
                        r"(?P<batch_size>\d+)\s+(?P<impl>\S+)\s+(?P<tps>[\d,]+) tokens/s\s+(?P<ms>[\d.]+) ms/step\s+"
                        r"MFU\s+(?P<mfu>[\d.]+)%\s+(?P<mem>[\d.]+) GB")
RECORD_LINE = re.compile(r'^\{"step": ')


def _key(row: dict) -> tuple:
    return row["model"], row["seq_len"], row["impl"]


def bench_rows(folder: Path) -> tuple[list[dict], dict]:
    """Rows of every benchmark JSON in ``folder`` (with their command), then the lines printed only in logs."""
    rows, header = [], {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if "results" not in data:
            continue
        header = header or {k: data[k] for k in ("device", "torch", "transformers", "peak_flops") if k in data}
        for r in data["results"]:
            rows.append({**r, "source": path.name, "command": data["command"]})
    seen = {_key(r) for r in rows}
    for log in sorted(folder.glob("*.txt")):
        for line in log.read_text().splitlines():
            m = BENCH_LINE.match(line)
            if not m:
                continue
            row = {"model": m["model"], "impl": m["impl"], "seq_len": int(m["seq_len"]),
                   "batch_size": int(m["batch_size"]), "tokens_per_s": float(m["tps"].replace(",", "")),
                   "step_ms": float(m["ms"]), "mfu": round(float(m["mfu"]) / 100, 4), "peak_memory_gb": float(m["mem"]),
                   "source": f"{log.name}, printed line (the run stopped before writing its JSON)"}
            if _key(row) not in seen:
                rows.append(row)
                seen.add(_key(row))
    return rows, header


def readme_commands(folder: Path) -> dict[str, str]:
    """file name -> command, from the folder's README table (``| file | `command` | ... |``), when it has one."""
    readme = folder / "README.md"
    commands = {}
    if readme.exists():
        for line in readme.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 2 and cells[1].startswith("`") and cells[1].endswith("`"):
                commands[cells[0]] = cells[1].strip("`")
    return commands


def trainer_rows(folder: Path) -> list[dict]:
    """Real-Trainer runs: a metrics.jsonl file, or the records a log printed after a ``--compile`` command."""
    runs = []
    for path in sorted(folder.glob("*metrics.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines() if RECORD_LINE.match(line)]
        compiled = "compile" in path.name and "uncompiled" not in path.name
        runs.append((compiled, path.name, records))
    for log in sorted(folder.glob("*.txt")):
        text = log.read_text()
        if "minibert.pretrain" not in text or "--compile" not in text:
            continue
        records = [json.loads(line) for line in text.splitlines() if RECORD_LINE.match(line)]
        if records:
            runs.append((True, f"{log.name}, printed metrics.jsonl", records))
    rows, commands = [], readme_commands(folder)
    for compiled, source, records in runs:
        steady = [r["tokens_per_s"] for r in records[1:]] or [r["tokens_per_s"] for r in records]
        rows.append({"model": "base", "seq_len": 128, "batch_size": 256,
                     "impl": "trainer-compile" if compiled else "trainer", "tokens_per_s": statistics.median(steady),
                     "tokens_per_s_logged": [round(r["tokens_per_s"]) for r in records],
                     "note": "non-padding tokens/s of python -m minibert.pretrain on the local corpora, median of "
                             "the logged records after the first", "source": source})
        if source in commands:
            rows[-1]["command"] = commands[source]
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    by_key = {_key(r): r for r in rows}
    out = []
    for r in rows:
        model, seq, impl = _key(r)
        if impl.startswith("minibert") and (model, seq, "hf-compile") in by_key:
            ref = by_key[(model, seq, "hf-compile")]
            out.append({"model": model, "seq_len": seq, "impl": impl, "vs": "hf-compile",
                        "ratio": r["tokens_per_s"] / ref["tokens_per_s"]})
        # A CLI run ("trainer", "trainer-compile") against the bare step it runs; bench_pretrain_gpu.py's
        # trainer variants (rows with real_tokens_per_s) against the bare step with their levers.
        bench = {"trainer": "minibert-fused", "trainer-graphs": "minibert-graphs"}
        bare = (bench.get(impl) if "real_tokens_per_s" in r
                else {"trainer": "minibert", "trainer-compile": "minibert-compile"}.get(impl))
        if bare and (model, seq, bare) in by_key:
            out.append({"model": model, "seq_len": seq, "impl": impl, "vs": bare,
                        "ratio": r["tokens_per_s"] / by_key[(model, seq, bare)]["tokens_per_s"]})
    return out


def markdown_table(result: dict) -> str:
    """The README's summary of a results file: BASE and LARGE rows with MFU and the ratio to hf-compile."""
    ratio = {(q["model"], q["seq_len"], q["impl"], q["vs"]): q["ratio"] for q in result["ratios"]}
    lines = [f"{result['device']}, torch {result['torch']}, transformers {result['transformers']} "
             f"(`{result['collected_by']}`):", "",
             "| model | seq | variant | tokens/s | MFU | vs hf-compile | vs bare step |", "|---|---|---|---|---|---|---|"]
    for r in sorted(result["results"], key=lambda r: (r["model"], r["seq_len"])):
        key = (r["model"], r["seq_len"], r["impl"])
        vs_hf = ratio.get((*key, "hf-compile"))
        vs_bare = next((x for (m, s, i, v), x in ratio.items() if (m, s, i) == key and v != "hf-compile"), None)
        lines.append(f"| {r['model']} | {r['seq_len']} | {r['impl']} | {r['tokens_per_s'] / 1e3:,.0f}k | "
                     + (f"{r['mfu']:.1%}" if r.get("mfu") else "") + " | "
                     + (f"x{vs_hf:.2f}" if vs_hf else "") + " | " + (f"x{vs_bare:.2f}" if vs_bare else "") + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder of raw GPU outputs (JSON, logs, metrics.jsonl)")
    parser.add_argument("--markdown", action="store_true",
                        help="print the README's table for the results file (--out) and write nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "pretrain_gpu.json",
                        help="results file to write (default: results/pretrain_gpu.json)")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(args.out.read_text())))
        return
    if not args.folder.is_dir():
        parser.error(f"folder {args.folder} does not exist")
    rows, header = bench_rows(args.folder)
    if not rows:
        parser.error(f"no benchmark results (*.json with 'results') in {args.folder}")
    rows += trainer_rows(args.folder)
    readme = args.folder / "README.md"
    result = {**header, "collected_by": "python scripts/collect_gpu_results.py " + args.folder.name,
              "provenance": readme.read_text().splitlines()[0].lstrip("# ") if readme.exists() else None,
              "command": "python benchmarks/bench_pretrain_gpu.py (per row: command, source)",
              "results": rows, "ratios": ratios(rows)}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}: "
          f"{len(rows)} rows, {len(result['ratios'])} ratios")


if __name__ == "__main__":
    main()
