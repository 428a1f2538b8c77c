"""scripts/ablations.py at the "micro" scale (a few optimizer steps, tiny subsets): the results file's schema,
its atomic rewrite after every run, resuming, the dry run and the flags' errors. Numbers are not checked: at
this scale they are noise; the options themselves are tested in test_ablation_options.py."""
import importlib.util
import json
import math
import os
import platform
from pathlib import Path

import pytest
import torch

import minibert.ablations
import minibert.atomic

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ablations.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("ablations_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


ARGS = ["--scale", "micro", "--variants", "bert,no_nsp", "--seeds", "0"]


def test_runs_resume_and_rewrite_the_file_atomically(script, tmp_path, monkeypatch, capsys):
    out = tmp_path / "results" / "ablations.json"
    args = ARGS + ["--out", str(out)]

    script.main(args + ["--dry-run"])
    listed = capsys.readouterr().out
    assert "2 of 2 runs to do" in listed and "bert/seed0: pre-train 3 steps" in listed
    assert "no_nsp/seed0" in listed and "conll2003_features" in listed and not out.exists()

    # First invocation: the second run crashes in fine-tuning. The first run is in the file, complete.
    writes = []
    real_write, real_finetune = minibert.atomic.atomic_write_text, minibert.ablations.finetune_variant

    def recording_write(path, text):
        if Path(path) == out:
            writes.append(json.loads(text))        # every write of the results is a whole JSON document
        real_write(path, text)

    def failing_finetune(model, recipe, *a, **k):
        if recipe.name == "no_nsp":
            raise RuntimeError("simulated crash")
        return real_finetune(model, recipe, *a, **k)

    monkeypatch.setattr(minibert.atomic, "atomic_write_text", recording_write)
    monkeypatch.setattr(minibert.ablations, "finetune_variant", failing_finetune)
    with pytest.raises(RuntimeError, match="simulated crash"):
        script.main(args)
    # each run is claimed in the file, then recorded; the crashed run's claim is dropped
    assert [(sorted(w["runs"]), sorted(w.get("running", {}))) for w in writes] == [
        ([], ["bert/seed0"]), (["bert/seed0"], []), (["bert/seed0"], ["no_nsp/seed0"]), (["bert/seed0"], [])]
    # no temporary file left (the lock file of the processes sharing the results stays, hidden)
    assert sorted(p.name for p in out.parent.iterdir()) == [".ablations.json.lock", "ablations.json"]
    first = json.loads(out.read_text())
    assert sorted(first["runs"]) == ["bert/seed0"] and "running" not in first
    printed = capsys.readouterr().out
    assert "2 of 2 runs to do" in printed and printed.count("\nbert/seed0 ") == 1

    # Second invocation: only the missing run, the finished one untouched.
    monkeypatch.setattr(minibert.ablations, "finetune_variant", real_finetune)
    writes.clear()
    results = script.main(args)
    assert [sorted(w["runs"]) for w in writes if "running" not in w] == [["bert/seed0", "no_nsp/seed0"]]
    printed = capsys.readouterr().out
    assert "1 of 2 runs to do" in printed and "no_nsp/seed0" in printed and "\nbert/seed0" not in printed
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results)) and saved["runs"]["bert/seed0"] == first["runs"]["bert/seed0"]

    # Third invocation: nothing new.
    writes.clear()
    script.main(args)
    assert writes == [] and "0 of 2 runs to do" in capsys.readouterr().out

    # The schema.
    scale = minibert.ablations.SCALES["micro"]
    assert saved["schema"] == 1 and saved["scale"] == "micro" and saved["scale_settings"]["steps"] == scale.steps
    assert saved["command"].startswith("python scripts/ablations.py --scale micro")
    assert {"platform", "torch", "cpu_count"} <= set(saved["machine"])
    for key, run in saved["runs"].items():
        assert key == f"{run['variant']}/seed{run['seed']}"
        assert {"recipe", "size", "pretrain", "finetune", "seconds", "started", "finished", "command",
                "machine"} <= set(run)
        pre = run["pretrain"]
        assert pre["steps"] == scale.steps and pre["tokens"] > scale.steps * scale.batch_size
        assert math.isclose(pre["mlm_perplexity"], math.exp(pre["mlm_loss"]))
        for task in ("sst2", "mrpc"):
            assert 0 <= run["finetune"][task]["accuracy"] <= 1
            assert run["finetune"][task]["num_train"] == scale.ft_train_examples
    assert "nsp_acc" in saved["runs"]["bert/seed0"]["pretrain"]
    assert "nsp_acc" not in saved["runs"]["no_nsp/seed0"]["pretrain"]
    assert 0 <= saved["runs"]["bert/seed0"]["finetune"]["conll2003_features"]["f1"] <= 1
    assert saved["runs"]["no_nsp/seed0"]["recipe"]["sentence_task"] == "none"


def test_processes_sharing_a_file_skip_each_others_runs(script, tmp_path, capsys):
    out = tmp_path / "ablations.json"
    scale = minibert.ablations.SCALES["micro"]
    shared = script.SharedResults(out, scale)
    # another live process on this machine (this one's parent) runs bert; a dead one had claimed no_nsp
    assert shared.claim("bert/seed0")
    results = json.loads(out.read_text())
    results["running"]["bert/seed0"]["pid"] = os.getppid()
    results["running"]["no_nsp/seed0"] = {"pid": 2**22 + 12345, "host": platform.node(), "started": "then"}
    out.write_text(json.dumps(results))
    script.main(ARGS + ["--out", str(out)])
    printed = capsys.readouterr().out
    assert "bert/seed0                   done or running in another process: skipped" in printed
    saved = json.loads(out.read_text())
    assert sorted(saved["runs"]) == ["no_nsp/seed0"]                 # the dead process's run was taken over
    assert list(saved["running"]) == ["bert/seed0"] and saved["running"]["bert/seed0"]["pid"] == os.getppid()
    assert not shared.claim("bert/seed0") and not shared.claim("no_nsp/seed0")


def test_a_size_variant_pre_trains_at_its_own_shape(tmp_path):
    scale = minibert.ablations.SCALES["micro"]
    variants = minibert.ablations.variants_for(scale)
    recipe = variants["size_L2_H32_A2"]
    tokenizer = minibert.ablations.load_tokenizer(scale)
    train, held_out = minibert.ablations.load_documents(scale, tokenizer)
    model, metrics = minibert.ablations.pretrain_variant(recipe, scale, 0, tokenizer, train, held_out)
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (2, 32, 2, 128)
    assert metrics["steps"] == scale.steps and math.isfinite(metrics["mlm_perplexity"])


def test_flags_are_checked(script, tmp_path, capsys):
    with pytest.raises(SystemExit, match="--variants: unknown \\['bart'\\]"):
        script.main(["--scale", "micro", "--variants", "bart", "--out", str(tmp_path / "a.json"), "--dry-run"])
    with pytest.raises(SystemExit, match="--seeds"):
        script.main(["--scale", "micro", "--seeds", "0,x", "--out", str(tmp_path / "a.json"), "--dry-run"])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": 1, "scale": "book", "scale_settings": {}, "runs": {}}))
    with pytest.raises(SystemExit, match="holds runs of scale 'book'"):
        script.main(ARGS + ["--out", str(other), "--dry-run"])
    listed = script.main(["--scale", "book", "--out", str(tmp_path / "b.json"), "--dry-run"])
    text = capsys.readouterr().out
    variants = minibert.ablations.variants_for(minibert.ablations.SCALES["book"])
    assert f"{3 * len(variants)} of {3 * len(variants)} runs to do" in text and listed["runs"] == {}
    assert {"ltr", "sop", "roberta", "mask_0_0_100", "size_L4_H128_A2"} <= set(variants)
    assert "ltr/seed2: pre-train 600 steps" in text and "sst2_bilstm" in text
