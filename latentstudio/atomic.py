"""Atomic file writes: write a temp file beside the target, then rename it into place.

A crash or Ctrl-C mid-write leaves the old file (or none), never a half-written one. Only regular
files are replaced: a device, FIFO or folder at the target is refused (a symlink is written
through to the file it names). Inside ``with output_set():`` the renames wait until the block ends
without an error, so a command's outputs (an image and its code) appear together or not at all.
"""

from __future__ import annotations

import contextvars
import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_pending: contextvars.ContextVar[list[tuple[str, Path]] | None] = contextvars.ContextVar("pending", default=None)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *,
                 mode: int = 0o644, sync: bool = False) -> None:
    """Call ``write(f)`` on a temp file in the target's folder, then rename it to ``path``.

    ``mode``: the file's permissions; ``sync``: flush it to disk before the rename (user documents).
    Raises IsADirectoryError / OSError when ``path`` exists and is not a regular file.
    """
    p = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file; refusing to replace it", str(p))
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}-", suffix=p.suffix, dir=p.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(p)) from exc  # the target's name, not the temp's
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        pending = _pending.get()
        if pending is None:
            os.replace(tmp, p)
        else:
            pending.append((tmp, p))
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(p)) from exc  # e.g. a full disk: say which output
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def output_set() -> Iterator[None]:
    """Defer the renames of every ``atomic_write`` in the block to its end: all outputs appear
    when the block succeeds; when it raises, every temp file is removed and no output appears."""
    pending: list[tuple[str, Path]] = []
    token = _pending.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _pending.reset(token)
    try:
        while pending:
            tmp, target = pending[0]
            os.replace(tmp, target)
            pending.pop(0)
    finally:
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)


def save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """``np.savez`` atomically."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def save_module(path: str | os.PathLike[str], module: Any, metadata: dict[str, str]) -> None:
    """A torch module's ``state_dict`` as safetensors with ``metadata``, atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    blob = save(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(blob))


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """``np.save`` (no pickles) atomically."""
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))
