"""The training loop: optimizer groups, schedule, data stream, checkpoints that resume exactly."""
import json
import math
import os

import pytest
import torch

from minibert.config import BertConfig
from minibert.model import BertForPreTraining
from minibert.train import (Batches, TrainConfig, Trainer, atomic_torch_save, create_optimizer,
                            linear_schedule_with_warmup, plot_metrics, read_metrics, set_seed)

VOCAB, SEQ, PREDS = 97, 16, 3


def tiny_model(dropout: float = 0.1) -> BertForPreTraining:
    set_seed(0)
    config = BertConfig.from_preset("tiny", vocab_size=VOCAB, num_hidden_layers=1, hidden_size=32,
                                    num_attention_heads=2, intermediate_size=64, max_position_embeddings=SEQ,
                                    hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForPreTraining(config)


def random_instances(n: int, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    """Pre-masked instances in the sparse-head format (masked_lm_positions + (P,) labels)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(8, SEQ + 1, (1,), generator=g))
        ids = torch.zeros(SEQ, dtype=torch.long)
        ids[:length] = torch.randint(5, VOCAB, (length,), generator=g)
        positions = torch.randperm(length - 1, generator=g)[:PREDS] + 1
        labels = ids[positions].clone()
        ids[positions] = 4                                    # "[MASK]"
        out.append({"input_ids": ids, "attention_mask": (torch.arange(SEQ) < length).long(),
                    "token_type_ids": (torch.arange(SEQ) >= length // 2).long() * (torch.arange(SEQ) < length),
                    "masked_lm_positions": positions, "labels": labels,
                    "next_sentence_label": torch.randint(0, 2, (), generator=g)})
    return out


def stack(examples):
    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}


# --------------------------------------------------------------------------------------- optimizer
def test_optimizer_excludes_bias_and_layernorm_from_decay():
    model = tiny_model()
    opt = create_optimizer(model, lr=1e-3)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-6
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert not any("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in decay["params"])
    assert "bert.embeddings.word_embeddings.weight" in {names[id(p)] for p in decay["params"]}
    # Every parameter exactly once, the tied decoder weight included.
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_optimizer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="learning rate must be a positive number"):
        create_optimizer(tiny_model(), lr=0)
    with pytest.raises(TypeError, match="expects an nn.Module"):
        create_optimizer([torch.zeros(2)], lr=1e-3)


def test_schedule_is_googles_linear_warmup_then_decay():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = linear_schedule_with_warmup(opt, warmup_steps=4, total_steps=10)
    rates = []
    for _ in range(11):
        rates.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    # warmup: 2 * t/4; then 2 * (1 - t/10); 0 at the end.
    assert rates == pytest.approx([0.0, 0.5, 1.0, 1.5, 1.2, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    with pytest.raises(ValueError, match="warmup_steps must be an int in"):
        linear_schedule_with_warmup(opt, warmup_steps=11, total_steps=10)


# --------------------------------------------------------------------------------------- data stream
def test_batches_shard_the_global_batch_like_one_process_with_accumulation():
    data = list(range(40))
    ident = lambda xs: torch.tensor(xs)  # noqa: E731
    single = Batches(data, ident, batch_size=4, grad_accum=2, seed=3)
    ranks = [Batches(data, ident, batch_size=4, seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(7):                                       # crosses an epoch boundary (5 steps/epoch)
        a = single.next_step()
        b = [r.next_step()[0] for r in ranks]
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert single.state_dict() == {"epoch": 1, "cursor": 16}
    with pytest.raises(ValueError, match="cannot fill one global batch"):
        Batches(list(range(5)), ident, batch_size=4, grad_accum=2)


# --------------------------------------------------------------------------------------- checkpoints
def test_atomic_save_leaves_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_torch_save({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"step": 2, "bad": Unpicklable()}, path)
    assert torch.load(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ck.pt"]                 # no temporary file left behind


def run(tmp_path, until=None, resume=False, steps=8):
    config = TrainConfig(steps=steps, lr=3e-3, warmup_steps=2, log_every=1, seed=0, out_dir=str(tmp_path))
    model = tiny_model()
    data = [(Batches(random_instances(24), stack, batch_size=4, seed=0), steps - 3),
            (Batches(random_instances(24, seed=2), stack, batch_size=2, seed=0), 3)]   # a second "phase"
    trainer = Trainer(model, data, config)
    if resume:
        trainer.load_checkpoint(tmp_path / "checkpoint.pt")
    set_seed(123) if not resume else None                    # dropout draws from the global RNG
    trainer.train(until=until)
    return trainer


def test_resume_reproduces_the_same_trajectory(tmp_path):
    full = run(tmp_path / "full")
    run(tmp_path / "split", until=3)                         # stop after step 3 (epoch 0 half done)
    resumed = run(tmp_path / "split", resume=True)
    losses = lambda t: [r["loss"] for r in t.history]        # noqa: E731
    assert losses(resumed) == losses(full)[3:]               # bit-identical on CPU, both phases
    for (n, p), q in zip(full.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), n
    # The metrics log of the split run reads as one run, with every field the brief lists.
    records = read_metrics(tmp_path / "split" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 9))
    assert [r["loss"] for r in records] == losses(full)
    assert {"step", "lr", "loss", "mlm_loss", "nsp_loss", "mlm_acc", "nsp_acc", "tokens_per_s"} <= set(records[0])
    assert records[0]["lr"] == 0.0 and records[2]["lr"] == pytest.approx(3e-3 * (1 - 2 / 8))
    assert all(math.isfinite(r["loss"]) for r in records)
    fig = plot_metrics(records)
    assert len(fig.axes) == 2


def test_training_lowers_the_loss_and_clips_gradients(tmp_path):
    config = TrainConfig(steps=20, lr=1e-2, warmup_steps=2, log_every=10, max_grad_norm=1.0)
    trainer = Trainer(tiny_model(dropout=0.0), Batches(random_instances(8), stack, batch_size=8), config)
    history = trainer.train()
    assert history[-1]["loss"] < history[0]["loss"] - 0.5    # it memorises 8 instances
    # clip_grad_norm_ returns the norm before clipping; after clipping the update used norm <= 1.
    assert all(r["grad_norm"] > 0 for r in history)
    with pytest.raises(ValueError, match="do not add up"):
        Trainer(tiny_model(), [(Batches(random_instances(8), stack, batch_size=8), 5)], config)


# --------------------------------------------------------------------------------------- the CLI
def test_cli_pretrains_and_saves_a_loadable_model(tmp_path, capsys):
    from minibert.model import BertForPreTraining
    from minibert.pretrain import main

    args = ["--max-documents", "12", "--eval-every-nth", "5", "--dupe-factor", "1", "--steps", "3", "--warmup", "1", "--batch-size", "4",
            "--log-every", "1", "--out", str(tmp_path), "--device", "cpu"]
    main(args)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and 0 <= summary["unigram_baseline_acc"] < 0.5
    model = BertForPreTraining.from_pretrained(tmp_path)
    assert model.config.hidden_size == 128 and (tmp_path / "vocab.txt").exists()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 3
    with pytest.raises(SystemExit):
        main(["--config", "huge"])
