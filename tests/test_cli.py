"""The command lines explain themselves: every flag has help text and shows its default; progress bars obey
TQDM_DISABLE; the modules import top-down, without a circle."""
import argparse
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minibert import finetune, predict, pretrain

ROOT = Path(__file__).resolve().parents[1]


def parsers():
    captured = {}

    class Stop(Exception):
        pass

    def grab(self, *args, **kwargs):       # pretrain builds its parser inside parse_args
        captured["parser"] = self
        raise Stop

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = grab
    try:
        with pytest.raises(Stop):
            pretrain.parse_args([])
    finally:
        argparse.ArgumentParser.parse_args = original
    return {"pretrain": captured["parser"], "finetune": finetune.build_parser(), "predict": predict.build_parser()}


@pytest.mark.parametrize("name", ["pretrain", "finetune", "predict"])
def test_every_flag_has_help_and_shows_its_default(name):
    parser = parsers()[name]
    formatter = parser._get_formatter()
    undocumented, no_default = [], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = (action.option_strings or [action.dest])[-1]
        if not action.help:
            undocumented.append(flag)
        if action.option_strings and not action.required:
            shown = formatter._expand_help(action)
            if "default" not in shown:
                no_default.append(flag)
    assert undocumented == [] and no_default == []
    text = parser.format_help()
    assert "(default: None)" not in text and "example" in text


def test_help_texts_read_well():
    text = parsers()["pretrain"].format_help()
    assert "--dupe-factor DUPE_FACTOR" in text and "(Google: 10) (default: 5)" in " ".join(text.split())
    assert "--compile" in text and "torch.compile the model (default: off)" in " ".join(text.split())
    text = " ".join(parsers()["finetune"].format_help().split())
    assert "--log-every LOG_EVERY print the mean training loss every N steps (default: 10)" in text
    assert "peak learning rate (default 2e-5)" in text          # said in words: not repeated


def test_finetune_log_every_is_checked(tmp_path):
    parser = finetune.build_parser()
    args = parser.parse_args(["--task", "sst2", "--model", str(tmp_path), "--out", str(tmp_path / "o"),
                              "--log-every", "0"])
    with pytest.raises(ValueError, match="--log-every must be positive, got 0"):
        finetune.check_args(args)


def _run(code, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS")}
    full.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300, cwd=ROOT)


def test_progress_bars_follow_tqdm_disable():
    code = ("import torch; from minibert.finetune import predict, make_loader; "
            "m = torch.nn.Module(); m.p = torch.nn.Parameter(torch.zeros(1)); "
            "m.forward = lambda **kw: type('O', (), {'logits': kw['input_ids'].float()})(); "
            "predict(m, make_loader([{'input_ids': [1, 2]}] * 4, 2, shuffle=False)); "
            "import datasets, minibert; minibert.load_dataset('rte', 'validation'); "
            "print(datasets.is_progress_bar_enabled())")
    on, off = _run(code), _run(code, TQDM_DISABLE="1")
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    assert "evaluating" in on.stderr and on.stdout.strip() == "True"
    assert "evaluating" not in off.stderr and off.stdout.strip() == "False"


FAMILY = ["minibert.finetuning", "minibert.glue", "minibert.squad", "minibert.ner", "minibert.finetune",
          "minibert.pipelines", "minibert.predict"]


def import_graph():
    """{module: minibert modules it imports}, counting imports inside functions too (a lazy import is
    still a dependency: it is only a circle that does not fail yet)."""
    graph = {}
    for path in sorted((ROOT / "minibert").glob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minibert."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("minibert."))
        graph[path.stem] = deps - {path.stem}
    return graph


def test_no_import_circles():
    graph = import_graph()
    assert graph["finetuning"] & {"finetune", "glue", "squad", "ner"} == set()    # the loop knows no task
    assert {"glue", "squad", "ner"} <= graph["finetune"]                           # the command line, the tasks
    circles = set()

    def walk(node, path):
        for dep in graph.get(node, ()):
            if dep in path:
                circles.add(tuple(sorted(path[path.index(dep):])))
            elif dep in graph:
                walk(dep, path + [dep])

    for name in graph:
        walk(name, [name])
    # The one circle left: a model's from_pretrained/save_pretrained call minibert.checkpoint, which builds
    # the model class it is given under model.skip_init (a method and its helper, not two concepts).
    assert circles == {("checkpoint", "model")}


def test_modules_import_in_any_order():
    # Every ordered pair of the fine-tuning modules, each pair in a fresh set of minibert modules.
    code = f"""
import importlib, itertools, sys
for first, second in itertools.permutations({FAMILY!r}, 2):
    for name in [m for m in sys.modules if m == "minibert" or m.startswith("minibert.")]:
        del sys.modules[name]
    importlib.import_module(first)
    importlib.import_module(second)
print("ok")
"""
    out = _run(code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_finetune_ignore_mismatched_sizes_starts_a_head_of_another_size_fresh(tmp_path, capsys):
    """A classifier fine-tuned with 2 labels (SST-2) taken on to STS-B (1 output): refused with the flag
    to pass, then loaded with the flag (the classifier starts fresh, the encoder is the checkpoint's)."""
    import shutil

    import torch

    from minibert import BertConfig, BertForSequenceClassification, vocab_path
    from minibert.checkpoint import read_state_dict

    start = tmp_path / "sst2"
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig.from_preset(
        "tiny", num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=2)).save_pretrained(start)
    shutil.copy(vocab_path(), start / "vocab.txt")
    argv = ["--task", "stsb", "--model", str(start), "--max-train-examples", "8", "--max-eval-examples", "8",
            "--epochs", "1", "--batch-size", "8", "--max-seq-length", "32", "--device", "cpu",
            "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:
        finetune.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 1 and err.count("\n") == 1
    assert ("2 weight(s) with the wrong shape: classifier.weight: checkpoint (2, 32) vs model (1, 32); "
            "classifier.bias: checkpoint (2,) vs model (1,) (pass --ignore-mismatched-sizes to start these head "
            "weights fresh)") in err
    finetune.main(argv + ["--ignore-mismatched-sizes"])
    saved = read_state_dict(tmp_path / "out" / "model.safetensors")
    assert saved["classifier.weight"].shape == (1, 32)
    help_text = finetune.build_parser().format_help()
    assert "--ignore-mismatched-sizes" in " ".join(help_text.split()) and "(default: off)" in help_text
