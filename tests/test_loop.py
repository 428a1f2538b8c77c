"""The training loop keeps the device busy (issue 14): no host-device synchronisation inside a step
except on logging steps, batches prepared ahead by DataLoader workers (the same batches, resumable),
non-finite steps skipped on the device and reported on the next logging step."""
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

from minibert.train import Batches, NonFiniteError, TrainConfig, Trainer, read_checkpoint, set_seed

sys.path.insert(0, str(Path(__file__).parent))
from test_train import random_instances, stack, tiny_model  # noqa: E402

READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")


def phases(steps=8):
    return [(Batches(random_instances(24), stack, batch_size=4, grad_accum=2, seed=0), steps - 3),
            (Batches(random_instances(24, seed=2), stack, batch_size=2, grad_accum=2, seed=0), 3)]


def test_a_step_reads_nothing_back_except_on_logging_steps(tmp_path, monkeypatch):
    """Every tensor -> Python conversion is counted, with the step it happens in. Inside a step only the
    model's input-id range check may read (it runs for CPU tensors only: on a GPU it is skipped); between
    steps, only logging steps (every 3rd) read, once for the log and once for the non-finite check."""
    config = TrainConfig(steps=8, lr=3e-3, warmup_steps=2, log_every=3, grad_accum=2, out_dir=str(tmp_path),
                         checkpoint_every=0)
    trainer = Trainer(tiny_model(), phases(), config)
    where = {"in_step": False}
    calls = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            callers = [frame.name for frame in traceback.extract_stack()[:-1]]
            calls.append((trainer.step, where["in_step"], name, callers))
            return original(self, *args, **kwargs)
        return wrapper

    step = trainer.train_step

    def marked_step():
        where["in_step"] = True
        try:
            return step()
        finally:
            where["in_step"] = False

    monkeypatch.setattr(trainer, "train_step", marked_step)
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    set_seed(123)
    trainer.train()
    monkeypatch.undo()

    inside = [c for c in calls if c[1] and "_check_ids" not in c[3]]
    assert inside == [], f"a training step read a tensor back: {inside[0][2]} from {inside[0][3][-4:]}"
    assert any(c[1] for c in calls)                           # the id check was seen: the counter works
    between = {c[0] for c in calls if not c[1] and "save_checkpoint" not in c[3] and "state_dict" not in c[3]}
    assert between == {3, 6, 8}                               # the logging steps (8: the last one)
    assert [r["step"] for r in trainer.history] == [3, 6, 8]


def test_workers_prefetch_the_same_batches_and_resume_exactly(tmp_path):
    def run(out, workers, until=None, resume=False):
        config = TrainConfig(steps=8, lr=3e-3, warmup_steps=2, log_every=1, grad_accum=2, out_dir=str(out),
                             num_workers=workers, prefetch_factor=2)
        trainer = Trainer(tiny_model(), phases(), config)
        if resume:
            trainer.load_checkpoint(out / "checkpoint.pt")
        else:
            set_seed(123)
        trainer.train(until=until)
        return [r["loss"] for r in trainer.history], trainer

    inline, _ = run(tmp_path / "inline", 0)
    ahead, trainer = run(tmp_path / "ahead", 2)
    assert ahead == inline                                    # bit-identical: same batches, same order
    assert trainer._loader is None                            # workers stopped at the end
    run(tmp_path / "split", 2, until=4)                       # stops inside phase 1, with batches prefetched
    assert read_checkpoint(tmp_path / "split" / "checkpoint.pt")["data"][0] == {"epoch": 1, "cursor": 8}
    resumed, _ = run(tmp_path / "split", 2, resume=True)
    assert resumed == inline[4:]


def test_index_stream_is_the_order_of_next_step_and_does_not_move_the_stream():
    ident = lambda xs: torch.tensor(xs)  # noqa: E731
    reference = Batches(list(range(40)), ident, batch_size=4, grad_accum=2, seed=3, rank=1, world_size=2)
    stream = Batches(list(range(40)), ident, batch_size=4, grad_accum=2, seed=3, rank=1, world_size=2)
    stream.advance()                                          # start mid-epoch (2 steps an epoch)
    reference.next_step()
    indices = stream.index_stream()
    for _ in range(6):                                        # crosses epoch boundaries
        expected = reference.next_step()
        assert [next(indices) for _ in range(2)] == [batch.tolist() for batch in expected]
    assert stream.state_dict() == {"epoch": 0, "cursor": 16}


def test_a_non_finite_step_is_skipped_on_the_device_and_reported_at_the_next_log(tmp_path):
    """With log_every=4 a NaN loss at step 2 is found at step 4; the fused AdamW kernel skipped step 2,
    so the weights stay finite and the optimizer counts 3 applied steps; no checkpoint passes it."""
    config = TrainConfig(steps=8, lr=3e-3, warmup_steps=2, log_every=4, out_dir=str(tmp_path),
                         checkpoint_every=0)
    trainer = Trainer(tiny_model(), Batches(random_instances(24), stack, batch_size=4, seed=0), config)
    forward = trainer.model.forward

    def poisoned(**batch):
        out = forward(**batch)
        if trainer.step == 1:                                  # the second step
            out.loss = out.loss * float("nan")
        return out

    trainer.model.forward = poisoned
    with pytest.raises(NonFiniteError, match=r"training diverged at step 2: loss nan, gradient norm nan"):
        trainer.train()
    assert trainer.step == 4
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    state = trainer.optimizer.state[next(trainer.model.parameters())]
    assert int(state["step"]) == 3                            # steps 1, 3 and 4 applied; 2 skipped
    assert not (tmp_path / "checkpoint.pt").exists()          # nothing written past a diverged step


# ============================================================================== instances as arrays
@pytest.fixture(scope="module")
def real_instances():
    """Instances built from the local corpora with static masks (the pipeline of minibert.pretrain)."""
    from minibert.corpus import load_corpora
    from minibert.pretrain import load_tokenizer
    from minibert.pretraining import create_pretraining_dataset

    tokenizer = load_tokenizer()
    corpus = load_corpora(("wikipedia_summaries", "books"), max_documents=20)
    return tokenizer, create_pretraining_dataset(corpus, tokenizer, max_seq_length=64, dupe_factor=1,
                                                 max_predictions_per_seq=10, seed=3)


@pytest.mark.parametrize("options", [dict(mlm_format="sparse"), dict(mlm_format="dense"),
                                     dict(mlm_format="sparse", pad_to_length=64, pad_predictions_to=10),
                                     dict(mlm_format="dense", pad_to_multiple_of=8)])
def test_array_rows_collate_into_the_same_batches_as_the_instances(real_instances, options):
    from minibert.pretraining import DataCollatorForPreTraining, InstanceArrays

    tokenizer, instances = real_instances
    arrays = InstanceArrays.from_dataset(instances, pad_token_id=tokenizer.pad_token_id)
    assert len(arrays) == len(instances) > 64
    assert arrays[5] == {k: instances[5][k] for k in arrays[5]}
    collate = DataCollatorForPreTraining(tokenizer, **options)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        rows = torch.randperm(len(instances), generator=g)[:16].tolist()
        expected = collate(instances.__getitems__(rows))
        got = collate(arrays.__getitems__(rows))
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key].dtype == expected[key].dtype and torch.equal(got[key], expected[key]), key
    if "pad_to_length" in options:
        assert got["input_ids"].shape == (16, 64) and got["labels"].shape == (16, 10)


def test_a_batch_without_padding_can_leave_the_mask_out(real_instances):
    from minibert.pretraining import DataCollatorForPreTraining, InstanceArrays

    tokenizer, instances = real_instances
    arrays = InstanceArrays.from_dataset(instances, pad_token_id=tokenizer.pad_token_id)
    full = [i for i in range(len(arrays)) if arrays.arrays["lengths"][i] == 64][:4]
    short = full[:3] + [int(arrays.arrays["lengths"].argmin())]
    collate = DataCollatorForPreTraining(tokenizer, mlm_format="sparse", pad_to_length=64, omit_full_mask=True)
    assert "attention_mask" not in collate(arrays.__getitems__(full))
    assert "attention_mask" not in collate([instances[i] for i in full])
    assert "attention_mask" in collate(arrays.__getitems__(short))


# ============================================================================== the command line's options
def test_pretrain_with_workers_static_shapes_and_fused_qkv_runs_and_resumes(tmp_path):
    from minibert.pretrain import pretrain
    from test_faults import small_run

    out = tmp_path / "run"
    fast = dict(static_shapes=True, num_workers=2, fused_qkv=True)
    first = pretrain(small_run(out, steps=4, **fast))
    assert [r["step"] for r in first["history"]] == [1, 2, 3, 4]
    assert (out / "model.safetensors").exists()
    again = pretrain(small_run(out, steps=4, overwrite=True, **fast))
    assert [r["loss"] for r in again["history"]] == [r["loss"] for r in first["history"]]   # deterministic
    plain = pretrain(small_run(tmp_path / "plain", steps=4))
    # Padding to the phase's length and one Q/K/V matmul change float rounding only.
    assert [r["loss"] for r in plain["history"]] == pytest.approx([r["loss"] for r in first["history"]], abs=1e-4)


def test_compile_mode_needs_compile():
    from minibert.pretrain import validate
    from test_faults import small_run

    with pytest.raises(ValueError, match="--compile-mode reduce-overhead needs --compile"):
        validate(small_run("o", compile_mode="reduce-overhead"))
    with pytest.raises(ValueError, match="--num-workers must be an integer >= 0, got -1"):
        validate(small_run("o", num_workers=-1))


def test_static_shapes_compile_once_and_varying_shapes_recompile(real_instances):
    """torch.compile (dynamo, counted by a test backend) traces the step's shapes once when every batch is
    padded to the phase's length; with batches padded to their own longest sequence it traces again.
    (Run on CPU with a counting backend: no compiler needed.)"""
    import torch._dynamo
    from torch._dynamo.testing import CompileCounter

    from minibert.config import BertConfig
    from minibert.model import BertForPreTraining
    from minibert.pretraining import DataCollatorForPreTraining, InstanceArrays

    tokenizer, instances = real_instances
    arrays = InstanceArrays.from_dataset(instances, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size, num_hidden_layers=1))
    by_length = np.argsort(arrays.arrays["lengths"], kind="stable")
    groups = [by_length[-4:], by_length[:4], by_length[40:44], by_length[-8:-4], by_length[80:84]]
    groups = [g.tolist() for g in groups]                                # the longest (64) first, then shorter
    assert len({int(arrays.arrays["lengths"][g].max()) for g in groups}) >= 3
    traced = {}
    for static in (True, False):
        torch._dynamo.reset()
        counter = CompileCounter()
        compiled = torch.compile(model, backend=counter, dynamic=False)
        options = dict(pad_to_length=64, pad_predictions_to=10) if static else {}
        collate = DataCollatorForPreTraining(tokenizer, mlm_format="sparse", **options)
        counts = []
        for rows in groups:                                  # batches of different longest sequences
            compiled(**collate(arrays.__getitems__(rows))).loss.backward()
            counts.append(counter.frame_count)
        traced[static] = counts
    torch._dynamo.reset()
    # The second call traces once more (the parameters now have gradients); then nothing new.
    assert traced[True][1] > 0 and traced[True][-1] == traced[True][1]
    assert traced[False][-1] > traced[False][1]                             # new shapes, new traces
