"""The GPU scripts' CPU-side logic (issue 14, item 5): the benchmark keeps every finished row, its trainer
variant runs the real Trainer on real instances, and the suite's parts fit in 9 minutes."""
import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MICRO = ["--device", "cpu", "--models", "tiny", "--seq-lens", "128", "--steps", "2", "--warmup", "1",
         "--tokens-per-batch", "512", "--trainer-documents", "30"]


def test_trainer_variant_runs_the_real_trainer_beside_the_bare_step(tmp_path):
    bench = load("bench_pretrain_gpu")
    out = tmp_path / "bench.json"
    assert bench.main(MICRO + ["--variants", "minibert", "trainer", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["complete"] is True and report["device"] == "cpu"
    rows = {r["impl"]: r for r in report["results"]}
    assert set(rows) == {"minibert", "trainer"} and not any("error" in r for r in rows.values())
    trainer = rows["trainer"]
    assert trainer["batch_size"] == 4 and trainer["instances"] > 100
    assert 0 < trainer["real_tokens_per_s"] < trainer["tokens_per_s"]           # real instances have padding
    assert 0 < trainer["padding"] < 0.5
    # the ratio to the bare step with the trainer's levers (here a stand-in row), and to minibert-compile
    stand_in = {**rows["minibert"], "impl": "minibert-fused", "tokens_per_s": 2 * trainer["tokens_per_s"]}
    ratios = {(r["impl"], r["vs"]): r["ratio"] for r in bench.ratios_of(report["results"] + [stand_in])}
    assert ratios[("trainer", "minibert-fused")] == pytest.approx(0.5)


def test_the_json_is_written_after_every_variant(tmp_path, monkeypatch):
    bench = load("bench_pretrain_gpu")
    out = tmp_path / "bench.json"
    calls = []

    def measure(variant, *args, **kwargs):
        calls.append(variant)
        if len(calls) == 2:                                    # the time limit strikes during the second
            raise KeyboardInterrupt
        return {"step_ms": 10.0, "tokens_per_s": 1000.0, "warmup_s": 0.0, "final_loss": 1.0, "peak_memory_gb": None}

    monkeypatch.setattr(bench, "measure", measure)
    with pytest.raises(KeyboardInterrupt):
        bench.main(MICRO + ["--variants", "minibert", "minibert-dense", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["complete"] is False
    assert [r["impl"] for r in report["results"]] == ["minibert"]
    assert not list(tmp_path.glob(".*tmp"))                    # atomic: no temporary file left


def test_gpu_suite_dry_run_lists_its_parts_within_nine_minutes(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_suite.sh"), "--dry-run", str(tmp_path / "o")],
                            capture_output=True, text=True, check=True)
    parts = re.findall(r"^\[(\w+)\] limit (\d+)s: (.*)$", result.stdout, flags=re.M)
    assert [p[0] for p in parts] == ["check", "loop", "bench", "pretrain"]
    assert sum(int(p[1]) for p in parts) + 4 * 10 <= 9 * 60          # limits plus the kill grace
    bench = next(p[2] for p in parts if p[0] == "bench")
    assert "--variants" in bench and " trainer " in bench and "bench_base128.json" in bench
    assert "collect_gpu_results.py" in result.stdout
