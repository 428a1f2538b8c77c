"""scripts/collect_gpu_results.py: every GPU number keeps its origin, and the README shows the committed file."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("collect_gpu_results", ROOT / "scripts" / "collect_gpu_results.py")
collect = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(collect)


def _bench(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    row = dict(model="base", seq_len=128, batch_size=256, useful_flops_per_token=5e8, step_ms=50.0, mfu=0.3)
    (folder / "bench.json").write_text(json.dumps({
        "command": "python benchmarks/bench_pretrain_gpu.py --models base", "device": "GPU X", "torch": "2.0",
        "transformers": "5.0", "peak_flops": 1e15,
        "results": [{**row, "impl": "minibert-compile", "tokens_per_s": 600_000.0}]}))
    (folder / "log.txt").write_text(
        "noise\n  base  seq 128 batch 256 hf-compile          500,000 tokens/s     65.5 ms/step  MFU  27.1%   20.0 GB\n"
        "  base  seq 128 batch 256 minibert-compile    599,999 tokens/s     52.0 ms/step  MFU  34.0%   13.0 GB\n")
    (folder / "trainer_compile_metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "tokens_per_s": t}) + "\n" for s, t in ((10, 1000.0), (20, 240_000.0), (30, 300_000.0))))
    (folder / "README.md").write_text("# Raw outputs\n\n| file | command |\n|---|---|\n"
                                      "| trainer_compile_metrics.jsonl | `python -m minibert.pretrain --compile` |\n")
    return folder


def test_collect_keeps_origins_and_ratios(tmp_path):
    out = tmp_path / "pretrain_gpu.json"
    collect.main([str(_bench(tmp_path)), "--out", str(out)])
    result = json.loads(out.read_text())
    rows = {r["impl"]: r for r in result["results"]}
    # the JSON row wins over the same run's printed line; a line that only a log holds is kept and marked
    assert rows["minibert-compile"]["tokens_per_s"] == 600_000.0
    assert rows["minibert-compile"]["command"] == "python benchmarks/bench_pretrain_gpu.py --models base"
    assert rows["hf-compile"]["tokens_per_s"] == 500_000.0 and rows["hf-compile"]["mfu"] == 0.271
    assert rows["hf-compile"]["source"].startswith("log.txt, printed line")
    # the trainer: median of the records after the first (start-up and compilation), command from the README
    assert rows["trainer-compile"]["tokens_per_s"] == 270_000.0
    assert rows["trainer-compile"]["command"] == "python -m minibert.pretrain --compile"
    ratio = {(q["impl"], q["vs"]): q["ratio"] for q in result["ratios"]}
    assert ratio == {("minibert-compile", "hf-compile"): 1.2, ("trainer-compile", "minibert-compile"): 0.45}
    assert result["device"] == "GPU X" and result["provenance"] == "Raw outputs"


def test_collect_rejects_a_folder_without_results(tmp_path, capsys):
    import pytest
    with pytest.raises(SystemExit):
        collect.main([str(tmp_path), "--out", str(tmp_path / "x.json")])
    assert "no benchmark results" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_readme_table_is_the_committed_results_file():
    result = json.loads((ROOT / "results" / "pretrain_gpu.json").read_text())
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- gpu-results -->\n")[1].split("\n<!-- /gpu-results -->")[0]
    assert block == collect.markdown_table(result), "refresh it: python scripts/collect_gpu_results.py --markdown"
