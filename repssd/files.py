"""Writing files whole or not at all: the one atomic writer every command that writes weights,
checkpoints or result records uses.

A file is written to a fresh temporary name beside its destination, flushed to disk, then renamed
over it: a reader, a crash or a full disk never leaves a half-written file in its place, and the
previous file stays as it was until the new one is complete.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_path", "save_atomic", "write_atomic"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends without an error it is
    synced and renamed to ``path``, when it fails it is removed (``path`` unchanged)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        with temporary.open("rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # only there when writing failed


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        torch.save(obj, file)  # through the handle: the archive's records are named "archive/", not after the temporary
    return Path(path)


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """``data`` (text is written as UTF-8) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)
