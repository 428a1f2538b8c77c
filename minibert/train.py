"""Training loop for pre-training (Devlin et al. 2019, Section 3.1 and Appendix A.2).

Everything a pre-training run needs, in the order a step uses it:

* :func:`create_optimizer` — AdamW with weight decay 0.01 on every weight except biases and LayerNorm
  parameters, betas (0.9, 0.999), eps 1e-6: the settings of Google's ``optimization.py``.
* :func:`linear_schedule_with_warmup` — the learning rate climbs linearly from 0 for ``warmup_steps`` and
  then decays linearly to 0 at ``total_steps`` (Appendix A.2: "learning rate warmup over the first 10,000
  steps, and linear decay of the learning rate").
* :class:`Batches` — a deterministic, resumable, shardable stream of micro-batches: an epoch is a seeded
  permutation of the instances; every optimizer step takes one *global batch* of
  ``batch_size * grad_accum * world_size`` instances and each process (rank) takes its own slice, as
  PyTorch's ``DistributedSampler`` would. Its position (epoch, cursor) is part of the checkpoint.
* :class:`Trainer` — one step is: ``grad_accum`` micro-batches forward/backward (bf16 autocast on CUDA,
  fp32 on CPU), clip the global gradient norm at 1.0, optimizer step, scheduler step, log. It writes a
  JSON-lines metrics log and atomic checkpoints (model, optimizer, scheduler, step, RNG states, data
  position) from which a run resumes on exactly the same trajectory.

  A step never waits for the device: losses, accuracy counts and the gradient norm stay device tensors
  and are read once every ``log_every`` steps (and before a checkpoint); a step whose loss or gradient
  norm is not finite is skipped on the device by the fused AdamW kernel (``optimizer.found_inf``) and
  reported as :class:`NonFiniteError` at the next read. With ``num_workers`` > 0, DataLoader workers
  collate the next batches ahead (pinned memory, ``non_blocking`` copies) over :meth:`Batches.index_stream`:
  the same batches in the same order, and the checkpoint holds what the trainer consumed, not what the
  workers prepared.
* :func:`setup_distributed` — reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` as set by ``torchrun`` and
  starts the process group; the Trainer then wraps the model in ``DistributedDataParallel``.

Where minibert differs from Google's code (and why):

* Google's ``AdamWeightDecayOptimizer`` has no bias correction of the moment estimates; ``torch.optim.AdamW``
  has. With the 10,000-step warmup the difference vanishes after the first few thousand steps; we keep
  PyTorch's fused kernel rather than write our own optimizer.
* A diverged step is detected up to ``log_every`` steps late (its update was skipped, later finite steps
  were applied); training then stops without writing a checkpoint past it. Google's code checks nothing.
* The loss of a step is the mean of the micro-batch losses (each micro-batch's MLM loss is a mean over its
  masked tokens). That is what Google's code computes across TPU cores (each core averages over its own
  masked tokens, then the gradients are averaged), and what DDP computes across GPUs; a single process
  with ``grad_accum=k`` computes exactly the same numbers as ``k`` processes.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .atomic import atomic_path

# Parameters whose name contains one of these get no weight decay (Google's optimization.py).
NO_DECAY = ("LayerNorm", "layer_norm", "bias")


# --------------------------------------------------------------------------------------- optimizer
def create_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.01, *,
                     betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                     fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters, with no weight decay on biases and LayerNorm.

    ``fused`` defaults to True when every parameter is a float32/bf16/fp16 tensor on a CPU or CUDA device:
    one kernel for all parameters, and the kernel can skip a step whose gradients are not finite without
    the host reading anything (the Trainer sets ``optimizer.found_inf``, as ``torch.amp.GradScaler`` does).
    Tied parameters (the MLM decoder and the word embeddings) are one tensor and are listed once.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"create_optimizer expects an nn.Module, got {type(model).__name__}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"learning rate must be a positive number, got {lr!r}")
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
    decay, no_decay = [], []
    for name, param in model.named_parameters():     # named_parameters() lists a tied tensor once
        if not param.requires_grad:
            continue
        (no_decay if any(key in name for key in NO_DECAY) else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    if fused is None:
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.bfloat16, torch.float16)
                    for p in decay + no_decay)
    groups = [{"params": decay, "weight_decay": float(weight_decay)},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


def linear_schedule_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int,
                                total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 0 to the peak learning rate, then linear decay to 0, as Google's optimization.py.

    The multiplier applied to the peak rate at (0-based) step ``t`` is ``t / warmup_steps`` while
    ``t < warmup_steps`` and ``1 - t / total_steps`` afterwards: the decay is measured from step 0, so the
    rate at the end of warmup is ``1 - warmup/total`` of the peak (a small step down). Hugging Face's
    ``get_linear_schedule_with_warmup`` instead decays over ``total - warmup`` steps; the two differ by
    ``warmup/total`` of the peak at most (1% with the paper's 10k of 1M steps).
    """
    if not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be an int in [0, total_steps={total_steps}], got {warmup_steps!r}")

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        return max(0.0, 1.0 - step / total_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


# --------------------------------------------------------------------------------------- seeds, processes
def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (every device's) random number generators."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a training step may use, as tensors and ints only.

    Python's and NumPy's Mersenne Twister states become int64 tensors, so that a checkpoint holding them
    loads with ``torch.load(weights_only=True)`` (no pickled Python objects, no code run on load).
    """
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": int(version), "mt": torch.tensor(mt, dtype=torch.int64),
                        "gauss": -1.0 if gauss is None else float(gauss), "has_gauss": gauss is not None},
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["mt"].tolist()),
                     py["gauss"] if py["has_gauss"] else None))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly one-process) run."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | None = None) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, or run as one process.

    ``torchrun --nproc_per_node=8 -m minibert.pretrain ...`` (or with ``--nnodes``/``--rdzv-endpoint`` for
    several machines) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
    The backend is NCCL on GPUs and gloo on CPUs. ``device`` ("cpu", "cuda") overrides the default
    (CUDA when available).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        dev = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------------------- data stream
class Batches:
    """A resumable stream of micro-batches over a list of pre-training instances.

    Each epoch visits the instances in a permutation drawn from a generator seeded with ``seed + epoch``
    (independent of the global RNG, so every process draws the same one). One optimizer step consumes
    a global batch of ``batch_size * grad_accum * world_size`` instances; micro-batch ``a`` of rank ``r``
    is slice ``a * world_size + r`` of it. An incomplete global batch at the end of an epoch is dropped.

    ``instances`` is any sequence (``len`` and integer indexing); ``collate_fn`` turns a list of them into
    a dict of tensors that is passed to the model as keyword arguments.
    """

    def __init__(self, instances: Sequence, collate_fn: Callable[[list], dict[str, torch.Tensor]],
                 batch_size: int, *, grad_accum: int = 1, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True):
        for name, value in (("batch_size", batch_size), ("grad_accum", grad_accum), ("world_size", world_size)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.instances, self.collate_fn = instances, collate_fn
        self.batch_size, self.grad_accum, self.seed = batch_size, grad_accum, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.global_batch = batch_size * grad_accum * world_size
        if len(instances) < self.global_batch:
            raise ValueError(f"{len(instances)} instances cannot fill one global batch of "
                             f"{self.global_batch} (batch_size {batch_size} x grad_accum {grad_accum} "
                             f"x world_size {world_size})")
        self.epoch, self.cursor = 0, 0
        self._order: np.ndarray | None = None

    def _permutation(self) -> np.ndarray:
        if self._order is None:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed + self.epoch)
                self._order = torch.randperm(len(self.instances), generator=g).numpy()
            else:
                self._order = np.arange(len(self.instances))
        return self._order

    def advance(self) -> list[list[int]]:
        """The instance indices of this rank's ``grad_accum`` micro-batches for the next optimizer step;
        moves the stream past them without reading any instance (:meth:`next_step` also reads them)."""
        if self.cursor + self.global_batch > len(self.instances):
            self.epoch, self.cursor, self._order = self.epoch + 1, 0, None
        order = self._permutation()[self.cursor:self.cursor + self.global_batch].tolist()   # NumPy: no tensor
        self.cursor += self.global_batch
        micro = []
        for a in range(self.grad_accum):
            start = (a * self.world_size + self.rank) * self.batch_size
            micro.append(order[start:start + self.batch_size])
        return micro

    def next_step(self) -> list[dict[str, torch.Tensor]]:
        """The ``grad_accum`` micro-batches this rank computes for the next optimizer step."""
        before = (self.epoch, self.cursor, self._order)
        try:
            micro = [self.collate_fn(self._fetch(indices)) for indices in self.advance()]
        except BaseException:
            self.epoch, self.cursor, self._order = before   # a failed read does not move the stream
            raise
        return micro

    def index_stream(self) -> Iterator[list[int]]:
        """Every micro-batch's indices from the current position on, forever (a ``batch_sampler`` for a
        ``DataLoader``); iterating does not move this stream, so its state stays that of the trainer."""
        clone = copy.copy(self)
        while True:
            yield from clone.advance()

    def _fetch(self, indices: list[int]) -> list:
        if hasattr(self.instances, "__getitems__"):        # datasets.Dataset: one Arrow read for the batch
            return self.instances.__getitems__(indices)
        return [self.instances[i] for i in indices]

    @property
    def steps_per_epoch(self) -> int:
        return len(self.instances) // self.global_batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor, self._order = int(state["epoch"]), int(state["cursor"]), None


# --------------------------------------------------------------------------------------- metrics
def batch_metrics(batch: dict[str, torch.Tensor], output: Any) -> dict[str, torch.Tensor | int]:
    """Sums and counts for MLM/NSP accuracy of one micro-batch: 0-dim tensors on the batch's device, or ints
    for counts the host knows from shapes (nothing is read back to the host, and no host number is copied to
    the device: a training step accumulates them and reads them when it logs).

    Works with the dense head (logits (B, S, V), labels (B, S)) and the sparse one (logits (B, P, V),
    labels (B, P)): in both, positions with label -100 are not predictions. Empty of MLM/NSP entries for a
    model without those heads.
    """
    sums: dict[str, torch.Tensor] = {}
    logits, labels = getattr(output, "prediction_logits", None), batch.get("labels")
    if logits is not None and labels is not None and logits.shape[:2] == labels.shape:
        scored = labels != -100                                          # (B, S) or (B, P)
        sums["mlm_correct"] = ((logits.argmax(-1) == labels) & scored).sum()
        sums["mlm_count"] = scored.sum()
    nsp_logits, nsp_labels = getattr(output, "seq_relationship_logits", None), batch.get("next_sentence_label")
    if nsp_logits is not None and nsp_labels is not None:
        sums["nsp_correct"] = (nsp_logits.argmax(-1) == nsp_labels).sum()
        sums["nsp_count"] = nsp_labels.numel()                         # known on the host: an int
    mask = batch.get("attention_mask")
    sums["tokens"] = mask.sum() if mask is not None else batch["input_ids"].numel()
    return sums


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]],
             device: torch.device | str = "cpu") -> dict[str, float]:
    """MLM and NSP loss and accuracy of ``model`` over ``batches`` (eval mode, no dropout).

    Accuracies are pooled over all predictions; losses are the mean of the batch losses.
    """
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    losses: dict[str, list[float]] = {"loss": [], "mlm_loss": [], "nsp_loss": []}
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(**batch)
        for key in losses:
            value = getattr(out, key, None)
            if value is not None:
                losses[key].append(float(value))
        for key, value in batch_metrics(batch, out).items():
            totals[key] = totals.get(key, 0.0) + float(value)
    model.train(was_training)
    result = {k: sum(v) / len(v) for k, v in losses.items() if v}
    if totals.get("mlm_count"):
        result["mlm_acc"] = totals["mlm_correct"] / totals["mlm_count"]
    if totals.get("nsp_count"):
        result["nsp_acc"] = totals["nsp_correct"] / totals["nsp_count"]
    return result


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSON-lines metrics log.

    A last line without its newline that does not parse is a record whose write was cut short (a killed
    run) and is dropped; any other line that is not a JSON object raises ``ValueError`` naming the file
    and the line.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):                     # no newline after it: a torn final write
                break
            raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or "step" not in record:
            raise ValueError(f"{path}, line {number}: not a metrics record (a JSON object with a 'step')")
        records.append(record)
    return records


def plot_metrics(records: str | os.PathLike | list[dict[str, Any]], smooth: int = 1):
    """Loss curves (total, MLM, NSP) and accuracy curves (MLM, NSP) of a metrics log, side by side.

    ``smooth`` > 1 draws a running mean over that many logged points. Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    if not isinstance(records, list):
        records = read_metrics(records)
    if not records:
        raise ValueError("no metrics to plot")

    def series(key):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if not points:
            return None, None
        steps, values = map(np.asarray, zip(*points))
        if smooth > 1 and len(values) >= smooth:
            values = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
            steps = steps[smooth - 1:]
        return steps, values

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key in ("loss", "mlm_loss", "nsp_loss"):
        steps, values = series(key)
        if steps is not None:
            ax_loss.plot(steps, values, label=key)
    for key in ("mlm_acc", "nsp_acc"):
        steps, values = series(key)
        if steps is not None:
            ax_acc.plot(steps, values, label=key)
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="training accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------- cost
H100_BF16_PEAK_FLOPS = 989e12     # NVIDIA H100 SXM, dense bf16 tensor-core peak (no sparsity)


def flops_per_token(config, seq_len: int, predictions_per_seq: int | None = None) -> float:
    """Training FLOPs per token of BertForPreTraining: PaLM's formula (Chowdhery et al. 2022, Appendix B).

    ``6 N + 12 L H T``: 6 FLOPs per matmul parameter and token (2 forward, 4 backward) plus the attention
    scores and their weighted sum (``H`` = heads x head size, ``T`` = sequence length). ``N`` counts the
    weights a token is multiplied by: the encoder's dense layers and the MLM head (transform + the tied
    vocabulary projection). The embedding tables are look-ups, not matmuls, so they are not in ``N``. With
    the sparse head (``predictions_per_seq`` = P) the MLM head runs on P of the T tokens; with the dense
    head (None) on all of them. The pooler and NSP classifier (one vector a sequence) are left out.
    """
    L, H, I, V = config.num_hidden_layers, config.hidden_size, config.intermediate_size, config.vocab_size
    encoder = L * (4 * H * H + 2 * H * I)             # Q, K, V, attention output; two feed-forward matmuls
    head = (H * H + H * V) * (1.0 if predictions_per_seq is None else predictions_per_seq / seq_len)
    return 6 * (encoder + head) + 12 * L * H * seq_len


# --------------------------------------------------------------------------------------- checkpoints
def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: never a half-written file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# --------------------------------------------------------------------------------------- trainer
@dataclass
class TrainConfig:
    """Hyper-parameters of a run. Defaults follow Appendix A.2 where they do not depend on scale."""
    steps: int = 1000                 # optimizer steps in the whole run (all phases)
    lr: float = 1e-4                  # peak learning rate (A.2: 1e-4)
    warmup_steps: int = 100           # A.2: 10,000 of 1,000,000
    weight_decay: float = 0.01        # A.2: L2 weight decay of 0.01
    max_grad_norm: float = 1.0        # Google's optimization.py clips the global norm at 1.0
    grad_accum: int = 1               # micro-batches per optimizer step
    seed: int = 0
    log_every: int = 10               # steps between metrics records
    checkpoint_every: int = 0         # steps between checkpoints (0: none by steps)
    checkpoint_minutes: float = 0.0   # minutes between checkpoints (0: none by time)
    out_dir: str | None = None        # metrics.jsonl and checkpoint.pt go here
    compile: bool = False             # torch.compile the model
    compile_mode: str | None = None   # torch.compile's mode: "reduce-overhead" adds CUDA graphs (static shapes)
    num_workers: int = 0              # DataLoader worker processes that collate batches ahead (0: in the loop)
    prefetch_factor: int = 4          # micro-batches each worker prepares ahead
    bf16: bool | None = None          # bf16 autocast; default: on CUDA only
    handle_signals: bool = True       # SIGINT/SIGTERM: finish the step, write a checkpoint, stop

    def __post_init__(self):
        for name in ("steps", "grad_accum", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.warmup_steps, int) or not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"TrainConfig.warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be a positive finite number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            raise ValueError(f"TrainConfig.weight_decay must be a non-negative finite number, got {self.weight_decay!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"TrainConfig.num_workers must be an int >= 0, got {self.num_workers!r}")
        if not isinstance(self.prefetch_factor, int) or self.prefetch_factor <= 0:
            raise ValueError(f"TrainConfig.prefetch_factor must be a positive int, got {self.prefetch_factor!r}")
        if self.compile_mode not in (None, "default", "reduce-overhead", "max-autotune",
                                     "max-autotune-no-cudagraphs"):
            raise ValueError(f"TrainConfig.compile_mode must be None or one of torch.compile's modes, "
                             f"got {self.compile_mode!r}")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ValueError(f"TrainConfig.checkpoint_every must be an int >= 0, got {self.checkpoint_every!r}")
        if not (isinstance(self.checkpoint_minutes, (int, float)) and math.isfinite(self.checkpoint_minutes)
                and self.checkpoint_minutes >= 0):
            raise ValueError(f"TrainConfig.checkpoint_minutes must be a finite number >= 0, got {self.checkpoint_minutes!r}")


def _read(sums: dict[str, Any]) -> dict[str, float]:
    """Device tensors and host numbers -> floats, with one device-to-host transfer for all the tensors."""
    keys = [k for k, v in sums.items() if isinstance(v, torch.Tensor)]
    out = {k: float(v) for k, v in sums.items() if not isinstance(v, torch.Tensor)}
    if keys:
        out.update(zip(keys, torch.stack([sums[k].double() for k in keys]).tolist()))
    return out


def _diverged_message(step: int, loss: float, norm: float, lr: float) -> str:
    return (f"training diverged at step {step}: loss {loss}, gradient norm {norm} (learning rate {lr:g}; "
            f"is it too high?). The step was not applied and nothing non-finite was saved")


def _worker_ignores_signals(_worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which finishes its step, writes a
    checkpoint and then stops them (a Ctrl-C reaches every process of the terminal's group)."""
    import signal

    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)


class NonFiniteError(FloatingPointError):
    """The loss or the gradient norm of a step is NaN or infinite: the run has diverged."""


class CheckpointLoadError(ValueError):
    """A training checkpoint that cannot be read, or that belongs to a different run."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after a checkpoint was written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class Trainer:
    """Trains ``model`` (any module whose ``forward(**batch)`` returns an object with ``.loss``).

    ``data`` is one :class:`Batches` stream, or a list of ``(Batches, steps)`` phases run one after the
    other (the paper's 90% of steps at 128 tokens, then 10% at 512); the phases' steps must add up to
    ``config.steps``. One optimizer and one learning-rate schedule span all phases.

    In a distributed run (``dist`` from :func:`setup_distributed`), each process builds the same model
    (same seed) and its own ``Batches`` with its rank; the Trainer wraps the model in DDP, which averages
    gradients across processes. Only rank 0 writes logs and checkpoints.
    """

    def __init__(self, model: nn.Module, data: "Batches | list[tuple[Batches, int]]",
                 config: TrainConfig, dist_info: DistInfo | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config, self.dist = config, dist_info or DistInfo()
        self.phases = [(data, config.steps)] if isinstance(data, Batches) else list(data)
        if sum(steps for _, steps in self.phases) != config.steps:
            raise ValueError(f"the phases' steps {[s for _, s in self.phases]} do not add up to "
                             f"TrainConfig.steps={config.steps}")
        for batches, _ in self.phases:
            if batches.grad_accum != config.grad_accum or batches.world_size != self.dist.world_size:
                raise ValueError("each Batches stream must have the run's grad_accum and world_size")
        self.device = self.dist.device
        self.model = model.to(self.device)          # the plain module: saved and evaluated
        self.optimizer = create_optimizer(self.model, config.lr, config.weight_decay)
        self.scheduler = linear_schedule_with_warmup(self.optimizer, config.warmup_steps, config.steps)
        self.bf16 = self.device.type == "cuda" if config.bf16 is None else config.bf16
        self.step = 0
        self.out_dir = Path(config.out_dir) if config.out_dir else None
        self.run_info: dict[str, str] = {}          # strings stored with each checkpoint (the CLI's run config)
        self.saved_step: int | None = None          # the step of the last checkpoint written or loaded
        self._stop_signal = 0                       # the signal number that asked training to stop
        self.history: list[dict[str, Any]] = []     # every metrics record of this process's run
        # What runs the forward pass: DDP around the module, and torch.compile around that.
        self.train_model: nn.Module = self.model
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if config.compile:
            self.train_model = torch.compile(self.train_model, mode=config.compile_mode)
        self._cudagraphs = config.compile and config.compile_mode in ("reduce-overhead", "max-autotune")
        self._loader: tuple[Batches, Iterator] | None = None   # the stream being prefetched, its iterator

    # ----------------------------------------------------------------------------------- one step
    def _phase(self) -> Batches:
        end = 0
        for batches, steps in self.phases:
            end += steps
            if self.step < end:
                return batches
        return self.phases[-1][0]

    def _autocast(self):
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _next_micro_batches(self) -> list[dict[str, torch.Tensor]]:
        """The current phase's next micro-batches: collated here (``num_workers=0``) or taken from the
        DataLoader workers that prepared them ahead (the same batches, in the same order)."""
        batches = self._phase()
        if self.config.num_workers == 0:
            return batches.next_step()
        if self._loader is None or self._loader[0] is not batches:
            self._close_loader()
            loader = torch.utils.data.DataLoader(
                batches.instances, batch_sampler=batches.index_stream(), collate_fn=batches.collate_fn,
                num_workers=self.config.num_workers, prefetch_factor=self.config.prefetch_factor,
                pin_memory=self.device.type == "cuda", worker_init_fn=_worker_ignores_signals,
                # its own generator: drawing the workers' seeds must not move the global RNG (dropout)
                generator=torch.Generator().manual_seed(batches.seed + batches.epoch))
            self._loader = (batches, iter(loader))
        try:
            micro = [next(self._loader[1]) for _ in range(batches.grad_accum)]
        except BaseException:
            self._close_loader()                          # the stream has not moved; start again from it
            raise
        batches.advance()                                 # the trainer's position: what it has consumed
        return micro

    def _close_loader(self) -> None:
        """Stop the workers (after a phase, a resume, an error): prefetched batches are thrown away."""
        if self._loader is not None:
            iterator = self._loader[1]
            self._loader = None
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def train_step(self) -> dict[str, Any]:
        """One optimizer step over ``grad_accum`` micro-batches; returns this rank's sums for the log.

        Nothing is read back from the device: losses, accuracy counts and the gradient norm are returned
        as 0-dim tensors (counts known on the host as ints, ``lr`` as a float), so the host can queue the
        next step while the device computes this one. A step whose loss or gradient norm is not finite is
        skipped by the fused AdamW kernel (``optimizer.found_inf``, as ``torch.amp.GradScaler`` does): the
        weights and the optimizer state stay those of the last good step. :meth:`train` reads the values
        on logging steps and before any checkpoint, and raises :class:`NonFiniteError` there.
        """
        self.train_model.train()
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        micro_batches = self._next_micro_batches()
        n = len(micro_batches)
        sums: dict[str, Any] = {}

        def add(key, value):
            sums[key] = value if key not in sums else sums[key] + value

        for i, batch in enumerate(micro_batches):
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            last = i == n - 1
            # Under DDP, only the last micro-batch's backward all-reduces the accumulated gradients.
            sync = contextlib.nullcontext() if last or not self.dist.distributed else self.train_model.no_sync()
            with sync:
                with self._autocast():
                    out = self.train_model(**batch)
                (out.loss / n).backward()
            with torch.no_grad():
                for key in ("loss", "mlm_loss", "nsp_loss"):
                    value = getattr(out, key, None)
                    if value is not None:
                        add(key, value.detach().float() / n)
                for key, value in batch_metrics(batch, out).items():
                    add(key, value)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        with torch.no_grad():
            sums["grad_norm"] = norm.detach().float()
            finite = torch.isfinite(sums["loss"]) & torch.isfinite(sums["grad_norm"])
        sums["lr"] = self.scheduler.get_last_lr()[0]          # the rate this step used
        if self.optimizer.defaults.get("fused"):
            self.optimizer.found_inf = (~finite).float()      # 1: the kernel leaves weights and moments alone
            self.optimizer.step()
        else:                                                 # only the fused kernel can skip on the device
            if not bool(finite):
                self.optimizer.zero_grad(set_to_none=True)
                raise NonFiniteError(_diverged_message(self.step + 1, float(sums["loss"]),
                                                       float(sums["grad_norm"]), sums["lr"]))
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return sums

    def _reduce(self, sums: dict[str, float]) -> dict[str, float]:
        """Average losses and add up counts across processes (every rank must call this)."""
        if not self.dist.distributed:
            return sums
        keys = sorted(k for k in sums if k not in ("lr", "grad_norm"))
        t = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        out = dict(sums)
        for k, v in zip(keys, t.tolist()):
            out[k] = v / self.dist.world_size if k.endswith("loss") else v
        return out

    # ----------------------------------------------------------------------------------- the loop
    def train(self, until: int | None = None, *,
              on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Run optimizer steps up to ``until`` (default: ``config.steps``); returns the metrics records.

        ``until`` lets a run stop early (and be resumed from its checkpoint later). With ``out_dir`` set, a
        checkpoint is written every ``checkpoint_every`` steps and every ``checkpoint_minutes`` minutes, at
        the end, when SIGINT or SIGTERM arrives (after the current step; then :class:`TrainingInterrupted`
        is raised), and when an exception stops training (the state at the start of the failed step, in a
        one-process run). A diverged step raises :class:`NonFiniteError` before it is applied.
        ``on_record``, if given, is called (in the main process only) with each metrics record, every
        ``log_every`` steps: the command line prints a line from it when the progress bar is off.
        """
        from tqdm.auto import tqdm

        until = self.config.steps if until is None else min(until, self.config.steps)
        log_path = self.out_dir / "metrics.jsonl" if self.out_dir and self.dist.is_main else None
        # Only rank 0 shows a bar, and none under TQDM_DISABLE (tqdm.auto's notebook bar would still print
        # its first line without this: a stray line in the book's stored outputs).
        quiet = {"disable": True} if not self.dist.is_main or os.environ.get("TQDM_DISABLE") else {}
        bar = tqdm(total=until, initial=self.step, desc="pre-training", **quiet)
        window: dict[str, Any] = {}                      # sums since the last record: device tensors and ints
        pending: list[tuple[int, torch.Tensor, torch.Tensor, float]] = []   # (step, loss, norm, lr) not yet read
        window_steps, window_start = 0, time.perf_counter()
        self._last_save_time = time.monotonic()
        snapshot = None                                  # the state before the step under way
        with self._catch_signals():
            try:
                while self.step < until:
                    if self.out_dir and not self.dist.distributed:
                        snapshot = (rng_state(), [batches.state_dict() for batches, _ in self.phases])
                    sums = self.train_step()
                    snapshot = None
                    pending.append((self.step, sums["loss"], sums["grad_norm"], sums["lr"]))
                    for key, value in sums.items():
                        if key != "lr":
                            window[key] = value if key not in window else window[key] + value
                    window_steps += 1
                    bar.update(1)
                    logging = self.step % self.config.log_every == 0 or self.step == until
                    if logging:                          # the only read-back of a step: one transfer
                        self._check_finite(pending)
                        reduced = self._reduce(_read(window))
                        elapsed = time.perf_counter() - window_start
                        record = self._record(reduced, window_steps, elapsed, sums["lr"])
                        self.history.append(record)
                        bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
                        if on_record is not None and self.dist.is_main:
                            on_record(record)
                        if log_path is not None:
                            log_path.parent.mkdir(parents=True, exist_ok=True)
                            with open(log_path, "a", encoding="utf-8") as f:
                                f.write(json.dumps(record) + "\n")
                        window, pending, window_steps, window_start = {}, [], 0, time.perf_counter()
                    stop = self._agree_to_stop(logging)
                    if self.out_dir and self.step < until and (stop or self._checkpoint_due(logging)):
                        self._check_finite(pending)      # never checkpoint past a diverged step
                        self.save_checkpoint()
                    if stop:
                        raise TrainingInterrupted(
                            f"training stopped by signal {stop} at step {self.step}"
                            + (f"; checkpoint written to {self.out_dir / 'checkpoint.pt'}" if self.out_dir else ""),
                            stop)
            except TrainingInterrupted:
                bar.close()
                self._close_loader()
                raise
            except NonFiniteError:                       # the last good checkpoint stays the one to resume from
                bar.close()
                self._close_loader()
                raise
            except BaseException as exc:
                bar.close()
                self._close_loader()
                self._save_after_failure(exc, snapshot)
                raise
        bar.close()
        self._close_loader()
        if self.out_dir:
            self.save_checkpoint()
        return self.history

    def _check_finite(self, pending: list[tuple[int, torch.Tensor, torch.Tensor, float]]) -> None:
        """Read the losses and gradient norms of the steps not yet read (one transfer) and raise
        :class:`NonFiniteError` for the first that is not finite (its update was skipped)."""
        if not pending:
            return
        values = torch.stack([torch.stack([loss, norm]) for _, loss, norm, _ in pending]).tolist()
        for (step, _, _, lr), (loss, norm) in zip(pending, values):
            if not (math.isfinite(loss) and math.isfinite(norm)):
                raise NonFiniteError(_diverged_message(step, loss, norm, lr))
        pending.clear()

    def _checkpoint_due(self, logging: bool = True) -> bool:
        """Every ``checkpoint_every`` steps, or when ``checkpoint_minutes`` have passed. In a distributed
        run rank 0's clock decides, and it is consulted on logging steps only (a collective is a sync)."""
        every, minutes = self.config.checkpoint_every, self.config.checkpoint_minutes
        by_steps = bool(every) and self.step % every == 0
        by_time = bool(minutes) and time.monotonic() - self._last_save_time >= 60 * minutes
        if self.dist.distributed and minutes and not logging:
            by_time = False
        elif self.dist.distributed and minutes:          # rank 0's clock decides for everyone
            flag = torch.tensor([float(by_time)], device=self.device)
            dist.broadcast(flag, src=0)
            by_time = bool(flag.item())
        return by_steps or by_time

    def _agree_to_stop(self, logging: bool = True) -> int:
        """The signal that asked to stop (0: none); in a distributed run, any rank's, agreed on logging
        steps only (the all-reduce is a host-device sync), so a stop there waits up to ``log_every`` steps."""
        if not self.dist.distributed:
            return self._stop_signal
        if not logging:
            return 0
        flag = torch.tensor([float(self._stop_signal)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    @contextlib.contextmanager
    def _catch_signals(self):
        """While training: the first SIGINT/SIGTERM asks to stop after the current step; a second stops now."""
        import signal
        import sys
        import threading

        if not self.config.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
        previous = {sig: signal.getsignal(sig) for sig in signals}

        def handler(signum, frame):
            if self._stop_signal:                         # the second one: stop at once
                raise KeyboardInterrupt
            self._stop_signal = signum
            print(f"\nsignal {signum}: stopping after step {self.step + 1} and writing a checkpoint "
                  "(send it again to stop at once)", file=sys.stderr)

        self._stop_signal = 0
        for sig in signals:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _save_after_failure(self, exc: BaseException, snapshot) -> None:
        """Write the state at the start of the failed step (one process; skipped if nothing is new)."""
        import sys

        if not self.out_dir or self.dist.distributed or getattr(self, "_saving", False):
            return
        if snapshot is not None:                         # undo what the failed step consumed
            self._close_loader()
            rng, data = snapshot
            set_rng_state(rng)
            for (batches, _), state in zip(self.phases, data):
                batches.load_state_dict(state)
            self.optimizer.zero_grad(set_to_none=True)
        if self.saved_step == self.step:
            return
        try:
            path = self.save_checkpoint()
        except Exception as save_exc:                   # report the first error, not this one
            print(f"could not write a checkpoint after the error: {save_exc}", file=sys.stderr)
            return
        note = f"checkpoint of step {self.step} written to {path}; continue with --resume"
        if hasattr(exc, "add_note"):
            exc.add_note(note)
        print(note, file=sys.stderr)

    def _record(self, s: dict[str, float], n_steps: int, elapsed: float, lr: float) -> dict[str, Any]:
        record: dict[str, Any] = {"step": self.step, "lr": lr}
        for key in ("loss", "mlm_loss", "nsp_loss"):
            record[key] = s[key] / n_steps if s.get(key) else None
        record["mlm_acc"] = s["mlm_correct"] / s["mlm_count"] if s.get("mlm_count") else None
        record["nsp_acc"] = s["nsp_correct"] / s["nsp_count"] if s.get("nsp_count") else None
        record["grad_norm"] = s["grad_norm"] / n_steps
        record["tokens_per_s"] = s["tokens"] / elapsed   # non-padding tokens, all processes
        return record

    # ----------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs, as tensors, numbers, strings, lists and dicts only (so that it loads
        with ``torch.load(weights_only=True)``)."""
        rng = rng_state()
        if self.dist.distributed:                        # every rank's generators (dropout differs by rank)
            every = [None] * self.dist.world_size
            dist.all_gather_object(every, rng)
            rng = {"ranks": every}
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "rng": rng,
            "data": [batches.state_dict() for batches, _ in self.phases],
            "config": dataclasses.asdict(self.config),
            "world_size": self.dist.world_size,
            "run": dict(self.run_info),
        }

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write ``out_dir/checkpoint.pt`` (or ``path``) atomically; every rank must call it.

        Raises :class:`NonFiniteError` instead of writing a model with NaN or infinite weights, so a good
        checkpoint is never replaced by a diverged one.
        """
        path = Path(path) if path else self.out_dir / "checkpoint.pt"
        bad = [name for name, t in self.model.state_dict().items()
               if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise NonFiniteError(f"refusing to write {path}: {len(bad)} weight(s) are not finite "
                                 f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})")
        self._saving = True
        try:
            state = self.state_dict()
            if self.dist.is_main:
                atomic_torch_save(state, path)
            if self.dist.distributed:
                dist.barrier()
        finally:
            self._saving = False
        self.saved_step, self._last_save_time = self.step, time.monotonic()
        return path

    def load_checkpoint(self, path: str | os.PathLike, state: dict[str, Any] | None = None) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint`; training then continues from its step.

        ``state`` is the checkpoint as :func:`read_checkpoint` returned it (read again from ``path`` if
        None). Raises :class:`CheckpointLoadError` naming the file when it cannot be read or does not fit.
        """
        path = Path(path)
        state = read_checkpoint(path, self.device) if state is None else state
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
            raise CheckpointLoadError(
                f"{path}: its model does not fit this run's model ({len(lines)} problem(s), e.g. "
                f"{'; '.join(lines[:2])})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        if len(state["data"]) != len(self.phases):
            raise CheckpointLoadError(f"{path} has {len(state['data'])} data phases, this run has {len(self.phases)}")
        self._close_loader()                             # prefetched batches belong to the old position
        for (batches, _), data_state in zip(self.phases, state["data"]):
            batches.load_state_dict(data_state)
        rng = state["rng"]
        if "ranks" in rng:
            if len(rng["ranks"]) == self.dist.world_size:
                set_rng_state(rng["ranks"][self.dist.rank])
            else:   # a different number of processes: a new, but still seeded, random stream
                set_seed(self.config.seed + 1000 * self.step + self.dist.rank)
        elif self.dist.world_size == 1:
            set_rng_state(rng)
        else:
            set_seed(self.config.seed + 1000 * self.step + self.dist.rank)
        self.saved_step = self.step
        # Keep the metrics log consistent with the restored step (a torn last line is dropped).
        if self.out_dir and self.dist.is_main and (self.out_dir / "metrics.jsonl").exists():
            from .atomic import atomic_write_text
            log = self.out_dir / "metrics.jsonl"
            kept = [r for r in read_metrics(log) if r["step"] <= self.step]
            atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in kept))

    def apply_hyperparameters(self) -> None:
        """Make ``config.lr``, ``weight_decay``, ``warmup_steps`` and ``steps`` rule from the current step on.

        After :meth:`load_checkpoint` the optimizer holds the checkpoint's rate and decay; a resume that was
        allowed to change them calls this. The schedule is the new one, evaluated at the current step.
        """
        self.scheduler = linear_schedule_with_warmup(self.optimizer, self.config.warmup_steps, self.config.steps)
        decay_group = self.optimizer.param_groups[0]
        decay_group["weight_decay"] = float(self.config.weight_decay)
        multiplier = self.scheduler.lr_lambdas[0](self.step)
        self.scheduler.base_lrs = [float(self.config.lr)] * len(self.optimizer.param_groups)
        self.scheduler.last_epoch = self.step
        for group in self.optimizer.param_groups:
            group["initial_lr"] = float(self.config.lr)
            group["lr"] = float(self.config.lr) * multiplier
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A training checkpoint, read with ``torch.load(weights_only=True)``: no code runs on load.

    Raises :class:`CheckpointLoadError` naming the file: missing, empty, truncated or not a checkpoint at
    all (a text file, random bytes: see :func:`minibert.checkpoint.load_torch_file`), or holding Python
    objects other than tensors, numbers and strings (an older minibert, or someone else's).
    """
    from .checkpoint import load_torch_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointLoadError(f"no training checkpoint at {path}")
    state = load_torch_file(path, "training checkpoint", "tensors, numbers and strings", CheckpointLoadError,
                            map_location=device)
    needed = {"model", "optimizer", "scheduler", "step", "rng", "data"}
    if not isinstance(state, dict) or not needed <= set(state):
        missing = sorted(needed - set(state)) if isinstance(state, dict) else sorted(needed)
        raise CheckpointLoadError(f"{path} is not a minibert training checkpoint (missing {', '.join(missing)})")
    return state
