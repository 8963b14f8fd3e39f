"""Project files (``.lsproj``) and crash recovery for ``latentstudio.document.Document``.

A project is a zip of ``project.json`` (versioned schema: source, directions, edit state) and
``arrays.npz`` (base code, alignment, imported directions, the edited code as a check, the
second face, the repair direction, tuned generator weights), written atomically. ``Autosave``
keeps one file per running app; ``recoverable`` lists those left by an app that did not exit.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from latentstudio import __version__
from latentstudio.atomic import atomic_write
from latentstudio.codes import tuned_arrays, tuned_deltas
from latentstudio.document import (
    NUM_SLOTS,
    ROLES,
    W_DIM,
    Direction,
    Document,
    DocumentError,
    EditState,
    IdentityRefinement,
    IdentityState,
    OtherFace,
    RepairOffset,
    Source,
    _check_layers,
    make_direction,
)
from latentstudio.face.placement import Placement, PlacementError
from latentstudio.models.fetch import sha256_of
from latentstudio.runtime import Runtime
from latentstudio.safety import (
    MAX_ARRAYS_BYTES,
    MAX_JSON_BYTES,
    MAX_LATENT_ABS,
    InputError,
    check_amount,
    check_finite,
    first_line,
    load_npz,
    loads_json,
)

SCHEMA = "latentstudio-project"
VERSION = 2  # the newest schema this version reads; 2 adds tuned generator weights
PROJECT_SUFFIX = ".lsproj"


class ProjectError(InputError):
    """A project file that cannot be read (damaged, foreign, newer schema)."""

    title = "Cannot open the project"  # the heading of its error dialog


# ----------------------------------------------------------------------------- saving
def save_project(doc: Document, path: str | Path, code: np.ndarray | None = None,
                 state: EditState | None = None) -> None:
    """Write ``doc`` as a ``.lsproj`` zip (project.json + arrays.npz), atomically.

    ``state``: the edits to save (default ``doc.state``; a save on another thread passes the
    state it was asked for, so the code and the edits it writes always belong together).
    ``code`` is the already computed edited code of that state (saves running the models)."""
    p = Path(path)
    src, st = doc.source, (doc.state if state is None else state)
    arrays: dict[str, np.ndarray] = {"base": doc.base}
    if src.placement is not None:
        arrays["quad"] = src.placement.quad
        arrays["landmarks"] = src.placement.landmarks.astype(np.float32)
    used = set(st.values) | set(st.keep) | set(st.layers)
    extra = [d for d in doc.directions.values() if d.source in ("user", "pca") or d.name in used]
    for i, d in enumerate(extra):
        arrays[f"dir{i}"] = np.asarray(d.normal, np.float32)
    # the edited code, for other tools and as a check on load
    arrays["code"] = np.asarray(doc.code(st) if code is None else code, np.float32)
    ident = st.identity
    if ident.other is not None:
        arrays["other"] = np.asarray(ident.other.code, np.float32)
    if ident.refined is not None:
        arrays["identity_refined"] = ident.refined.offset
    if st.repair is not None:
        arrays["repair_direction"] = st.repair.direction
    arrays.update(tuned_arrays(doc.tuning))
    meta = {
        # version 1 readers would drop tuned weights without a word: such projects are version 2
        "schema": SCHEMA, "version": 2 if doc.tuning else 1, "app": f"LatentStudio {__version__}",
        "source": {"kind": src.kind, "face_index": src.placement.face_index if src.placement else 0,
                   "sha256": src.sha256, "seed": src.seed, "psi": src.psi,
                   "photo_size": list(src.placement.size) if src.placement else None,
                   "path": str(src.path) if src.path else None,
                   "relpath": _relpath(src.path, p.parent) if src.path else None},
        "directions": [{"name": d.name, "label": d.label, "kind": d.source, "range": list(d.range),
                        "layers": list(d.layers), "array": f"dir{i}"} for i, d in enumerate(extra)],
        "state": {"values": dict(st.values), "keep": sorted(st.keep),
                  "layers": {k: list(v) for k, v in st.layers.items()},
                  "identity": {"role": ident.role, "id_alpha": ident.id_alpha,
                               "attr_alpha": ident.attr_alpha,
                               "deid_strength": ident.deid_strength, "deid_seed": ident.deid_seed,
                               "surroundings": ident.surroundings,
                               "other": None if ident.other is None else
                               {"label": ident.other.label, "origin": ident.other.origin},
                               "refined": None if ident.refined is None else
                               {"steps": ident.refined.steps, "array": "identity_refined"}},
                  "repair": None if st.repair is None else
                  {"alpha": st.repair.alpha, "score_before": _json_float(st.repair.score_before),
                   "score_after": _json_float(st.repair.score_after), "array": "repair_direction"}},
    }
    _atomic_zip(p, {"project.json": json.dumps(meta, indent=1).encode(), "arrays.npz": _npz(arrays)})


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _relpath(target: Path, start: Path) -> str | None:
    try:
        return os.path.relpath(target, start.resolve())
    except ValueError:  # other drive on Windows
        return None


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _atomic_zip(path: Path, members: dict[str, bytes]) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DocumentError(f"{path}: folder {folder} does not exist")

    def write(f) -> None:  # noqa: ANN001 - binary file object
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members.items():
                z.writestr(name, data)

    try:
        atomic_write(path, write, sync=True)
    except OSError as exc:
        raise DocumentError(f"{path}: could not save ({exc})") from exc


def load_project(path: str | Path, directions: Iterable[Direction] = (), runtime: Runtime | None = None) -> Document:
    """Read a ``.lsproj``; ProjectError with the cause if it is damaged or not a project.

    ``directions`` are the installed boundaries; the project adds its own imported ones.
    ``runtime`` (the models) lets the check of the saved edited face include the identity stage.
    A missing source photo is not fatal: the document opens without paste-back, with a warning.
    """
    p = Path(path)
    meta, arrays = _read_members(p)
    try:
        return _build(p, meta, arrays, list(directions), runtime)
    except ProjectError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        raise ProjectError(f"{p}: damaged project file ({type(exc).__name__}: {first_line(exc)})") from exc


ARRAY_NAME = re.compile(r"^(base|quad|landmarks|code|other|identity_refined|repair_direction|dir\d{1,4}|tuned/.+)$")
MAX_AMOUNT = 100.0  # identity blend amounts and repair strengths (the sliders go to ±2 or so)


def _read_members(p: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """project.json and the known arrays of arrays.npz, each bounded by its declared size before
    it is read (unknown arrays are skipped unread)."""
    if not p.is_file():
        raise ProjectError(f"{p}: no such project file")
    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
            missing = {"project.json", "arrays.npz"} - names
            if missing:
                raise ProjectError(f"{p}: not a LatentStudio project (missing {', '.join(sorted(missing))})")
            sizes = {"project.json": MAX_JSON_BYTES, "arrays.npz": MAX_ARRAYS_BYTES}
            for name, limit in sizes.items():
                if z.getinfo(name).file_size > limit:
                    raise ProjectError(f"{p}: {name} too large ({z.getinfo(name).file_size >> 20} MiB declared)")
            raw = z.read("project.json")
            npz = z.read("arrays.npz")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise ProjectError(f"{p}: damaged or not a LatentStudio project ({first_line(exc)})") from exc
    except (ValueError, RuntimeError, NotImplementedError) as exc:  # zlib errors, CRC mismatches
        if isinstance(exc, ProjectError):
            raise
        raise ProjectError(f"{p}: damaged project file ({first_line(exc)})") from exc
    meta = loads_json(raw, f"{p}: project.json", ProjectError)
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise ProjectError(f"{p}: not a LatentStudio project (schema {str(meta.get('schema'))[:40]!r})"
                           if isinstance(meta, dict) else f"{p}: project.json is not an object")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ProjectError(f"{p}: invalid schema version {str(version)[:20]!r}")
    if version > VERSION:
        raise ProjectError(f"{p}: written by a newer LatentStudio (project version {version}; "
                           f"this one reads up to {VERSION})")
    arrays = load_npz(npz, f"{p}: arrays.npz", ProjectError, lambda name: bool(ARRAY_NAME.match(name)))
    return meta, arrays


def _array(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...], p: Path,
           limit: float = 1e6) -> np.ndarray:
    if not isinstance(key, str) or key not in arrays:
        raise ProjectError(f"{p}: damaged project file (array {str(key)[:40]!r} is missing)")
    a = arrays[key]
    if a.shape != shape or a.dtype.kind != "f":
        raise ProjectError(f"{p}: damaged project file (array {key!r} should be finite {shape}, "
                           f"got {a.dtype} {a.shape})")
    return check_finite(a, f"{p}: damaged project file (array {key!r})", ProjectError, limit)


def _amount(raw: Any, what: str, p: Path) -> float:
    """A finite number within ±MAX_AMOUNT from project.json."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not abs(raw) <= MAX_AMOUNT:
        raise ProjectError(f"{p}: damaged project file ({what} must be a number within ±{MAX_AMOUNT:g}, "
                           f"got {str(raw)[:20]})")
    return float(raw)


def _build(p: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray],
           installed: list[Direction], runtime: Runtime | None) -> Document:
    base = _array(arrays, "base", (NUM_SLOTS, W_DIM), p, MAX_LATENT_ABS)
    s = meta["source"]
    warnings: list[str] = []
    kind = s["kind"]
    if kind not in ("photo", "seed", "code"):
        raise ProjectError(f"{p}: unknown source kind {kind!r}")
    photo_path = _find_photo(p, s) if kind == "photo" else None
    if kind == "photo" and photo_path is None:
        warnings.append(f"source photo not found ({s.get('path')}); paste-back is unavailable")
    elif photo_path is not None and s.get("sha256") and sha256_of(photo_path) != s["sha256"]:
        warnings.append(f"{photo_path} changed since the project was saved")
    size = s.get("photo_size")
    path = photo_path or (Path(s["path"]) if s.get("path") else None)
    placement = None
    if path is not None and size and "quad" in arrays and "landmarks" in arrays:
        try:
            placement = Placement(path, (int(size[0]), int(size[1])), _array(arrays, "quad", (4, 2), p),
                                  _array(arrays, "landmarks", (68, 2), p), int(s.get("face_index") or 0))
        except PlacementError as exc:
            raise ProjectError(f"{p}: {exc}") from exc
    source = Source(kind, path, s.get("sha256"), placement,
                    None if s.get("seed") is None else int(s["seed"]),
                    None if s.get("psi") is None else float(s["psi"]))
    dirs = list(installed)
    for d in meta.get("directions", []):
        vec = _array(arrays, d["array"], (W_DIM,), p)
        dirs.append(make_direction(d["name"], vec, label=d["label"], kind=d["kind"],
                                   value_range=tuple(d["range"]), layers=tuple(d["layers"])))
    tuning = tuned_deltas(arrays)
    try:
        doc = Document(base, source, dirs, tuning=tuning, runtime=runtime)
    except DocumentError as exc:
        raise ProjectError(f"{p}: damaged project file ({exc})") from exc
    doc.warnings = warnings
    doc.set_state(_state(p, meta["state"], arrays, doc, warnings))
    if "code" in arrays and arrays["code"].shape == (NUM_SLOTS, W_DIM) and (
            runtime is not None or not doc.state.identity.active):
        try:
            same = np.allclose(doc.code(), arrays["code"], atol=1e-4)
        except DocumentError as exc:
            warnings.append(f"cannot rebuild the edited face: {exc}")
        else:
            if not same:
                warnings.append("the edited face differs from the saved one "
                                "(the editing or identity models changed since)")
    return doc


def _find_photo(p: Path, s: dict[str, Any]) -> Path | None:
    for cand in (s.get("path"), (p.parent / s["relpath"]) if s.get("relpath") else None):
        if cand and Path(cand).is_file():
            return Path(cand).resolve()
    return None


def _state(p: Path, st: dict[str, Any], arrays: dict[str, np.ndarray], doc: Document,
           warnings: list[str]) -> EditState:
    known = set(doc.directions)

    def known_only(names: Iterable[str], what: str) -> list[str]:
        names = list(names)
        gone = [n for n in names if n not in known]
        if gone:
            warnings.append(f"{what} for unknown slider(s) ignored: {', '.join(gone)}")
        return [n for n in names if n in known]

    raw_values = st.get("values", {})
    if not isinstance(raw_values, dict):
        raise ProjectError(f"{p}: damaged project file (slider values are not a mapping)")
    try:
        values = {n: check_amount(n, raw_values[n], doc.directions[n].range, ProjectError)
                  for n in known_only(raw_values, "values")}
    except ProjectError as exc:
        raise ProjectError(f"{p}: damaged project file (slider {exc})") from exc
    keep = frozenset(known_only(st.get("keep", []), "locks"))
    raw_layers = st.get("layers", {})
    layers = {n: _check_layers(n, raw_layers[n]) for n in known_only(raw_layers, "slot ranges")}
    i = st.get("identity", {})
    other = None
    if i.get("other") is not None:
        other = OtherFace(_array(arrays, "other", (NUM_SLOTS, W_DIM), p, MAX_LATENT_ABS), str(i["other"]["label"]),
                          dict(i["other"].get("origin") or {}))
    role = i.get("role", "identity")
    if role not in ROLES:
        raise ProjectError(f"{p}: damaged project file (unknown identity role {role!r})")
    refined = None
    if i.get("refined") is not None:
        try:
            refined = IdentityRefinement(_array(arrays, "identity_refined", (NUM_SLOTS, W_DIM), p, MAX_LATENT_ABS),
                                         int(i["refined"]["steps"]))
        except (KeyError, TypeError, ValueError, DocumentError) as exc:
            raise ProjectError(f"{p}: damaged project file (identity refinement: {exc})") from exc
    ident = IdentityState(other, role, *(_amount(i.get(k, 0.0), k, p) for k in ("id_alpha", "attr_alpha", "deid_strength")),
                          int(i.get("deid_seed", 0)), refined, bool(i.get("surroundings", True)))
    rep = st.get("repair")
    repair = None
    if rep is not None:
        raw = arrays.get("repair_direction")
        direction = _array(arrays, "repair_direction", (W_DIM,) if raw is not None and raw.ndim == 1 else (NUM_SLOTS, W_DIM), p)
        try:
            alpha = _amount(rep["alpha"], "repair strength", p)
            notes = [float("nan") if rep.get(k) is None else float(rep[k]) for k in ("score_before", "score_after")]
            repair = RepairOffset(alpha, direction, *notes)
        except (KeyError, TypeError, ValueError, DocumentError) as exc:
            raise ProjectError(f"{p}: damaged project file (artifact repair: {exc})") from exc
    return EditState({n: v for n, v in values.items() if v != 0.0}, keep, layers, ident, repair)


# ----------------------------------------------------------------------------- autosave
def autosave_dir() -> Path:
    from latentstudio import paths

    return paths.state_dir() / "autosave"


class Autosave:
    """This process's autosave file (``session-<pid>.lsproj``); removed on a clean exit."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or autosave_dir()
        self.path = self.folder / f"session-{os.getpid()}{PROJECT_SUFFIX}"

    def write(self, doc: Document, state: EditState | None = None, code: np.ndarray | None = None) -> Path:
        """Snapshot ``doc`` with ``state`` (default its current one) and, when known, that
        state's edited ``code``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        save_project(doc, self.path, code=code, state=state)
        return self.path

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def recoverable(folder: Path | None = None) -> list[Path]:
    """Autosaves left by sessions that are no longer running (crashed), newest first."""
    d = folder or autosave_dir()
    if not d.is_dir():
        return []
    found = []
    for f in d.glob(f"session-*{PROJECT_SUFFIX}"):
        try:
            pid = int(f.stem.split("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            found.append(f)
    return sorted(found, key=lambda f: f.stat().st_mtime, reverse=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
