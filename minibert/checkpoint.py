"""Reading and writing Hugging Face-format model directories.

A directory holds ``config.json`` and the weights, ``model.safetensors`` (preferred) or the older
``pytorch_model.bin``. Because minibert's modules carry Hugging Face's names, a checkpoint's keys are
the model's ``state_dict`` keys, up to four harmless differences that :func:`load_state_dict_into`
smooths over:

1. TF-era names: ``LayerNorm.gamma``/``LayerNorm.beta`` are ``LayerNorm.weight``/``LayerNorm.bias``.
2. Buffers Hugging Face stores (``embeddings.position_ids``, ``embeddings.token_type_ids``) are
   not parameters of minibert and are dropped.
3. A bare ``BertModel`` checkpoint has keys without the ``bert.`` prefix that task models use; the prefix
   is added or removed as needed.
4. Tied weights: ``cls.predictions.decoder.weight`` is the word-embedding matrix and
   ``cls.predictions.decoder.bias`` is ``cls.predictions.bias``; either spelling loads. Whether the
   decoder is tied comes from ``config.json`` (``tie_word_embeddings``, default true, as transformers): an
   untied decoder loads its own ``cls.predictions.decoder.weight`` and is saved with it. A tied model
   given a checkpoint whose decoder weight differs from its word embeddings keeps the embeddings and lists
   the decoder key in ``loading_info["ignored"]`` (with a warning), rather than dropping it silently.

What cannot be smoothed over raises :class:`CheckpointError` listing every offending key: encoder weights
(``embeddings.*``, ``encoder.*``) missing from the checkpoint or left over, and any shape mismatch, except
that with ``ignore_mismatched_sizes=True`` (transformers' flag) a *head* weight whose shape differs (a
classifier with another number of labels) is not loaded: it starts fresh, and is listed in
``loading_info["mismatched"]`` (with both shapes) as well as in ``loading_info["initialized"]``. Encoder
weights of the wrong shape still raise: they mean a config.json that does not describe the weights.
Head weights the checkpoint lacks (the pooler, ``cls.*``, ``classifier``, ``qa_outputs``) keep their
fresh initialisation and are listed in ``model.loading_info["initialized"]`` (and logged), which is how a
pre-trained encoder becomes a fine-tuning model. Head weights the model has no place for (for example the
MLM head when loading into a plain ``BertModel``) are ignored and listed in ``loading_info["ignored"]``.
Both lists use the model's key names (after the renamings above).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path, atomic_write_text
from .config import BertConfig

logger = logging.getLogger("minibert")

SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
BASE_PREFIX = "bert."
ENCODER_PREFIXES = ("embeddings.", "encoder.")        # must be complete in any checkpoint
BASE_PREFIXES = ENCODER_PREFIXES + ("pooler.",)        # what lives under "bert." in a task model
BUFFER_SUFFIXES = ("position_ids", "token_type_ids")   # Hugging Face buffers, not weights


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model: missing encoder weights, wrong shapes, extra layers."""


# ======================================================================================= reading
def find_weights_file(directory: str | os.PathLike) -> Path:
    """The weights file of a model directory: model.safetensors, else pytorch_model.bin."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory (expected config.json + {SAFETENSORS_NAME})")
    for name in (SAFETENSORS_NAME, PYTORCH_NAME):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no {SAFETENSORS_NAME} or {PYTORCH_NAME} in {directory}")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or PyTorch .bin file, on the CPU."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): a save was cut short, or the disk was full")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as exc:
            raise CheckpointError(f"{path} is truncated or not a safetensors file ({exc})") from None
    state = load_torch_file(path, "PyTorch weights file", "tensors", CheckpointError)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


# The first bytes of what torch.save writes: a zip archive (PyTorch >= 1.6), or a pickle stream (the
# legacy format of older Hugging Face pytorch_model.bin files, which starts with the PROTO opcode).
TORCH_FILE_MAGIC = (b"PK\x03\x04", b"\x80")


def load_torch_file(path: Path, what: str, allowed: str, error: type[Exception], map_location="cpu"):
    """``torch.load(path, weights_only=True)``, with every way a file can fail to be one turned into
    ``error`` naming the file: ``what`` names the kind of file expected ("a training checkpoint") and
    ``allowed`` what it may hold ("tensors"). A file that does not start as a zip archive or a pickle
    stream (a text file, random bytes) is refused before torch reads it; torch's unpickler can fail on a
    damaged one with any exception (KeyError, IndexError, ...), and each becomes ``error`` too."""
    import pickle
    import warnings

    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise error(f"{path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not head:
        raise error(f"{path} is empty (0 bytes): a save was cut short, or the disk was full")
    if not head.startswith(TORCH_FILE_MAGIC):
        kind = "text" if all(32 <= b < 127 or b in b"\t\r\n" for b in head) else "bytes"
        raise error(f"{path} is truncated or not a {what} (it starts with the {kind} {head!r}, not with "
                    "a zip archive or a pickle stream as torch.save writes)")
    try:
        with warnings.catch_warnings():      # damaged data makes torch warn of odd pickle protocols first
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc) and "GLOBAL" not in str(exc):
            raise error(f"{path} is truncated or not a {what} (unreadable pickle data)") from None
        first = next((line.strip() for line in str(exc).splitlines() if "Unsupported global" in line),
                     "a Python object")
        raise error(f"{path} cannot be loaded safely (weights_only=True): it is not a {what}, or holds "
                    f"Python objects other than {allowed} ({first})") from None
    except Exception as exc:     # noqa: BLE001 -- damaged data fails in many ways (KeyError, IndexError, ...)
        first = (str(exc).strip().splitlines() or [""])[0]
        detail = first if isinstance(exc, (RuntimeError, EOFError)) and first else f"{type(exc).__name__}: {first}"
        raise error(f"{path} is truncated or not a {what} ({detail.rstrip(': ')})") from None


def normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename TF-era LayerNorm gamma/beta to weight/bias and drop Hugging Face's index buffers."""
    out = {}
    for key, tensor in state.items():
        if key.rsplit(".", 1)[-1] in BUFFER_SUFFIXES and ".embeddings." in f".{key}":
            continue
        if key.endswith(".gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith(".beta"):
            key = key[: -len("beta")] + "bias"
        out[key] = tensor
    return out


def tied_aliases(model: torch.nn.Module) -> dict[str, str]:
    """{alias: canonical} for state_dict keys that name an already-listed Parameter (tied weights)."""
    seen: dict[int, str] = {}
    aliases = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            aliases[key] = seen[id(tensor)]
        else:
            seen[id(tensor)] = key
    return aliases


def _is_encoder_key(key: str) -> bool:
    key = key[len(BASE_PREFIX):] if key.startswith(BASE_PREFIX) else key
    return key.startswith(ENCODER_PREFIXES)


def load_state_dict_into(model: torch.nn.Module, state: dict[str, torch.Tensor], *,
                         ignore_mismatched_sizes: bool = False) -> dict[str, list[str]]:
    """Copy ``state`` into ``model`` (see the module docstring). Returns {"initialized", "ignored",
    "mismatched"}; "mismatched" holds "key: checkpoint (shape) vs model (shape)" strings for the head weights
    left fresh under ``ignore_mismatched_sizes`` (empty otherwise)."""
    state = normalize_keys(state)
    model_state = model.state_dict()
    aliases = tied_aliases(model)                   # e.g. cls.predictions.decoder.weight -> bert.embeddings...
    expected = [k for k in model_state if k not in aliases]
    has_base = any(k.startswith(BASE_PREFIX) for k in expected)
    ckpt_has_prefix = any(k.startswith(BASE_PREFIX) for k in state)

    # 3. the "bert." prefix
    if has_base and not ckpt_has_prefix:
        state = {(BASE_PREFIX + k if k.startswith(BASE_PREFIXES) else k): v for k, v in state.items()}
    elif not has_base and ckpt_has_prefix:
        state = {(k[len(BASE_PREFIX):] if k.startswith(BASE_PREFIX) else k): v for k, v in state.items()}

    # 4. tied weights: keep the canonical spelling, accept an alias when the canonical key is absent; an
    #    alias whose values differ from the canonical tensor cannot be honoured and is reported.
    conflicting = []
    for alias, canonical in aliases.items():
        if alias in state:
            tensor = state.pop(alias)
            if canonical not in state:
                state[canonical] = tensor
            elif tensor.shape != state[canonical].shape or not torch.equal(tensor, state[canonical]):
                conflicting.append(alias)

    expected_set = set(expected)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected_set]
    wrong_keys = [k for k in expected if k in state and tuple(state[k].shape) != tuple(model_state[k].shape)]
    describe = lambda k: f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(model_state[k].shape)}"  # noqa: E731
    mismatched = []
    if ignore_mismatched_sizes:     # head weights of another shape start fresh; the encoder's must fit
        mismatched = [describe(k) for k in wrong_keys if not _is_encoder_key(k)]
        for k in wrong_keys:
            if not _is_encoder_key(k):
                del state[k]
                missing.append(k)       # left at its (fresh) initialisation
        wrong_keys = [k for k in wrong_keys if _is_encoder_key(k)]
    wrong_shape = [describe(k) for k in wrong_keys]
    missing_encoder = [k for k in missing if _is_encoder_key(k)]
    unexpected_encoder = [k for k in unexpected if _is_encoder_key(k)]
    problems = []
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} weight(s) with the wrong shape: " + "; ".join(wrong_shape)
                        + ("" if ignore_mismatched_sizes or any(_is_encoder_key(k) for k in wrong_keys) else
                           " (pass ignore_mismatched_sizes=True to start these head weights fresh)"))
    if missing_encoder:
        problems.append(f"{len(missing_encoder)} encoder weight(s) missing from the checkpoint: "
                        + ", ".join(missing_encoder))
    if unexpected_encoder:
        problems.append(f"{len(unexpected_encoder)} encoder weight(s) the model has no place for "
                        "(does config.json match the weights?): " + ", ".join(unexpected_encoder))
    if problems:
        raise CheckpointError(f"cannot load checkpoint into {type(model).__name__}: " + " | ".join(problems))

    with torch.no_grad():
        for key in expected:
            if key in state:
                model_state[key].copy_(state[key])   # state_dict tensors share storage with the parameters
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    if conflicting:
        logger.warning("%s: %s differ(s) from the weight it is tied to and was not loaded; set "
                       "tie_word_embeddings=false in config.json to load an untied decoder",
                       type(model).__name__, ", ".join(conflicting))
    info = {"initialized": missing, "ignored": unexpected + conflicting, "mismatched": mismatched}
    if mismatched:
        logger.warning("%s: head weights whose shape differs from the checkpoint's start fresh "
                       "(ignore_mismatched_sizes=True): %s", type(model).__name__, "; ".join(mismatched))
    if missing:
        logger.warning("%s: weights not in the checkpoint, left at their initialisation (train them "
                       "before use): %s", type(model).__name__, ", ".join(missing))
    if unexpected:
        logger.info("%s: checkpoint weights not used by this model (ignored): %s",
                    type(model).__name__, ", ".join(unexpected))
    return info


def load_pretrained(cls, directory: str | os.PathLike, *, dtype: torch.dtype | None = None,
                    output_loading_info: bool = False, ignore_mismatched_sizes: bool = False,
                    **config_overrides: Any):
    """``cls.from_pretrained``: config from ``directory/config.json`` (plus overrides), then the weights.
    ``ignore_mismatched_sizes``: head weights whose shape differs start fresh (see the module docstring)."""
    directory = Path(directory)
    weights = find_weights_file(directory)
    config = BertConfig.from_pretrained(directory, **config_overrides)
    state = read_state_dict(weights)
    # Don't spend time drawing truncated-normal weights the checkpoint overwrites: build the model with
    # PyTorch's cheap default initialisation, load, then initialise (Google's way) only what was missing.
    from .model import skip_init
    with skip_init():
        model = cls(config)
    try:
        info = load_state_dict_into(model, state, ignore_mismatched_sizes=ignore_mismatched_sizes)
    except CheckpointError as exc:
        raise CheckpointError(f"{weights} (with {directory / 'config.json'}): {exc}") from None
    model.init_parameters(info["initialized"])
    if dtype is not None:
        model = model.to(dtype)
    model.loading_info = info
    model.eval()   # as Hugging Face: a loaded model starts in eval mode (dropout off)
    return (model, info) if output_loading_info else model


# ======================================================================================= writing
def save_pretrained(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``, each atomically.

    Tied aliases (``cls.predictions.decoder.weight``/``.bias``) are not written, as Hugging Face does;
    transformers re-ties them on load. An untied decoder (``config.tie_word_embeddings=False``) is not an
    alias and is written, and config.json says ``"tie_word_embeddings": false``.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    aliases = tied_aliases(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in aliases}
    with atomic_path(directory / SAFETENSORS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    values = model.config.to_dict()
    values["architectures"] = [type(model).__name__]
    atomic_write_text(directory / "config.json", json.dumps(values, indent=2, sort_keys=True) + "\n")
