"""Latent code files: ``.npy`` (512,) / (23,512), or ``.npz`` with ``w_plus`` (23,512) and extras.

Loading never unpickles (``allow_pickle=False``); saving is atomic (temp file, then rename).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from latentstudio.atomic import save_npz

CODE_SUFFIXES = (".npy", ".npz")
TUNED_PREFIX = "tuned/"  # code-file (and project) arrays holding pivotal-tuning weight deltas


class LatentError(ValueError):
    """A latent code has the wrong shape or non-finite values (or its file cannot be read)."""


def photo_arrays(photo: str | Path, quad: np.ndarray, landmarks: np.ndarray,
                 source_size: tuple[int, int], face_index: int) -> dict[str, np.ndarray]:
    """The code-file arrays that tie a code to its photo (for paste-back and reopening)."""
    return {"photo": np.array(str(Path(photo).resolve())), "quad": np.asarray(quad, np.float64),
            "landmarks": np.asarray(landmarks, np.float32), "source_size": np.array(source_size),
            "face_index": np.array(face_index)}


def tuned_arrays(deltas: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weight deltas (synthesis parameter name → array) as ``tuned/<name>`` arrays."""
    return {TUNED_PREFIX + k: v for k, v in deltas.items()}


def tuned_deltas(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``tuned/<name>`` arrays of a code file or project as name → delta ({} when untuned)."""
    return {k[len(TUNED_PREFIX):]: v for k, v in arrays.items() if k.startswith(TUNED_PREFIX)}


def load_code(path: str | Path) -> np.ndarray:
    """Read a latent code file and return W+ (23,512) float32; LatentError on anything else."""
    from latentstudio.models.generator import as_w_plus  # here: this module stays torch-free

    p = Path(path)
    if not p.is_file():
        raise LatentError(f"{p}: no such code file")
    _check_format(p)
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as data:
                if "w_plus" not in data.files:
                    raise LatentError(f"{p}: .npz has no 'w_plus' array (found: {', '.join(data.files) or 'nothing'})")
                arr = data["w_plus"]
        elif p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            raise LatentError(f"{p}: code files are .npy or .npz, not {p.suffix or 'extensionless'}")
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise LatentError(f"{p}: not a readable latent code ({exc})") from exc
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape not in ((512,), (23, 512)):
        raise LatentError(f"{p}: latent code must have shape (512,) or (23,512), got {arr.shape}")
    try:
        return as_w_plus(arr.astype(np.float32))[0].numpy()
    except LatentError as exc:
        raise LatentError(f"{p}: {exc}") from exc


def load_code_extras(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz code file (alignment quad, source size, losses …); {} for .npy."""
    p = Path(path)
    if p.suffix != ".npz":
        return {}
    _check_format(p)
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise LatentError(f"{p}: not a readable code file ({exc})") from exc


def _check_format(p: Path) -> None:
    """LatentError unless ``p`` starts like its kind of file (numpy would call any other file a
    pickle, which misleads)."""
    try:
        with open(p, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise LatentError(f"{p}: cannot read the code file ({exc})") from exc
    if p.suffix == ".npz" and not head.startswith(b"PK"):
        raise LatentError(f"{p}: not an .npz archive (damaged, or another kind of file)")
    if p.suffix == ".npy" and head != b"\x93NUMPY":
        raise LatentError(f"{p}: not a .npy array file (damaged, or another kind of file)")


def save_code(path: str | Path, w_plus: np.ndarray, **extras: Any) -> None:
    """Write ``w_plus`` (23,512) and extra arrays to an .npz atomically."""
    p = Path(path)
    arrays = {"w_plus": np.asarray(w_plus, dtype=np.float32).reshape(23, 512)}
    arrays.update({k: np.asarray(v) for k, v in extras.items() if v is not None})
    save_npz(p, **arrays)
