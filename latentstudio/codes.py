"""Latent code files: ``.npy`` (512,) / (23,512), or ``.npz`` with ``w_plus`` (23,512) and extras.

Loading never unpickles and is bounded: every array is checked by its header (plain numbers,
declared size) before it is read, codes for shape, finite values and range
(``latentstudio.safety``); saving is atomic (temp file, then rename).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from latentstudio.atomic import save_npz
from latentstudio.latent import W_PLUS, as_code
from latentstudio.safety import InputError, check_finite, load_npy, load_npz

CODE_SUFFIXES = (".npy", ".npz")
TUNED_PREFIX = "tuned/"  # code-file (and project) arrays holding pivotal-tuning weight deltas


class LatentError(InputError):
    """A latent code has the wrong shape or non-finite values (or its file cannot be read)."""

    title = "Cannot read the latent code"  # the heading of its error dialog


def tuned_arrays(deltas: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weight deltas (synthesis parameter name → array) as ``tuned/<name>`` arrays."""
    return {TUNED_PREFIX + k: v for k, v in deltas.items()}


def tuned_deltas(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``tuned/<name>`` arrays of a code file or project as name → delta ({} when untuned)."""
    return {k[len(TUNED_PREFIX):]: v for k, v in arrays.items() if k.startswith(TUNED_PREFIX)}


# extras a code file may carry: name → (dtype kinds, shape or None for any); others are skipped
EXTRAS: dict[str, tuple[str, tuple[int, ...] | None]] = {
    "photo": ("U", ()), "quad": ("f", (4, 2)), "landmarks": ("f", (68, 2)),
    "source_size": ("iu", (2,)), "face_index": ("iu", ()), "loss_names": ("U", None),
    "loss_values": ("f", None), "steps": ("iu", ()),
    # an identity result's attribute face (edits included): the hair and background it is shown in
    "surroundings": ("f", (23, 512)),
}


def load_code(path: str | Path) -> np.ndarray:
    """Read a latent code file and return W+ (23,512) float32; LatentError on anything else."""
    p = Path(path)
    if p.suffix.lower() == ".npz":
        arrays = _read(p, lambda name: name == "w_plus")
        if "w_plus" not in arrays:
            names = ", ".join(_member_names(p)) or "nothing"
            raise LatentError(f"{p}: .npz has no 'w_plus' array (found: {names})")
        arr = arrays["w_plus"]
    else:
        arr = _read(p)[""]
    return check_code(arr, str(p))


def check_code(arr: np.ndarray, what: str) -> np.ndarray:
    """W+ (23,512) float32 from a (512,), (23,512) or (1,23,512) floating-point array whose values
    are finite and within ±MAX_LATENT_ABS; LatentError naming ``what`` otherwise."""
    checked = check_finite(arr, f"{what}: latent code", LatentError)  # floats, finite, within ±MAX_LATENT_ABS
    return as_code(checked, f"{what}: latent code", LatentError)


def load_code_extras(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz code file (alignment quad, source size, losses, tuned weights …),
    each checked for type, shape and finite values; {} for .npy. Unknown arrays are skipped."""
    p = Path(path)
    if p.suffix.lower() != ".npz":
        return {}
    arrays = _read(p, lambda name: name == "w_plus" or name in EXTRAS or name.startswith(TUNED_PREFIX))
    for name, arr in arrays.items():
        kinds, shape = EXTRAS.get(name, ("f", None))
        if name == "w_plus":
            continue
        if arr.dtype.kind not in kinds or shape is not None and arr.shape != shape:
            raise LatentError(f"{p}: array {name!r} should be {'text' if kinds == 'U' else 'numbers'} "
                              f"of shape {shape}, got {arr.dtype.name} {arr.shape}")
        if kinds == "f":
            check_finite(arr, f"{p}: array {name!r}", LatentError, limit=1e6)
    if "source_size" in arrays and not (0 < arrays["source_size"]).all():
        raise LatentError(f"{p}: array 'source_size' must be two positive numbers")
    return arrays


def _read(p: Path, wanted: Callable[[str], bool] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an .npz (``wanted`` ones) or the one array of an .npy (key ""), bounded."""
    _check_format(p)
    if p.suffix.lower() == ".npz":
        return load_npz(p, str(p), LatentError, wanted)
    return {"": load_npy(p, LatentError)}


def _member_names(p: Path) -> list[str]:
    with zipfile.ZipFile(p) as z:
        return [n[:-4] for n in z.namelist() if n.endswith(".npy")][:8]


def _check_format(p: Path) -> None:
    """LatentError unless ``p`` is a readable file that starts like its kind of file (numpy would
    call any other file a pickle, which misleads)."""
    suffix = p.suffix.lower()
    if suffix not in CODE_SUFFIXES:
        raise LatentError(f"{p}: code files are .npy or .npz, not {suffix or 'extensionless'}")
    if not p.exists():
        raise LatentError(f"{p}: no such code file")
    if not p.is_file():
        raise LatentError(f"{p}: not a regular file")
    try:
        with open(p, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise LatentError(f"{p}: cannot read the code file ({exc.strerror or exc})") from exc
    if suffix == ".npz" and not head.startswith(b"PK"):
        raise LatentError(f"{p}: not an .npz archive (damaged, or another kind of file)")
    if suffix == ".npy" and head != b"\x93NUMPY":
        raise LatentError(f"{p}: not a .npy array file (damaged, or another kind of file)")


def save_code(path: str | Path, w_plus: np.ndarray, **extras: Any) -> None:
    """Write ``w_plus`` (23,512) and extra arrays to an .npz atomically."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():  # as for images: a mistyped folder is an error, not created
        raise LatentError(f"{p}: folder {folder} does not exist")
    arrays = {"w_plus": np.asarray(w_plus, dtype=np.float32).reshape(W_PLUS)}
    arrays.update({k: np.asarray(v) for k, v in extras.items() if v is not None})
    save_npz(p, **arrays)
