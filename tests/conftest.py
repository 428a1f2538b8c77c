"""Shared test set-up: the local data mirror and offline mode, as the Makefile sets them."""
import os
from pathlib import Path

_mirror = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not os.environ.get("MINIBERT_DATA") and _mirror.is_dir():
    os.environ["MINIBERT_DATA"] = str(_mirror)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
