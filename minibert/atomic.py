"""Atomic file writes: a crash or an exception leaves either the old file or the new one, never half of one.

Every file minibert writes that a user would hate to lose (config.json, model.safetensors, training
checkpoints) goes through :func:`atomic_path`: the writer fills a temporary file in the same folder,
which is flushed to disk and then renamed over the target with ``os.replace`` (atomic on POSIX and Windows).
"""
from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, it replaces ``path``.

    >>> with atomic_path("out/config.json") as tmp:
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes 0600 files, and a writer may have replaced the temporary file by its own (safetensors
        # does): give whatever is there now the usual permissions, 0666 less the umask, as open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:      # flush the new bytes to disk before the rename
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_stale_temporaries(directory: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files that :func:`atomic_path` left beside ``names`` in ``directory``.

    A process killed while writing (SIGKILL, power loss) leaves its ``.NAME.XXXXXXXX.tmp`` behind; the
    target file itself is intact. Call this only while no other process writes into ``directory`` (a run
    holds its folder's lock). Returns the paths removed.
    """
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for name in names:
        for tmp in directory.glob(f".{glob.escape(name)}.*.tmp"):
            if tmp.is_file():
                tmp.unlink()
                removed.append(tmp)
    return removed
