"""Atomic file writes: write a temp file beside the target, then rename it into place.

A crash or Ctrl-C mid-write leaves the old file (or none), never a half-written one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *,
                 mode: int = 0o644, sync: bool = False) -> None:
    """Call ``write(f)`` on a temp file in the target's folder, then rename it to ``path``.

    ``mode``: the file's permissions; ``sync``: flush it to disk before the rename (user documents).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}-", suffix=p.suffix, dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """``np.savez`` atomically."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """``np.save`` (no pickles) atomically."""
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))
