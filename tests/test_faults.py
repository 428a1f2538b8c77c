"""Faults and bad input: every case of issue 13 gets a clear error naming the flag, file or row, and no
work is lost: checkpoints on a signal or an error, no silent replacement of a run, no diverged model saved.

Inputs are small: a 1-layer model, a few documents, temporary folders. The command lines run in-process
through ``main(argv)``; most cases fail in validation, before any data is read.
"""
import dataclasses
import json
import os
import pickle
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from minibert import pretrain as pretrain_module
from minibert.atomic import remove_stale_temporaries
from minibert.checkpoint import CheckpointError
from minibert.config import BertConfig
from minibert.model import BertForPreTraining, BertModel
from minibert.pretrain import PretrainConfig, RunError, pretrain, prepare_out, validate
from minibert.train import (Batches, CheckpointLoadError, NonFiniteError, TrainConfig, Trainer,
                            TrainingInterrupted, read_checkpoint, read_metrics, set_seed)

sys.path.insert(0, str(Path(__file__).parent))
from test_train import random_instances, stack, tiny_model  # noqa: E402

SMALL_MODEL = dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                   max_position_embeddings=64)


def small_run(out, **changes) -> PretrainConfig:
    """A pre-training run of a few seconds: 1 layer, H=32, 8 documents of each corpus, 4 steps."""
    cfg = PretrainConfig(config="tiny", config_overrides=dict(SMALL_MODEL), max_seq_length=32,
                         max_predictions_per_seq=5, max_documents=8, eval_every_nth=4, dupe_factor=1,
                         batch_size=4, steps=4, warmup=1, log_every=1, eval_batches=1, device="cpu",
                         checkpoint_minutes=0, out=str(out))
    return dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    pretrain(small_run(out))
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    (out / pretrain_module.LOCK_NAME).unlink(missing_ok=True)
    return out


def cli_error(capsys, argv, code=2) -> str:
    with pytest.raises(SystemExit) as exc:
        pretrain_module.main(argv)
    assert exc.value.code == code
    return capsys.readouterr().err


# ============================================================================== flags, before any data
BASE = ["--max-documents", "8", "--dupe-factor", "1", "--batch-size", "8", "--warmup", "0", "--device", "cpu"]


@pytest.mark.parametrize("flags, message", [
    (["--warmup", "100", "--steps", "30"], "--warmup 100 is larger than --steps 30"),
    (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--steps", "-5"], "--steps must be an integer >= 1, got -5"),
    (["--eval-every-nth", "0"], "--eval-every-nth must be an integer >= 2, got 0"),
    (["--eval-every-nth", "1"], "--eval-every-nth must be an integer >= 2, got 1"),
    (["--seed", "-1"], "--seed must be an integer in [0, 2**63), got -1"),
    (["--lr", "inf"], "--lr must be a positive finite number, got inf"),
    (["--lr", "nan"], "--lr must be a positive finite number, got nan"),
    (["--lr", "0"], "--lr must be a positive finite number, got 0.0"),
    (["--weight-decay", "-0.1"], "--weight-decay must be a finite number >= 0, got -0.1"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["--grad-accum", "0"], "--grad-accum must be an integer >= 1, got 0"),
    (["--max-documents", "0"], "--max-documents must be an integer >= 1, got 0"),
    (["--dupe-factor", "0"], "--dupe-factor must be an integer >= 1, got 0"),
    (["--log-every", "0"], "--log-every must be an integer >= 1, got 0"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be an integer >= 0, got -1"),
    (["--checkpoint-minutes", "-2"], "--checkpoint-minutes must be a finite number >= 0, got -2.0"),
    (["--phase2-steps", "30", "--steps", "30"], "--phase2-steps 30 must be smaller than --steps 30"),
    (["--phase2-steps", "3", "--steps", "30", "--phase2-seq-len", "1024"],
     "--phase2-seq-len 1024 is larger than the model's position table (--config tiny: max_position_embeddings 512)"),
    (["--max-seq-length", "1024"], "--max-seq-length 1024 is larger than the model's position table"),
    (["--max-predictions-per-seq", "128"], "--max-predictions-per-seq 128 must be smaller than --max-seq-length 128"),
    (["--device", "tpu"], "--device must be cpu, cuda or cuda:N, got 'tpu'"),
    (["--init-from", "no/such/folder"], "--init-from 'no/such/folder' is not a model folder (no config.json in it)"),
    (["--resume", "--overwrite"], "--resume and --overwrite contradict each other"),
    (["--corpora", "wikipedia_sumaries"], "--corpora: unknown corpus name(s) wikipedia_sumaries"),
    (["--vocab-size", "50"], "--vocab-size must be an integer >= 200, got 50"),
    (["--vocab-size", "300", "--init-from", "x"], "--vocab-size cannot be used with --init-from"),
])
def test_every_flag_is_checked_before_any_data_is_read(flags, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain_module, "build_datasets", lambda *a, **k: pytest.fail("data was read"))
    err = cli_error(capsys, BASE + ["--out", str(tmp_path / "o")] + flags)
    assert message in err
    assert not (tmp_path / "o").exists()                    # nothing created either


def test_device_cuda_without_cuda_names_the_flag(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = cli_error(capsys, BASE + ["--out", str(tmp_path / "o"), "--device", "cuda"])
    assert "--device cuda: CUDA is not available on this machine (use --device cpu)" in err


def test_out_that_is_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    assert "--out " + str(tmp_path / "f") + " is a file, not a folder" in cli_error(
        capsys, BASE + ["--out", str(tmp_path / "f")])


# ============================================================================== the output folder
def test_existing_run_is_not_replaced_without_overwrite(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"precious")
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    err = cli_error(capsys, BASE + ["--out", str(out)], code=1)
    assert f"--out {out} already holds a run (metrics.jsonl, model.safetensors)" in err
    assert "--overwrite" in err
    assert (out / "model.safetensors").read_bytes() == b"precious"
    assert (out / "metrics.jsonl").read_text() == '{"step": 1}\n'


def test_overwrite_clears_the_previous_run_and_stale_temporaries(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("checkpoint.pt", "metrics.jsonl", "eval.json"):
        (out / name).write_text("old")
    (out / ".checkpoint.pt.k2j3h4.tmp").write_bytes(b"half a save")
    (out / "notes.txt").write_text("mine")
    assert prepare_out(small_run(out, overwrite=True), out) is None
    assert sorted(os.listdir(out)) == ["notes.txt"]          # only the run's own files go


def test_stale_temporaries_of_killed_saves_are_removed(tmp_path):
    (tmp_path / ".model.safetensors.abc.tmp").write_bytes(b"x")
    (tmp_path / ".other.abc.tmp").write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path, ["model.safetensors"])
    assert [p.name for p in removed] == [".model.safetensors.abc.tmp"]
    assert (tmp_path / ".other.abc.tmp").exists()


def test_resume_without_a_checkpoint_is_an_error(capsys, tmp_path):
    out = tmp_path / "typo"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    err = cli_error(capsys, BASE + ["--out", str(out), "--resume"], code=1)
    assert f"--resume: there is no checkpoint to resume from at {out / 'checkpoint.pt'}" in err
    assert (out / "metrics.jsonl").read_text() == '{"step": 1}\n'       # the log is kept


def test_resume_into_a_new_folder_leaves_no_trace(capsys, tmp_path):
    out = tmp_path / "new" / "run"
    err = cli_error(capsys, BASE + ["--out", str(out), "--resume"], code=1)
    assert f"--resume: there is no checkpoint to resume from at {out / 'checkpoint.pt'}" in err
    assert not (tmp_path / "new").exists()                   # neither the lock nor the folders it made
    kept = tmp_path / "kept"
    kept.mkdir()
    cli_error(capsys, BASE + ["--out", str(kept), "--resume"], code=1)
    assert kept.is_dir() and os.listdir(kept) == []           # a folder that was there stays
    (kept / "notes.txt").write_text("mine")
    made = kept / "sub"
    cli_error(capsys, BASE + ["--out", str(made), "--resume"], code=1)
    assert sorted(os.listdir(kept)) == ["notes.txt"]


def test_a_second_run_into_the_same_out_fails_at_once(capsys, tmp_path, monkeypatch):
    from filelock import FileLock
    monkeypatch.setattr(pretrain_module, "build_datasets", lambda *a, **k: pytest.fail("data was read"))
    out = tmp_path / "busy"
    out.mkdir()
    with FileLock(str(out / pretrain_module.LOCK_NAME), timeout=0):      # the first run holds it
        err = cli_error(capsys, BASE + ["--out", str(out)], code=1)
    assert f"--out {out} is in use by another run" in err


# ============================================================================== resume
def test_finished_run_checkpoint_loads_with_weights_only(finished_run):
    state = torch.load(finished_run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and isinstance(state["run"]["pretrain_config"], str)
    assert [r["step"] for r in read_metrics(finished_run / "metrics.jsonl")] == [1, 2, 3, 4]
    model = BertForPreTraining.from_pretrained(finished_run)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("change, listed", [
    (dict(lr=1e-4), "--lr: checkpoint 0.001, now 0.0001"),
    (dict(weight_decay=0.1), "--weight-decay: checkpoint 0.01, now 0.1"),
    (dict(warmup=2), "--warmup: checkpoint 1, now 2"),
    (dict(steps=6), "--steps: checkpoint 4, now 6"),
    (dict(batch_size=8), "--batch-size: checkpoint 4, now 8"),
    (dict(max_documents=9, seed=3), "--max-documents: checkpoint 8, now 9; --seed: checkpoint 0, now 3"),
])
def test_resume_refuses_changed_settings_and_lists_them(run_copy, change, listed, monkeypatch):
    monkeypatch.setattr(pretrain_module, "build_datasets", lambda *a, **k: pytest.fail("data was read"))
    before = (run_copy / "checkpoint.pt").read_bytes()
    with pytest.raises(RunError, match="--allow-config-change") as exc:
        pretrain(small_run(run_copy, resume=True, **change))
    assert listed in str(exc.value)
    assert (run_copy / "checkpoint.pt").read_bytes() == before


def test_a_learned_vocabulary_is_trained_on_the_training_documents_saved_and_reused_on_resume(tmp_path,
                                                                                              monkeypatch):
    out = tmp_path / "vocab"
    seen = []
    real = pretrain_module.train_vocabulary

    def spy(cfg):
        tokenizer = real(cfg)
        seen.append(tokenizer.vocab)
        return tokenizer

    monkeypatch.setattr(pretrain_module, "train_vocabulary", spy)
    pretrain(small_run(out, vocab_size=300, checkpoint_every=2))
    saved = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(seen) == 1 and saved == list(seen[0]) and len(saved) == 300
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 300
    # 8 documents of each corpus, every 4th held out: 12 documents' words, none of the held-out ones'
    corpus = pretrain_module.load_corpora(PretrainConfig.corpora, max_documents=8)
    counted = []
    monkeypatch.setattr(pretrain_module, "train_tokenizer", lambda texts, **k: counted.extend(texts) or k)
    real(small_run(out, vocab_size=300))
    assert counted == [t for i, t in enumerate(corpus["text"]) if i % 4] and len(counted) == 12
    # a resumed run reads the vocabulary it saved instead of learning one again
    monkeypatch.setattr(pretrain_module, "train_vocabulary", lambda cfg: pytest.fail("trained again"))
    (out / pretrain_module.LOCK_NAME).unlink(missing_ok=True)
    pretrain(small_run(out, vocab_size=300, steps=6, resume=True, allow_changes=True))
    assert (out / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1] == saved


def test_resume_never_changes_the_model(run_copy):
    with pytest.raises(RunError, match="--resume cannot change the model") as exc:
        pretrain(small_run(run_copy, resume=True, config="mini", allow_changes=True))
    assert "--config: checkpoint 'tiny', now 'mini'" in str(exc.value)
    with pytest.raises(RunError, match="--resume cannot change the model") as exc:
        pretrain(small_run(run_copy, resume=True, vocab_size=300, allow_changes=True))
    assert "--vocab-size: checkpoint None, now 300" in str(exc.value)


def test_resume_with_allowed_changes_applies_them_and_survives_a_torn_log_line(run_copy, capsys):
    with open(run_copy / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')                          # a write cut short by a kill
    summary = pretrain(small_run(run_copy, resume=True, steps=6, lr=2e-3, allow_changes=True))
    assert summary["steps"] == 6
    assert "resuming with changed settings: --steps: checkpoint 4, now 6; --lr: checkpoint 0.001, now 0.002" \
        in capsys.readouterr().err
    records = read_metrics(run_copy / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[4]["lr"] == pytest.approx(2e-3 * (1 - 4 / 6))   # the new peak and the new length


@pytest.mark.parametrize("content, message", [
    (b"", "is empty (0 bytes)"),
    (b"\x00\x13random bytes" * 10, "is truncated or not a training checkpoint"),
    ("truncate", "is truncated or not a training checkpoint"),
])
def test_unreadable_checkpoint_names_the_file(run_copy, capsys, content, message):
    path = run_copy / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content == "truncate" else content)
    with pytest.raises(CheckpointLoadError) as exc:
        pretrain(small_run(run_copy, resume=True))
    assert str(exc.value).startswith(str(path)) and message in str(exc.value)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "optimizer": {}, "scheduler": {}, "step": 1, "rng": {}, "data": [],
                "evil": _RunsCode()}, path)
    with pytest.raises(CheckpointLoadError, match="cannot be loaded safely"):
        read_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def _not_a_checkpoint(kind: str, seed: int = 0) -> bytes:
    """Files a user may pass where a checkpoint belongs: text, JSON, random bytes, a plain pickle, a zip of
    something else, and damaged data behind the headers torch.save writes (its unpickler then fails with
    KeyError, IndexError, UnicodeDecodeError, ... depending on the bytes)."""
    import io
    import random
    import zipfile
    noise = random.Random(seed).randbytes(400)
    if kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("notes.txt", "not a checkpoint")
        return buffer.getvalue()
    return {"text": b"hello world\n", "json": b'{"step": 3}', "random": noise, "pickle": pickle.dumps([1, 2]),
            "pickle-header": b"\x80" + noise, "zip-header": b"PK\x03\x04" + noise}[kind]


NOT_CHECKPOINTS = ([("text", 0), ("json", 0), ("zip", 0), ("pickle", 0)]
                   + [(kind, seed) for kind in ("random", "pickle-header", "zip-header") for seed in range(40)])


def test_no_file_that_is_not_a_checkpoint_gives_a_traceback(tmp_path):
    from minibert.checkpoint import read_state_dict
    path = tmp_path / "checkpoint.pt"
    weights = tmp_path / "pytorch_model.bin"
    for kind, seed in NOT_CHECKPOINTS:
        path.write_bytes(_not_a_checkpoint(kind, seed))
        weights.write_bytes(path.read_bytes())
        with pytest.raises(CheckpointLoadError) as exc:
            read_checkpoint(path)
        assert str(exc.value).startswith(f"{path} is truncated or not a training checkpoint ("), (kind, seed)
        with pytest.raises(CheckpointError) as exc:
            read_state_dict(weights)
        assert str(exc.value).startswith(f"{weights} is truncated or not a PyTorch weights file ("), (kind, seed)


def test_a_text_file_as_checkpoint_says_what_it_starts_with(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_text("hello world\n")
    with pytest.raises(CheckpointLoadError) as exc:
        read_checkpoint(path)
    assert str(exc.value) == (f"{path} is truncated or not a training checkpoint (it starts with the text "
                              "b'hello wo', not with a zip archive or a pickle stream as torch.save writes)")
    path.write_bytes(b"\x80\x04hello world")      # a pickle header, then text: torch raised a bare KeyError
    with pytest.raises(CheckpointLoadError, match=r"is truncated or not a training checkpoint \(KeyError: 101\)"):
        read_checkpoint(path)


def test_resume_from_a_text_file_is_one_line_and_status_1(run_copy, capsys):
    (run_copy / "checkpoint.pt").write_text("hello world\n")
    argv = BASE + ["--out", str(run_copy), "--resume", "--allow-config-change"]
    err = cli_error(capsys, argv, code=1)
    assert err.startswith(f"python -m minibert.pretrain: error: {run_copy / 'checkpoint.pt'} is truncated or not "
                          "a training checkpoint (it starts with the text b'hello wo'") and err.count("\n") == 1


# ============================================================================== signals, errors, divergence
def _trainer(out, steps=8, hook=None, lr=3e-3, checkpoint_every=0):
    """test_train's two-phase run; ``hook(call)`` runs inside the data stream's collate function."""
    calls = {"n": 0}

    def collate(examples):
        calls["n"] += 1
        if hook:
            hook(calls["n"])
        return stack(examples)

    config = TrainConfig(steps=steps, lr=lr, warmup_steps=2, log_every=1, seed=0, out_dir=str(out),
                         checkpoint_every=checkpoint_every)
    data = [(Batches(random_instances(24), collate, batch_size=4, seed=0), steps - 3),
            (Batches(random_instances(24, seed=2), collate, batch_size=2, seed=0), 3)]
    return Trainer(tiny_model(), data, config)


def _resume_losses(out):
    trainer = _trainer(out)
    trainer.load_checkpoint(out / "checkpoint.pt")
    trainer.train()
    return [r["loss"] for r in trainer.history]


@pytest.fixture(scope="module")
def full_losses(tmp_path_factory):
    trainer = _trainer(tmp_path_factory.mktemp("full"))
    set_seed(123)
    trainer.train()
    return [r["loss"] for r in trainer.history]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_finishes_the_step_writes_a_checkpoint_and_resumes_exactly(tmp_path, full_losses, sig):
    trainer = _trainer(tmp_path, hook=lambda n: os.kill(os.getpid(), sig) if n == 3 else None)
    set_seed(123)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="stopped by signal") as exc:
        trainer.train()
    assert exc.value.signum == sig
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3
    # handlers restored (to whatever they were: a shell's background job starts with SIGINT ignored)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert _resume_losses(tmp_path) == full_losses[3:]


def test_an_exception_writes_the_state_before_the_failed_step(tmp_path, full_losses):
    def fail(n):
        if n == 5:
            raise OSError("disk gone")
    trainer = _trainer(tmp_path, hook=fail)
    set_seed(123)
    with pytest.raises(OSError, match="disk gone") as exc:
        trainer.train()
    assert any("checkpoint of step 4 written to" in note for note in exc.value.__notes__)
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4
    assert _resume_losses(tmp_path) == full_losses[4:]      # the failed step is redone, bit-identically


def test_cli_exit_status_after_a_signal(capsys, tmp_path, monkeypatch):
    def stopped(cfg, **_):
        raise TrainingInterrupted("training stopped by signal 15 at step 7", signal.SIGTERM)
    monkeypatch.setattr(pretrain_module, "pretrain", stopped)
    assert "stopped by signal 15 at step 7" in cli_error(capsys, BASE + ["--out", str(tmp_path / "o")], code=143)


def test_divergence_stops_and_never_overwrites_the_good_checkpoint(tmp_path):
    def poison(n):
        if n == 4:                                          # during step 4 a weight turns into NaN
            with torch.no_grad():
                trainer.model.bert.embeddings.LayerNorm.weight[0] = float("nan")
    trainer = _trainer(tmp_path, hook=poison, checkpoint_every=3)
    with pytest.raises(NonFiniteError, match="training diverged at step 4: loss nan"):
        trainer.train()
    state = read_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 3                               # the periodic one, not replaced
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    with pytest.raises(NonFiniteError, match="refusing to write"):
        trainer.save_checkpoint()


def test_cli_lr_typo_exits_non_zero_and_writes_no_model(capsys, tmp_path, monkeypatch):
    out = tmp_path / "lr"
    cfg = small_run(out, lr=1e4, warmup=0, steps=4, checkpoint_every=1)
    monkeypatch.setattr(pretrain_module, "parse_args", lambda argv: cfg)
    err = cli_error(capsys, [], code=1)
    assert "error: training diverged at step" in err
    assert not (out / "model.safetensors").exists()
    state = read_checkpoint(out / "checkpoint.pt")
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_cli_prints_one_line_per_log_every_when_the_bar_is_off(capsys, tmp_path, monkeypatch):
    import re
    cfgs = iter([small_run(tmp_path / "a", steps=4, log_every=2), small_run(tmp_path / "b", steps=4, log_every=2)])
    monkeypatch.setattr(pretrain_module, "parse_args", lambda argv: next(cfgs))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    pretrain_module.main([])
    lines = capsys.readouterr().out.splitlines()
    records = read_metrics(tmp_path / "a" / "metrics.jsonl")
    assert len(lines) == 3 and json.loads(lines[2])["steps"] == 4          # two progress lines, then the summary
    for line, record in zip(lines, records):
        assert re.fullmatch(r"step (\d)/4  loss (\d+\.\d{4})  mlm_acc (\d\.\d{3})  nsp_acc (\d\.\d{3})  "
                            r"tokens/s (\d+)", line), line
        assert line.startswith(f"step {record['step']}/4  loss {record['loss']:.4f}  mlm_acc {record['mlm_acc']:.3f}")
    monkeypatch.delenv("TQDM_DISABLE")                                   # with the bar: no progress lines
    pretrain_module.main([])
    assert [json.loads(line)["steps"] for line in capsys.readouterr().out.splitlines()] == [4]


# ============================================================================== loading model folders
@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "m"
    torch.manual_seed(0)
    BertModel(BertConfig.from_preset("tiny", vocab_size=50, **SMALL_MODEL)).save_pretrained(d)
    return d


@pytest.mark.parametrize("damage, message", [
    ("empty", "is empty (0 bytes)"),
    ("truncate", "is truncated or not a safetensors file"),
    ("random", "is truncated or not a safetensors file"),
])
def test_broken_safetensors_names_the_file(model_dir, damage, message):
    path = model_dir / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncate": data[:len(data) // 2], "random": os.urandom(300)}[damage])
    with pytest.raises(CheckpointError) as exc:
        BertModel.from_pretrained(model_dir)
    assert str(exc.value).startswith(str(path)) and message in str(exc.value)


def test_invalid_config_json_names_the_line(model_dir):
    (model_dir / "config.json").write_text('{\n  "hidden_size": 32,\n  "vocab_size": 50\n  "oops": 1\n}\n')
    with pytest.raises(ValueError, match=r"config.json is not valid JSON: Expecting ',' delimiter at line 4"):
        BertModel.from_pretrained(model_dir)


def test_config_that_does_not_fit_the_weights_names_both_files(model_dir):
    values = json.loads((model_dir / "config.json").read_text())
    values["intermediate_size"] = 48
    (model_dir / "config.json").write_text(json.dumps(values))
    with pytest.raises(CheckpointError) as exc:
        BertModel.from_pretrained(model_dir)
    text = str(exc.value)
    assert str(model_dir / "model.safetensors") in text and "wrong shape" in text
    assert "encoder.layer.0.intermediate.dense.weight: checkpoint (64, 32) vs model (48, 32)" in text


def test_metrics_log_errors_name_the_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not valid JSON"):
        read_metrics(log)


# ============================================================================== model inputs
def test_position_ids_past_the_table_and_empty_input():
    model = BertModel(BertConfig.from_preset("tiny", vocab_size=50, **SMALL_MODEL)).eval()
    with pytest.raises(ValueError, match=r"position_ids must be in \[0, 64\) \(max_position_embeddings\), "
                                         r"got values from 0 to 70"):
        model(torch.tensor([[1, 2, 3]]), position_ids=torch.tensor([[0, 1, 70]]))
    with pytest.raises(ValueError, match=r"the input has no tokens \(shape \(1, 0\)\)"):
        model(torch.zeros(1, 0, dtype=torch.long))


# ============================================================================== tokenizer files
def test_tokenizer_save_is_atomic(tmp_path, monkeypatch):
    from minibert.tokenizer import BertTokenizer
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]
    (tmp_path / "v.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer.from_pretrained(tmp_path / "v.txt")
    out = tmp_path / "out"
    tok.save_pretrained(out)
    good = (out / "vocab.txt").read_bytes()
    real_write = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name.endswith(".tmp"):
            real_write(self, "[PAD]\n[UN", encoding="utf-8")     # half written, then the disk is full
            raise OSError(28, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        tok.save_pretrained(out)
    assert (out / "vocab.txt").read_bytes() == good
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


# ============================================================================== fine-tuning
@pytest.fixture(scope="module")
def ft_model(tmp_path_factory):
    from minibert import vocab_path
    d = tmp_path_factory.mktemp("ft")
    torch.manual_seed(0)
    BertModel(BertConfig.from_preset("tiny", vocab_size=30522, **SMALL_MODEL)).save_pretrained(d)
    shutil.copy(vocab_path(), d / "vocab.txt")
    return d


def ft_error(capsys, argv) -> str:
    from minibert.finetune import main
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_finetune_needs_out(capsys, ft_model):
    assert "the following arguments are required: --out" in ft_error(capsys, ["--task", "sst2", "--model", str(ft_model)])


def test_finetune_out_checked_before_training(capsys, ft_model, tmp_path):
    (tmp_path / "file").write_text("x")
    err = ft_error(capsys, ["--task", "sst2", "--model", str(ft_model), "--out", str(tmp_path / "file")])
    assert f"--out {tmp_path / 'file'} is a file, not a folder" in err
    done = tmp_path / "done"
    done.mkdir()
    (done / "model.safetensors").write_bytes(b"precious")
    err = ft_error(capsys, ["--task", "sst2", "--model", str(ft_model), "--out", str(done)])
    assert f"--out {done} already holds a model (model.safetensors); pass --overwrite" in err
    assert (done / "model.safetensors").read_bytes() == b"precious"
    err = ft_error(capsys, ["--task", "sst2", "--model", str(ft_model), "--out", str(ft_model), "--overwrite"])
    assert "--out must differ from --model" in err


def test_a_model_folder_without_weights_is_refused_before_training(capsys, ft_model, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(ft_model / "config.json", bare / "config.json")
    err = ft_error(capsys, ["--task", "sst2", "--model", str(bare), "--out", str(tmp_path / "o")])
    assert err.splitlines()[-1] == (f"python -m minibert.finetune: error: --model {str(bare)!r} has a config.json "
                                    "but no weights (model.safetensors or pytorch_model.bin)")
    err = cli_error(capsys, BASE + ["--out", str(tmp_path / "p"), "--init-from", str(bare)])
    assert f"--init-from {str(bare)!r} has a config.json but no weights" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "p").exists()


def test_finetune_flags(capsys, ft_model, tmp_path, monkeypatch):
    base = ["--task", "sst2", "--model", str(ft_model), "--out", str(tmp_path / "o")]
    assert "--seed must be in [0, 2**32), got -1" in ft_error(capsys, base + ["--seed", "-1"])
    assert "--lr and --weight-decay must be finite" in ft_error(capsys, base + ["--lr", "inf"])
    assert "--device must be cpu, cuda or cuda:N, got 'tpu'" in ft_error(capsys, base + ["--device", "tpu"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "--device cuda: CUDA is not available" in ft_error(capsys, base + ["--device", "cuda"])


def test_finetune_tokenizer_must_match_the_model_vocabulary(capsys, ft_model, tmp_path):
    (tmp_path / "small.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]) + "\n")
    err = ft_error(capsys, ["--task", "sst2", "--model", str(ft_model), "--out", str(tmp_path / "o"),
                            "--tokenizer", str(tmp_path / "small.txt")])
    assert f"--tokenizer {tmp_path / 'small.txt'} has 6 entries but the model" in err
    assert "has vocab_size 30522" in err


def test_labels_are_checked_before_training():
    import datasets

    from minibert.finetune import load_tokenizer
    from minibert.glue import encode_glue
    from minibert.ner import encode_ner
    from minibert.squad import prepare_features

    tok = load_tokenizer()
    sst2 = datasets.Dataset.from_dict({"sentence": ["good", "bad", "fine"], "label": [1, 7, 0]}, split="train")
    with pytest.raises(ValueError, match=r"sst2 train row 1: label 7 is not a class id in 0\.\.1"):
        encode_glue("sst2", sst2, tok)
    stsb = datasets.Dataset.from_dict({"sentence1": ["a"], "sentence2": ["b"], "label": [float("nan")]})
    with pytest.raises(ValueError, match="stsb data row 0: label nan is not a finite number"):
        encode_glue("stsb", stsb, tok)
    squad = {"id": ["q0", "q1"], "question": ["who?", "what?"], "context": ["Ann ran.", "It rained."],
             "answers": [{"text": ["Ann"], "answer_start": [0]}, {"text": [], "answer_start": []}]}
    with pytest.raises(ValueError, match=r"SQuAD training row 1 \(id q1\) has no answer"):
        prepare_features(squad, tok, max_length=32, doc_stride=8)
    ner = datasets.Dataset.from_dict({"tokens": [["Ann", "ran"]], "ner_tags": [[1, -3]]})
    with pytest.raises(ValueError, match=r"NER data row 0: tag\(s\) \[-3\] are not class ids"):
        encode_ner(ner, tok)


def test_finetune_divergence_raises_and_nothing_is_saved():
    from minibert.finetune import fit, make_loader
    from minibert.model import BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig.from_preset("tiny", vocab_size=50, num_labels=2, **SMALL_MODEL))
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("inf")
    features = [{"input_ids": [2, 5, 3], "labels": 1}, {"input_ids": [2, 6, 7, 3], "labels": 0}]
    with pytest.raises(FloatingPointError, match="fine-tuning diverged at step 1"):
        fit(model, make_loader(features, 2, shuffle=False), epochs=1, lr=1e-3)


# ============================================================================== data files
def test_malformed_json_line_names_file_and_line(tmp_path, monkeypatch):
    from minibert.data import load_dataset
    folder = tmp_path / "glue" / "sst2"
    folder.mkdir(parents=True)
    rows = [json.dumps({"sentence": "fine", "label": 1, "idx": 0}), '{"sentence": "broken", "label":',
            json.dumps({"sentence": "ok", "label": 0, "idx": 2})]
    (folder / "train.jsonl").write_text("\n".join(rows) + "\n")
    (folder / "validation.jsonl").write_text(rows[0] + "\n")
    monkeypatch.setenv("MINIBERT_DATA", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=r"train\.jsonl, line 2: not valid JSON"):
        load_dataset("sst2", "train")


def test_finetune_never_writes_into_a_pretraining_run(capsys, ft_model, tmp_path):
    # A fine-tuned model beside a pre-training checkpoint would be replaced by a later `pretrain --resume`.
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"a run to resume")
    (run / "metrics.jsonl").write_text('{"step": 10}\n')
    err = ft_error(capsys, ["--task", "sst2", "--model", str(ft_model), "--out", str(run)])
    assert f"--out {run} already holds a pre-training run (checkpoint.pt, metrics.jsonl); pass --overwrite" in err
    assert (run / "checkpoint.pt").read_bytes() == b"a run to resume"


def test_finetune_respects_the_run_lock(capsys, ft_model, tmp_path):
    from filelock import FileLock

    from minibert.finetune import main
    from minibert.pretrain import LOCK_NAME
    out = tmp_path / "busy"
    out.mkdir()
    with FileLock(str(out / LOCK_NAME)):           # another run holds the folder
        with pytest.raises(SystemExit) as exc:
            main(["--task", "sst2", "--model", str(ft_model), "--out", str(out), "--max-train-examples", "8",
                  "--max-eval-examples", "8", "--epochs", "1"])
    assert exc.value.code == 1
    assert f"--out {out} is in use by another run" in capsys.readouterr().err
    assert not (out / "model.safetensors").exists()
