"""Two processes under DistributedDataParallel (gloo, CPU) train exactly like one process.

Each of the two ranks computes one micro-batch of 4 instances per step; the single process computes the
same global batch of 8 as two accumulated micro-batches of 4. Same losses, same parameters.
"""
import os
import socket

import torch
import torch.multiprocessing as mp

from minibert.train import Batches, TrainConfig, Trainer, cleanup_distributed, setup_distributed

from test_train import random_instances, stack, tiny_model

STEPS = 4


def _train(world_size: int, rank: int, grad_accum: int):
    dist_info = setup_distributed(device="cpu")
    batches = Batches(random_instances(32), stack, batch_size=4, grad_accum=grad_accum, seed=0,
                      rank=rank, world_size=world_size)
    config = TrainConfig(steps=STEPS, lr=3e-3, warmup_steps=1, log_every=1, grad_accum=grad_accum)
    trainer = Trainer(tiny_model(dropout=0.0), batches, config, dist_info)
    history = trainer.train()
    return [r["loss"] for r in history], [r["mlm_acc"] for r in history], trainer.model.state_dict()


def _worker(rank: int, port: int, out_path: str):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        result = _train(world_size=2, rank=rank, grad_accum=1)
        if rank == 0:
            torch.save(result, out_path)
    finally:
        cleanup_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    out_path = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(_free_port(), out_path), nprocs=2, join=True)
    ddp_losses, ddp_acc, ddp_params = torch.load(out_path)
    losses, acc, params = _train(world_size=1, rank=0, grad_accum=2)
    assert len(losses) == STEPS and losses[-1] < losses[0]
    torch.testing.assert_close(ddp_losses, losses, rtol=0, atol=1e-5)
    assert ddp_acc == acc
    for name in params:
        torch.testing.assert_close(ddp_params[name], params[name], rtol=1e-5, atol=1e-6, msg=name)
