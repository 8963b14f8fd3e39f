"""Boundaries (unit directions in W, 512-d) and the ``index.json`` that describes a folder of them.

A boundary folder holds one ``<name>.npy`` (512,) float32 per boundary and ``index.json``::

    {"format": "latentstudio-boundaries", "version": 1,
     "boundaries": [{"name": "smile", "file": "smile.npy", "label": "Smile",
                     "sign": "+ = more smiling", "space": "w", "range": [-3, 3],
                     "layers": [0, 22], "val_accuracy": 0.98, "n": 5000,
                     "predictor": "smile", "command": "latentstudio boundaries train …",
                     "source": "trained", "details": {...}}, ...]}

``layers`` is the default inclusive W+ slot range (0 … 22) an edit along the boundary touches.
Two folders are searched: the shipped set (``boundaries/`` in the repository) and the user's
folder (``$LATENTSTUDIO_HOME/boundaries``, where imports and user-trained boundaries go); a user
boundary with a shipped boundary's name replaces it.

Published boundaries can be imported from ``.npy`` ((512,), (1,512), or (1,K,512) with identical
rows) or ``.pt`` tensors (loaded with ``weights_only=True``), in W or Z space. A Z boundary n_z is
turned into a W boundary by labelling sampled z with n_z·z and fitting the SVM in W on the
mapped codes (:func:`z_to_w`). Every problem with a file raises :class:`BoundaryError`.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from latentstudio.atomic import atomic_write
from latentstudio.safety import MAX_ARRAY_BYTES, InputError, first_line, load_npy, loads_json

from latentstudio.latent import NUM_SLOTS, W_DIM
INDEX = "index.json"
FORMAT = "latentstudio-boundaries"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "boundaries"


class BoundaryError(InputError):
    """A boundary file, index entry or request is unusable; the message says what and where."""


@dataclass(frozen=True)
class Boundary:
    """One editing direction: a unit normal in W (512,) float32 plus what the UI needs."""

    name: str
    normal: np.ndarray
    label: str = ""
    sign: str = ""  # what moving in + does, e.g. "+ = older"
    space: str = "w"
    range: tuple[float, float] = (-3.0, 3.0)  # recommended slider range (α)
    layers: tuple[int, int] = (0, NUM_SLOTS - 1)  # default inclusive W+ slot range
    val_accuracy: float | None = None
    n: int | None = None  # samples the boundary was trained on
    predictor: str | None = None
    command: str | None = None
    source: str = "trained"  # trained | imported | user
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.name)
        object.__setattr__(self, "normal", unit_vector(self.normal, self.name))
        lo, hi = (float(v) for v in self.range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise BoundaryError(f"{self.name}: range must be two finite numbers lo < hi, got {self.range}")
        object.__setattr__(self, "range", (lo, hi))
        object.__setattr__(self, "layers", check_layers(self.layers, self.name))
        if self.space != "w":
            raise BoundaryError(f"{self.name}: stored boundaries live in W space, got {self.space!r}")

    def entry(self, file: str) -> dict[str, Any]:
        """The index.json entry (everything but the vector)."""
        return {"name": self.name, "file": file, "label": self.label or self.name,
                "sign": self.sign, "space": self.space, "range": list(self.range),
                "layers": list(self.layers),
                "val_accuracy": _json_float(self.val_accuracy), "n": self.n,
                "predictor": self.predictor, "command": self.command, "source": self.source,
                "details": self.details}


def _json_float(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 4)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BoundaryError(f"bad boundary name {name!r}: use 1-40 lowercase letters, digits or _, "
                            "starting with a letter")
    return name


def check_layers(layers: Iterable[int], what: str = "layers") -> tuple[int, int]:
    """(a, b) with 0 ≤ a ≤ b ≤ 22, inclusive W+ slot range."""
    try:
        a, b = (int(v) for v in layers)
    except (TypeError, ValueError) as exc:
        raise BoundaryError(f"{what}: layer range must be two slot numbers, got {layers!r}") from exc
    if not 0 <= a <= b <= NUM_SLOTS - 1:
        raise BoundaryError(f"{what}: layer range must satisfy 0 <= A <= B <= {NUM_SLOTS - 1}, got {a}-{b}")
    return a, b


def parse_layers(text: str) -> tuple[int, int]:
    """"A-B" (inclusive) or "A" → (A, B)."""
    parts = text.strip().split("-")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise BoundaryError(f"bad layer range {text!r}: expected A-B with slot numbers 0-{NUM_SLOTS - 1}")
    a, b = int(parts[0]), int(parts[-1])
    return check_layers((a, b), f"layer range {text!r}")


def unit_vector(vec: Any, what: str = "boundary") -> np.ndarray:
    """Any array-like holding 512 numbers as (512,), (1,512) or (1,K,512) with identical rows → unit (512,) float32."""
    a = np.asarray(vec)
    if a.dtype.kind not in "fiu":
        raise BoundaryError(f"{what}: boundary must be numeric, got dtype {a.dtype}")
    if a.dtype.kind == "b" or a.size > 64 * W_DIM:
        raise BoundaryError(f"{what}: boundary must be (512,) numbers, got {a.dtype} {a.shape}")
    a = a.astype(np.float64)
    if a.ndim >= 2 and a.shape[-1] == W_DIM:
        rows = a.reshape(-1, W_DIM)
        if len(rows) > 1 and not np.allclose(rows, rows[:1], atol=1e-6):
            raise BoundaryError(f"{what}: per-layer boundary {a.shape} has different rows; "
                                "only one direction shared by all layers is supported")
        a = rows[0]
    if a.shape != (W_DIM,):
        raise BoundaryError(f"{what}: boundary must have shape (512,) or (1,512), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise BoundaryError(f"{what}: boundary contains NaN or infinite values")
    top = float(np.abs(a).max())
    if top == 0.0:
        raise BoundaryError(f"{what}: boundary is the zero vector")
    a = a / top  # scaled first, so huge or tiny (but finite) vectors keep their direction
    return (a / np.linalg.norm(a)).astype(np.float32)


# ------------------------------------------------------------------------------------ files
def read_vector(path: str | Path) -> np.ndarray:
    """Read a published boundary file (.npy or .pt) → unit (512,) float32; BoundaryError otherwise."""
    p = Path(path)
    if not p.is_file():
        raise BoundaryError(f"{p}: no such boundary file")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        arr = load_npy(p, BoundaryError)
    elif suffix in (".pt", ".pth"):
        arr = _read_torch(p)
    else:
        raise BoundaryError(f"{p}: boundary files are .npy or .pt, not {suffix or 'extensionless'}")
    return unit_vector(arr, str(p))


def _read_torch(p: Path) -> np.ndarray:
    import warnings

    import torch

    if not zipfile.is_zipfile(p):
        raise BoundaryError(f"{p}: not a readable torch tensor file (expected the zip format of torch 1.6 or later; save it again, or as .npy)")
    try:
        with zipfile.ZipFile(p) as z:
            declared = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BoundaryError(f"{p}: not a readable torch tensor file ({first_line(exc)})") from exc
    if declared > MAX_ARRAY_BYTES:
        raise BoundaryError(f"{p}: too large for a boundary ({declared >> 20} MiB declared)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt file can fail anywhere inside the unpickler
        why = "it holds more than plain tensors" if "weights_only" in str(exc) else first_line(exc)
        raise BoundaryError(f"{p}: not a readable torch tensor file ({why})") from exc
    if isinstance(obj, dict):
        tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
        if len(tensors) != 1:
            raise BoundaryError(f"{p}: expected one tensor, found a dict with keys {list(obj)[:8]}")
        obj = tensors[0]
    if not isinstance(obj, torch.Tensor):
        raise BoundaryError(f"{p}: expected a tensor, found {type(obj).__name__}")
    return obj.detach().float().cpu().numpy()


def load_index(folder: str | Path) -> dict[str, Boundary]:
    """All boundaries of a folder (empty dict when it has no index.json); validates every entry."""
    folder = Path(folder)
    index = folder / INDEX
    if not index.is_file():
        return {}
    try:
        data = index.read_bytes()
    except OSError as exc:
        raise BoundaryError(f"{index}: cannot read ({exc.strerror or exc})") from exc
    doc = loads_json(data, str(index), BoundaryError)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("boundaries"), list):
        raise BoundaryError(f"{index}: not a boundary index (expected format {FORMAT!r} and a 'boundaries' list)")
    out: dict[str, Boundary] = {}
    for i, entry in enumerate(doc["boundaries"]):
        b = _from_entry(folder, entry, f"{index} entry {i}")
        if b.name in out:
            raise BoundaryError(f"{index}: boundary {b.name!r} listed twice")
        out[b.name] = b
    return out


def _from_entry(folder: Path, entry: Any, where: str) -> Boundary:
    if not isinstance(entry, dict):
        raise BoundaryError(f"{where}: expected an object, got {type(entry).__name__}")
    for key in ("name", "file"):
        if not isinstance(entry.get(key), str):
            raise BoundaryError(f"{where}: missing or non-text {key!r}")
    file = Path(entry["file"])
    if file.is_absolute() or ".." in file.parts:
        raise BoundaryError(f"{where}: file must be a name inside the folder, got {entry['file']!r}")
    path = folder / file
    if path.suffix != ".npy":
        raise BoundaryError(f"{where}: stored boundaries are .npy files, got {entry['file']!r}")
    vec = read_vector(path)
    acc = entry.get("val_accuracy")
    n = entry.get("n")
    if acc is not None and not isinstance(acc, (int, float)):
        raise BoundaryError(f"{where}: val_accuracy must be a number or null")
    if n is not None and (not isinstance(n, int) or n < 0):
        raise BoundaryError(f"{where}: n must be a non-negative integer or null")
    details = entry.get("details") or {}
    if not isinstance(details, dict):
        raise BoundaryError(f"{where}: details must be an object")
    try:
        return Boundary(
            name=entry["name"], normal=vec, label=str(entry.get("label") or entry["name"]),
            sign=str(entry.get("sign") or ""), space=str(entry.get("space", "w")),
            range=tuple(entry.get("range", (-3.0, 3.0))), layers=tuple(entry.get("layers", (0, NUM_SLOTS - 1))),
            val_accuracy=None if acc is None else float(acc), n=n,
            predictor=entry.get("predictor"), command=entry.get("command"),
            source=str(entry.get("source", "trained")), details=details)
    except BoundaryError as exc:
        raise BoundaryError(f"{where}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise BoundaryError(f"{where}: {exc}") from exc


def save_index(folder: str | Path, boundaries: Iterable[Boundary], *, merge: bool = True) -> None:
    """Write each boundary's ``<name>.npy`` and the folder's index.json (atomically).

    With ``merge`` the existing entries of the folder are kept unless a new boundary has the
    same name; the entries are sorted by name.
    """
    folder = Path(folder)
    current = load_index(folder) if merge else {}
    for b in boundaries:
        current[b.name] = b
    for b in current.values():
        atomic_write(folder / f"{b.name}.npy", lambda f, v=b.normal: np.save(f, v, allow_pickle=False))
    doc = {"format": FORMAT, "version": 1,
           "boundaries": [current[k].entry(f"{k}.npy") for k in sorted(current)]}
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    atomic_write(folder / INDEX, lambda f: f.write(text.encode("utf-8")))


def user_dir() -> Path:
    from latentstudio import paths

    return paths.home() / "boundaries"


def load_all(folders: Iterable[Path] | None = None) -> dict[str, Boundary]:
    """Shipped boundaries, then the user's (same name: the user's wins)."""
    out: dict[str, Boundary] = {}
    for folder in folders if folders is not None else (SHIPPED_DIR, user_dir()):
        out.update(load_index(folder))
    return out


def with_defaults(b: Boundary, **changes: Any) -> Boundary:
    """A copy of ``b`` with some fields changed (validated again)."""
    return replace(b, **changes)
