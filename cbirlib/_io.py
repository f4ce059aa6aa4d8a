"""Private helpers: atomic file writes and checksums.

Every file the compendium writes goes through :func:`atomic_write`, so a killed
run never leaves a half-written table, split file or cache entry behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_write", "atomic_write_text", "sha256_file", "sha256_bytes", "save_trained",
           "load_trained"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = "\n") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, **({} if binary else {"encoding": encoding, "newline": newline})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_write(path) as fh:
        fh.write(text)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def save_trained(folder: str | os.PathLike, state: dict, history, meta: dict, *,
                 weights: str = "model.pt") -> None:
    """Write a trained network's cache entry (notebooks 02, 03, 05, 06).

    ``folder/<weights>`` (``torch.save`` of ``state``), ``history.csv`` (a
    DataFrame) and, last, ``meta.json``: its presence marks the entry complete,
    so an interrupted write is never read back as a cache hit.
    """
    import json

    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / weights, mode="wb") as fh:
        torch.save(state, fh)
    with atomic_write(folder / "history.csv") as fh:
        history.to_csv(fh, index=False, lineterminator="\n")
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2, default=str))


def load_trained(folder: str | os.PathLike, *, weights: str = "model.pt"):
    """Read an entry written by :func:`save_trained`: ``(state, history, meta)`` or ``None``.

    Weights are loaded with ``weights_only=True`` onto the CPU.
    """
    import json

    import pandas as pd
    import torch

    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        return None
    state = torch.load(folder / weights, map_location="cpu", weights_only=True)
    return state, pd.read_csv(folder / "history.csv"), json.loads((folder / "meta.json").read_text())
