"""The editing session, headless: where the face came from, its base W+ code and the edit state.

The edited code is a pure function of the document and an ``EditState``::

    code = edits(identity(base))        # every array (23, 512) float32
    identity: mapper blend with a second face (``id_alpha``, ``attr_alpha``), then de-identify
    edits:    base + Σ αᵢ·nᵢ over the moved sliders, each nᵢ applied to its slot range and made
              orthogonal to the "keep" (locked) attributes (``latentstudio.edit.apply``)
    repair:   + α·D (a W+ direction), the artifact repair found by ``latentstudio.edit.repair``

While the identity panel is active a render shows ``scene()``: that code inside its face and the
attribute face's code with the same edits (``surroundings_code``) around it, so the new face keeps
that face's hair, clothes and background (``latentstudio.identity.surroundings``). A repair is
shown the same way, inside the face only: hair, headwear and background stay the unrepaired
code's.

A photo inverted in high-fidelity mode also carries ``tuning``: generator weight changes from
pivotal tuning (``latentstudio.tune``) that every render of the document adds to the weights
(``Document.generator_for``).

``EditState`` is immutable: every change makes a new one, so undo is "put the old state back"
and a background render can read a state while the UI thread builds the next one.
Project files (``.lsproj``) are read and written by ``latentstudio.project``.
"""

from __future__ import annotations

import json
import math
import threading
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from latentstudio import __version__
from latentstudio.face.placement import Placement
from latentstudio.latent import NUM_SLOTS, W_DIM, as_code
from latentstudio.models.fetch import sha256_of
from latentstudio.runtime import Runtime
from latentstudio.safety import InputError, check_output

ROLES = ("identity", "attributes")  # what the second face contributes
Direction = Any  # latentstudio.edit.boundaries.Boundary (imported lazily)


class DocumentError(InputError):
    """An edit or export the document cannot do; the message says why."""


# ----------------------------------------------------------------------------- directions
# Directions are ``latentstudio.edit.boundaries.Boundary`` objects: unit ``normal`` (512,) in W,
# slider ``range``, inclusive slot range ``layers`` (a, b) with 0 <= a <= b <= 22, and
# ``source`` ("trained", "imported", "user", "pca") which the panel groups by.


def _boundaries():  # noqa: ANN202 - the latentstudio.edit.boundaries module
    from latentstudio.edit import boundaries

    return boundaries


def make_direction(name: str, vector: np.ndarray, *, label: str | None = None, kind: str = "user",
                   value_range: tuple[float, float] = (-3.0, 3.0),
                   layers: tuple[int, int] = (0, NUM_SLOTS - 1)) -> Any:
    """A Boundary from a (512,) / (1,512) vector (normalised); DocumentError if unusable."""
    b = _boundaries()
    try:
        return b.Boundary(name=b.check_name(name), normal=vector, label=label or name,
                          range=tuple(value_range), layers=tuple(layers), source=kind)
    except b.BoundaryError as exc:
        raise DocumentError(str(exc)) from exc


def load_default_directions(folders: Iterable[Path] | None = None,
                            pca_count: int = 10) -> tuple[list[Any], str | None]:
    """Installed boundaries (shipped + user) and the first ``pca_count`` shipped PCA directions,
    or ([], reason) when they cannot be loaded."""
    try:
        b = _boundaries()
        from latentstudio.edit.pca import load_pca_boundaries
    except ImportError as exc:
        return [], f"editing module not installed ({exc})"
    try:
        found = list(b.load_all(folders).values())
        if folders is None and pca_count > 0:
            found += [d for d in load_pca_boundaries(pca_count).values()
                      if d.name not in {f.name for f in found}]
        return found, None
    except Exception as exc:  # noqa: BLE001 - a broken index must not stop the editor
        return [], f"cannot load boundaries: {exc}"


def import_directions(path: str | Path, *, max_components: int = 10) -> list[Any]:
    """W-space directions from a user file: .npy/.pt (one vector), or .npz with ``components`` or
    ``comp`` (K,512)
    [+ ``std`` (K,)] (GANSpace-style PCA: the first ``max_components`` become sliders in units of
    the component's σ, range ±3σ). DocumentError with the cause on a bad file."""
    p = Path(path)
    b = _boundaries()
    stem = _slug(p.stem)
    if p.suffix.lower() in (".npy", ".pt", ".pth"):
        try:
            vec = b.read_vector(p)
        except b.BoundaryError as exc:
            raise DocumentError(str(exc)) from exc
        return [make_direction(stem, vec, label=p.stem, kind="user")]
    if p.suffix.lower() != ".npz":
        raise DocumentError(f"{p}: directions are .npy/.pt (one vector) or .npz (PCA 'comp')")
    try:
        with np.load(p, allow_pickle=False) as data:
            key = next((k for k in ("components", "comp") if k in data.files), None)
            if key is None:
                raise DocumentError(f"{p}: .npz needs a 'components' or 'comp' (K,512) array, "
                                    f"found {data.files}")
            comp = np.asarray(data[key], dtype=np.float64)
            std = np.asarray(data["std"], np.float64).reshape(-1) if "std" in data.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, DocumentError):
            raise
        raise DocumentError(f"{p}: not a readable direction file ({exc})") from exc
    if comp.size % W_DIM or comp.size == 0:
        raise DocumentError(f"{p}: 'comp' must be (K,512), got {comp.shape}")
    comp = comp.reshape(-1, W_DIM)
    out = []
    for k in range(min(max_components, comp.shape[0])):
        s = float(std[k]) if std is not None and k < std.size and std[k] > 0 else 1.0
        out.append(make_direction(f"pca{k + 1}_{stem}"[:40], comp[k], label=f"PCA {k + 1}",
                                  kind="pca", value_range=(-3.0 * s, 3.0 * s)))
    return out


def _slug(text: str) -> str:
    s = "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")
    s = s if s and s[0].isalpha() else f"d_{s}"
    return s[:30]


def _check_layers(name: str, layers: Sequence[int]) -> tuple[int, int]:
    """Inclusive slot range (a, b), 0 <= a <= b <= 22."""
    try:
        lo, hi = (int(v) for v in layers)
    except (TypeError, ValueError) as exc:
        raise DocumentError(f"{name}: slot range must be two slot numbers, got {layers!r}") from exc
    if not 0 <= lo <= hi <= NUM_SLOTS - 1:
        raise DocumentError(f"{name}: slot range must satisfy 0 <= first <= last <= {NUM_SLOTS - 1}, "
                            f"got ({lo}, {hi})")
    return lo, hi


# ----------------------------------------------------------------------------- state
@dataclass(frozen=True, eq=False)
class OtherFace:
    """The second face of the identity panel: its code (23,512) and where it came from."""

    code: np.ndarray
    label: str
    origin: dict[str, Any] = field(default_factory=dict)  # {"kind": "seed"|"photo", ...}


@dataclass(frozen=True, eq=False)
class IdentityRefinement:
    """What "Refine" (``latentstudio.identity.refine``) added to the mapper's output for the panel
    settings it was computed for: ``offset`` (23, 512) float32, read-only, and its step count."""

    offset: np.ndarray
    steps: int

    def __post_init__(self) -> None:
        d = as_code(self.offset, "a refinement's offset", DocumentError, w_ok=False)
        d.setflags(write=False)
        object.__setattr__(self, "offset", d)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdentityRefinement) and (other is self or (
            self.steps == other.steps and np.array_equal(self.offset, other.offset)))

    def __hash__(self) -> int:
        return hash((self.steps, self.offset.tobytes()))


@dataclass(frozen=True)
class IdentityState:
    other: OtherFace | None = None
    role: str = "identity"  # what ``other`` contributes: "identity" or "attributes"
    id_alpha: float = 0.0  # how much of the other face's identity
    attr_alpha: float = 0.0  # how much of the other face's attributes
    deid_strength: float = 0.0
    deid_seed: int = 0
    refined: IdentityRefinement | None = None  # valid for exactly these settings
    #: render the result in the attribute face's own hair, clothes and background
    #: (``identity.surroundings``); off: the result's code alone, the identity face's hair and all
    surroundings: bool = True

    @property
    def active(self) -> bool:
        blends = self.other is not None and (self.id_alpha != 0.0 or self.attr_alpha != 0.0)
        return blends or self.deid_strength != 0.0


@dataclass(frozen=True, eq=False)
class RepairOffset:
    """An artifact repair (``latentstudio.edit.repair``): ``alpha`` along ``direction``, a W+
    direction (23, 512) added after the slider edits (a (512,) one, from older projects, is added
    to every slot); the quality scores are notes."""

    alpha: float
    direction: np.ndarray  # (23, 512) float32, read-only
    score_before: float = float("nan")
    score_after: float = float("nan")

    def __post_init__(self) -> None:
        d = np.array(self.direction, np.float32)
        if d.shape == (W_DIM,):
            d = np.repeat(d[None], NUM_SLOTS, 0)
        if d.shape != (NUM_SLOTS, W_DIM) or not np.isfinite(d).all() or not math.isfinite(self.alpha):
            raise DocumentError(f"a repair needs a finite alpha and a finite ({NUM_SLOTS}, {W_DIM}) or ({W_DIM},) "
                                "direction")
        d.setflags(write=False)
        object.__setattr__(self, "direction", d)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RepairOffset) and (other is self or (
            self.alpha == other.alpha and np.array_equal(self.direction, other.direction)))

    def __hash__(self) -> int:
        return hash((self.alpha, self.direction.tobytes()))

    @property
    def offset(self) -> np.ndarray:
        """(23, 512) float32: what the repair adds to the code."""
        return (self.alpha * self.direction).astype(np.float32)


@dataclass(frozen=True)
class EditState:
    """Slider values (only non-zero ones), locks, per-slider slot ranges, identity settings.

    Never mutate the dicts: use the ``with_*`` methods, which return a new state.
    """

    values: Mapping[str, float] = field(default_factory=dict)
    keep: frozenset[str] = frozenset()
    layers: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # overrides only
    identity: IdentityState = IdentityState()
    repair: RepairOffset | None = None

    def value(self, name: str) -> float:
        return float(self.values.get(name, 0.0))

    def with_value(self, name: str, value: float) -> EditState:
        v = float(value)
        if not math.isfinite(v):
            raise DocumentError(f"{name}: slider value must be finite, got {value!r}")
        values = {k: x for k, x in self.values.items() if k != name}
        if v != 0.0:
            values[name] = v
        return replace(self, values=values)

    def with_keep(self, name: str, on: bool) -> EditState:
        return replace(self, keep=self.keep | {name} if on else self.keep - {name})

    def with_layers(self, name: str, layers: tuple[int, int] | None) -> EditState:
        rest = {k: x for k, x in self.layers.items() if k != name}
        if layers is not None:
            rest[name] = _check_layers(name, layers)
        return replace(self, layers=rest)

    def with_identity(self, **changes: Any) -> EditState:
        """Change panel settings; any change but the refinement itself and the surroundings
        (which only change how the code is shown) drops the refinement."""
        if set(changes) != {"surroundings"}:
            changes.setdefault("refined", None)
        ident = replace(self.identity, **changes)
        if ident.role not in ROLES:
            raise DocumentError(f"role must be one of {ROLES}, got {ident.role!r}")
        return replace(self, identity=ident)

    def swapped_roles(self) -> EditState:
        """The second face changes role; the two amounts swap with it."""
        i = self.identity
        return self.with_identity(role=ROLES[1 - ROLES.index(i.role)], id_alpha=i.attr_alpha,
                                  attr_alpha=i.id_alpha)

    def with_repair(self, repair: RepairOffset | None) -> EditState:
        return replace(self, repair=repair)

    def reset_sliders(self) -> EditState:
        return replace(self, values={}, layers={}, repair=None)


# ----------------------------------------------------------------------------- source
@dataclass(frozen=True, eq=False)
class Source:
    """Where the base code came from: a photo (with its alignment), a seed, or a code file."""

    kind: str  # "photo" | "seed" | "code"
    path: Path | None = None
    sha256: str | None = None
    placement: Placement | None = None  # where the face sits in the photo (kind "photo")
    seed: int | None = None
    psi: float | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        if self.kind == "seed":
            return f"seed {self.seed} (ψ {self.psi:g})"
        return self.path.name if self.path else self.kind

    def photo(self) -> np.ndarray:
        """The original photo (H,W,3) uint8, loaded once; DocumentError if it is gone or changed."""
        if "photo" not in self._cache:
            from latentstudio.face.image_io import ImageError, load_image

            if self.kind != "photo" or self.path is None:
                raise DocumentError("this document has no source photo")
            try:
                rgb = load_image(self.path)
            except ImageError as exc:
                raise DocumentError(f"cannot read the source photo: {exc}") from exc
            size = self.placement.size if self.placement else None
            if size and (rgb.shape[1], rgb.shape[0]) != size:
                raise DocumentError(f"{self.path}: the photo changed size since it was aligned "
                                    f"({rgb.shape[1]}x{rgb.shape[0]}, was {size[0]}x{size[1]})")
            self._cache["photo"] = rgb
        return self._cache["photo"]

    def aligned(self) -> np.ndarray:
        """The FFHQ-aligned original face (1024,1024,3) uint8."""
        if "aligned" not in self._cache:
            from latentstudio.face.align import align_face

            if self.placement is None:
                raise DocumentError("this document has no face alignment")
            self._cache["aligned"] = align_face(self.photo(), self.placement.landmarks).image
        return self._cache["aligned"]

    @property
    def can_paste_back(self) -> bool:
        return self.kind == "photo" and self.placement is not None and self.placement.photo.is_file()

    def reduced(self, max_side: int | None) -> tuple[Placement, np.ndarray]:
        """The placement and the photo, reduced so the longer side is at most ``max_side``
        (None: full size); cached."""
        if self.placement is None:
            raise DocumentError("this document has no face alignment")
        photo = self.photo()
        h, w = photo.shape[:2]
        s = 1.0 if max_side is None else min(1.0, max_side / max(h, w))
        if s == 1.0:
            return self.placement, photo
        key = f"reduced{max_side}"
        if key not in self._cache:
            import cv2

            small = cv2.resize(photo, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            self._cache[key] = (self.placement.scaled(small.shape[1] / w, small.shape[0] / h), small)
        return self._cache[key]

    def remember(self, photo: np.ndarray | None = None, aligned: np.ndarray | None = None) -> None:
        """Seed the caches with arrays already in memory (after detection / alignment)."""
        if photo is not None:
            self._cache["photo"] = photo
        if aligned is not None:
            self._cache["aligned"] = aligned


# ----------------------------------------------------------------------------- document
class Document:
    """One editing session. ``code()`` is the edited W+ (23,512) float32 for the current state."""

    def __init__(self, base: np.ndarray, source: Source, directions: Iterable[Direction] = (),
                 state: EditState | None = None,
                 tuning: Mapping[str, np.ndarray] | None = None, runtime: Runtime | None = None) -> None:
        self.base = as_code(base, "the base code", DocumentError, w_ok=False)
        self.base.setflags(write=False)
        self.source = source
        self.runtime = runtime  # the models the identity stage uses (set by the session that holds it)
        self.tuning: dict[str, np.ndarray] = _check_tuning(tuning or {})
        self._tuned: list[tuple[Any, Any]] = []  # (generator, its tuned copy), the last two used
        self._tuned_lock = threading.Lock()
        self.directions: dict[str, Direction] = {}
        self.add_directions(directions)
        self.state = EditState()
        if state is not None:
            self.set_state(state)
        self.warnings: list[str] = []  # non-fatal notes from loading (missing photo, …)

    # -- construction
    @classmethod
    def from_seed(cls, generator: Any, seed: int, psi: float = 0.7,
                  directions: Iterable[Direction] = ()) -> Document:
        w = generator.seed_w(seed, psi).detach().cpu().numpy().astype(np.float32)
        return cls(np.repeat(w[None], NUM_SLOTS, 0), Source("seed", seed=seed, psi=psi), directions)

    @classmethod
    def from_photo(cls, code: Any, *, photo: np.ndarray | None = None, directions: Iterable[Direction] = ()) -> Document:
        """A photo's face as ``latentstudio.photo.to_code`` gives it (``PhotoCode``: alignment,
        W+ code, tuned weights); ``photo``: the already loaded pixels."""
        p = code.path.resolve()
        src = Source("photo", p, sha256_of(p), replace(code.placement, photo=p))
        src.remember(photo=photo, aligned=code.alignment.image)
        return cls(code.w_plus, src, directions, tuning=code.tuning.deltas if code.tuning else None)

    @classmethod
    def from_code_file(cls, path: str | Path, directions: Iterable[Direction] = ()) -> Document:
        """A code file of ``latentstudio invert`` (``.npz``) or any ``.npy``/``.npz`` W+ code.

        With the alignment and the photo it names (still there, same size) the document can
        paste back; otherwise it opens as a bare code, with a warning. Tuned weights come along.
        Raises DocumentError when the file is not a readable code.
        """
        from latentstudio.codes import LatentError, load_code, load_code_extras, tuned_deltas

        p = Path(path)
        try:
            w_plus = load_code(p)
            extras = load_code_extras(p)
        except LatentError as exc:
            raise DocumentError(str(exc)) from exc
        tuning = tuned_deltas(extras)
        warnings: list[str] = []
        source = Source("code", p.resolve())
        photo = Path(str(extras["photo"])) if "photo" in extras else None
        quad, lms, size = extras.get("quad"), extras.get("landmarks"), extras.get("source_size")
        if photo is not None and quad is not None and lms is not None and size is not None:
            rgb, why = _read_photo(photo, (int(size[0]), int(size[1])))
            if rgb is not None:
                source = Source("photo", photo.resolve(), sha256_of(photo),
                                Placement.from_arrays(extras, photo.resolve()))
                source.remember(photo=rgb)
            else:
                warnings.append(f"{why}; paste-back is unavailable")
        try:
            doc = cls(w_plus, source, directions, tuning=tuning)
        except DocumentError as exc:
            raise DocumentError(f"{p}: {exc}") from exc
        doc.warnings = warnings
        return doc

    # -- directions and state
    def add_directions(self, dirs: Iterable[Direction]) -> list[str]:
        """Add (or replace) directions; the dict is replaced, never mutated (renders read it)."""
        new = dict(self.directions)
        names = []
        for d in dirs:
            _check_layers(d.name, d.layers)
            new[d.name] = d
            names.append(d.name)
        self.directions = new
        return names

    def check_state(self, state: EditState) -> None:
        unknown = (set(state.values) | set(state.keep) | set(state.layers)) - set(self.directions)
        if unknown:
            raise DocumentError(f"unknown slider(s): {', '.join(sorted(unknown))}")

    def set_state(self, state: EditState) -> None:
        self.check_state(state)
        self.state = state

    def layers_of(self, name: str, state: EditState | None = None) -> tuple[int, int]:
        s = self.state if state is None else state
        return tuple(s.layers.get(name, self.directions[name].layers))  # type: ignore[return-value]

    # -- the code
    def code(self, state: EditState | None = None, *, draft: bool = False) -> np.ndarray:
        """Edited W+ (23,512) float32 for ``state`` (default: the current one). Thread-safe.
        ``draft``: a drag's preview; the identity stage measures nothing new (``identity_stage``)."""
        s = self.state if state is None else state
        return self._edited(identity_stage(self.base, s.identity, self.runtime, draft=draft), s)

    def surroundings_code(self, state: EditState | None = None, *, draft: bool = False) -> np.ndarray | None:
        """The face whose hair, clothes and background a render of ``state`` keeps, with
        ``state``'s edits but not its repair (23,512) float32: while the identity panel is active
        (and set to keep them), this document's face or the second face, whichever gives more of
        the attributes; else, with a repair, the unrepaired code (a repair changes the face only).
        None when a render shows the code alone. ``draft`` as in ``code``."""
        s = self.state if state is None else state
        ident = s.identity
        plain = s.with_repair(None)
        if ident.active and ident.surroundings:
            from latentstudio.identity.api import attribute_face

            attrs = attribute_face(self.base, ident.other.code if ident.other is not None else None, ident.attr_alpha)
            return self._edited(np.asarray(attrs, dtype=np.float32), plain)
        return None if s.repair is None else self.code(plain, draft=draft)

    def scene(self, state: EditState | None = None, *, draft: bool = False) -> Any:
        """What a render of ``state`` shows: its code (23,512), or, while the identity panel is
        active or a repair is applied, an ``identity.surroundings.InSurroundings`` that renders
        the code in the surroundings of ``surroundings_code`` (``render.Scene``). ``draft`` as in
        ``code``."""
        s = self.state if state is None else state
        return self._shown(self.code(s, draft=draft), self.surroundings_code(s, draft=draft), draft)

    def repair_scene(self, state: EditState | None = None) -> Any:
        """How ``state`` would show a repaired code: code (23,512) → what ``scene`` gives once
        the repair is applied (what the repair's walk measures)."""
        s = (self.state if state is None else state).with_repair(None)
        outside = self.surroundings_code(s)
        outside = self.code(s) if outside is None else outside
        return lambda code: self._shown(code, outside)

    def _shown(self, code: np.ndarray, outside: np.ndarray | None, draft: bool = False) -> Any:
        """``code`` in the surroundings of ``outside`` when there are any and the runtime can show
        them (``identity.surroundings.in_surroundings``), else ``code``."""
        if outside is None or self.runtime is None:
            return code
        from latentstudio.identity.surroundings import in_surroundings

        return in_surroundings(code, outside, self.runtime.surroundings(), draft)

    def _edited(self, w: np.ndarray, s: EditState) -> np.ndarray:
        """``s``'s sliders and repair applied to ``w`` (23,512) → (23,512) float32."""
        dirs = self.directions
        alphas = {n: v for n, v in s.values.items() if v != 0.0}
        keep = sorted(k for k in s.keep if k in dirs)
        # a locked slider keeps its own offset; the others are made orthogonal to every lock
        locked = {n: v for n, v in alphas.items() if n in s.keep}
        free = {n: v for n, v in alphas.items() if n not in s.keep}
        layers = {n: self.layers_of(n, s) for n in alphas}
        w = w.astype(np.float32, copy=True)
        if locked:
            w = _apply_edits(w, locked, dirs, [], layers)
        if free:
            w = _apply_edits(w, free, dirs, keep, layers)
        if s.repair is not None:
            w = w + s.repair.offset
        return np.asarray(w, dtype=np.float32).reshape(NUM_SLOTS, W_DIM)

    def identity_pose_note(self, state: EditState | None = None) -> str | None:
        """``identity.api.pose_note`` for the identity stage of ``state``: its result against the
        face whose attributes it keeps (this document's, or the second face's when the attribute
        amount gives more of its). None when the panel is off or the pose is kept."""
        s = self.state if state is None else state
        ident = s.identity
        if not ident.active or self.runtime is None or identity_available():
            return None
        from latentstudio.identity import api

        attrs = api.attribute_face(self.base, ident.other.code if ident.other is not None else None, ident.attr_alpha)
        out = identity_stage(self.base, ident, self.runtime)  # the cached exact stage of the last full frame
        return api.pose_note(out, np.asarray(attrs, np.float32), models=self.runtime.identity())

    def generator_for(self, generator: Any, state: EditState | None = None) -> Any:
        """The generator that renders ``state``: ``generator`` plus the document's tuned weights,
        or ``generator`` itself when there are none. The tuned weights hold details of this
        photo's face, which would pull a second identity back towards it: while the identity
        panel is active the plain generator renders. Thread-safe; tuned copies are kept.

        Raises DocumentError, once, when the tuned weights do not fit ``generator`` (they are
        then dropped, with a warning, and the plain generator renders from then on)."""
        from latentstudio.codes import LatentError

        s = self.state if state is None else state
        with self._tuned_lock:
            if not self.tuning or s.identity.active:
                return generator
            for base, tuned in self._tuned:
                if base is generator:
                    return tuned
            from latentstudio.tune import tuned_generator

            try:
                tuned = tuned_generator(generator, self.tuning)
            except LatentError as exc:
                self.tuning = {}
                self.warnings.append(f"tuned weights dropped: {exc}")
                raise DocumentError(f"{exc}; the face is rendered without them") from exc
            # the renderer's generator and the task thread's (artifact repair): keep both
            self._tuned = [*self._tuned[-1:], (generator, tuned)]
            return tuned

    def render(self, generator: Any, size: int = 1024, state: EditState | None = None) -> np.ndarray:
        """The edited face (size,size,3) uint8 (with the tuned weights, see ``generator_for``),
        in the attribute face's surroundings while the identity panel is active (``scene``)."""
        from latentstudio.render import render_scene

        return render_scene(self.generator_for(generator, state), self.scene(state), size)

    def compose(self, aligned_rgb: np.ndarray, max_side: int | None = None,
                state: EditState | None = None) -> np.ndarray:
        """Paste an edited aligned face back into the original photo: (H,W,3) uint8. With
        ``max_side``, into a copy of the photo reduced to fit it (fast previews). ``state`` (default:
        the current one) is what ``aligned_rgb`` shows: when its identity panel is active the face
        may be another person's, and the photo keeps its own hairline."""
        if not self.source.can_paste_back:
            raise DocumentError("pasting back needs the original photo, which is not available"
                                if self.source.kind == "photo" else
                                "this face was not opened from a photo; export the aligned crop")
        placement, photo = self.source.reduced(max_side)
        s = self.state if state is None else state
        return placement.paste(aligned_rgb, photo, other_person=s.identity.active)

    # -- description
    def edits_summary(self, state: EditState | None = None) -> dict[str, Any]:
        s = self.state if state is None else state
        ident = s.identity
        return {
            "source": self.source.label,
            "edits": {n: round(v, 4) for n, v in s.values.items()},
            "keep": sorted(s.keep),
            "layers": {n: list(v) for n, v in s.layers.items()},
            "repair": None if s.repair is None else round(s.repair.alpha, 4),
            "tuned": bool(self.tuning),
            "identity": None if not ident.active else {
                "other": ident.other.label if ident.other else None, "role": ident.role,
                "id_alpha": ident.id_alpha, "attr_alpha": ident.attr_alpha,
                "deidentify": ident.deid_strength, "deid_seed": ident.deid_seed},
        }

    def export_metadata(self, mode: str, state: EditState | None = None) -> dict[str, str]:
        s = self.state if state is None else state
        summary = self.edits_summary(s)
        parts = [f"{self.directions[n].label} {v:+.2f}" for n, v in s.values.items() if n in self.directions]
        if s.repair is not None:
            parts.append(f"Repair artifacts {s.repair.alpha:+.2f}")
        text = ", ".join(parts) or "no slider edits"
        return {"Software": f"LatentStudio {__version__}", "Description": text,
                "latentstudio": json.dumps({**summary, "mode": mode}, sort_keys=True)}

    def export(self, path: str | Path, generator: Any, mode: str = "aligned",
               aligned_rgb: np.ndarray | None = None, state: EditState | None = None) -> np.ndarray:
        """Write the edited face to PNG/JPEG/WebP: ``mode`` "aligned" (1024² crop) or "photo"
        (pasted back at the photo's full resolution), with the edits as metadata.
        ``aligned_rgb`` reuses a 1024² render of ``state`` (default: the current state)."""
        from latentstudio.face.image_io import ImageError, save_image

        if mode not in ("aligned", "photo"):
            raise DocumentError(f"export mode must be 'aligned' or 'photo', got {mode!r}")
        check_output(path, [self.source.path], DocumentError)  # never over the photo or code it came from
        face = aligned_rgb if aligned_rgb is not None else self.render(generator, 1024, state)
        out = face if mode == "aligned" else self.compose(face, state=state)
        try:
            save_image(path, out, self.export_metadata(mode, state))
        except ImageError as exc:
            raise DocumentError(str(exc)) from exc
        return out

    def export_code(self, path: str | Path, state: EditState | None = None) -> np.ndarray:
        """Write the edited code as a code file (``.npz``, the format of ``latentstudio invert``):
        ``w_plus`` plus the photo's alignment, the tuned weights the render uses and, while the
        identity panel is active, the surroundings it is shown in (``surroundings_code``), so that
        ``latentstudio render --code FILE [--paste-back PHOTO]`` reproduces the app's face."""
        from latentstudio.codes import LatentError, save_code, tuned_arrays

        p = Path(path)
        if p.suffix != ".npz":
            raise DocumentError(f"{p}: a code file is saved as .npz")
        check_output(p, [self.source.path], DocumentError)
        s = self.state if state is None else state
        code = self.code(s)
        src = self.source
        extras: dict[str, Any] = tuned_arrays(self.tuning) if not s.identity.active else {}
        if src.kind == "photo" and src.placement is not None:
            extras.update(src.placement.arrays())
        outside = self.surroundings_code(s)
        if outside is not None:
            extras["surroundings"] = outside
        try:
            save_code(p, code, **extras)
        except (OSError, LatentError) as exc:
            raise DocumentError(f"{p}: could not save the code ({exc})") from exc
        return code



# ----------------------------------------------------------------------------- core bridges
def identity_available() -> str | None:
    """None when the identity mapper can be used, else the reason it cannot."""
    try:
        from latentstudio.identity import api
    except ImportError:
        return "identity mapper not installed"
    check = getattr(api, "available", None)  # optional: the api may say why it cannot run
    if callable(check):
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001
            return f"identity mapper unavailable: {exc}"
        if isinstance(result, str) and result:
            return result
        if result is False:
            return "identity mapper unavailable"
    return None


def identity_stage(base: np.ndarray, ident: IdentityState, runtime: Runtime | None, *,
                   draft: bool = False) -> np.ndarray:
    """Blend with the second face through the mapper, then de-identify: (23,512) float32.
    The mapper comes from ``runtime`` (DocumentError without one). ``draft``: the blend borrows
    its lock and id curve from an attribute amount already measured (``api.blend``), so a drag's
    previews cost the mapper only; the exact code is the call without it."""
    if not ident.active:
        return np.asarray(base, dtype=np.float32)
    reason = identity_available()
    if reason:
        raise DocumentError(reason)
    if runtime is None:
        raise DocumentError("the identity panel needs its models; this document has no runtime to load them")
    from latentstudio.identity import api

    w = np.asarray(base, dtype=np.float32)
    try:
        models = runtime.identity()
        if ident.other is not None and (ident.id_alpha or ident.attr_alpha):
            w = _as_plus(api.blend(w, ident.other.code, ident.id_alpha, ident.attr_alpha, draft=draft,
                                     models=models))
        if ident.deid_strength:
            w = _as_plus(api.deidentify(w, ident.deid_strength, ident.deid_seed, draft=draft, models=models))
    except ValueError as exc:  # the mapper's own errors (missing weights, bad input)
        raise DocumentError(f"identity mapper: {exc}") from exc
    if ident.refined is not None:
        w = w + ident.refined.offset
    return w


def _read_photo(path: Path, size: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """The photo a code was inverted from, if it is still there and the same size, else the reason."""
    from latentstudio.face.image_io import ImageError, load_image

    if not path.is_file():
        return None, f"source photo not found ({path})"
    try:
        rgb = load_image(path)
    except ImageError as exc:
        return None, f"cannot read the source photo ({exc})"
    if (rgb.shape[1], rgb.shape[0]) != size:
        return None, (f"{path} changed size since it was inverted ({rgb.shape[1]}x{rgb.shape[0]}, "
                      f"was {size[0]}x{size[1]})")
    return rgb, ""


def _check_tuning(tuning: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Tuned weight deltas as read-only float arrays; DocumentError if any is not finite floats.
    (Names and shapes are checked against the generator, in ``Document.generator_for``.)"""
    out = {}
    for name, delta in tuning.items():
        d = np.asarray(delta)
        if d.dtype.kind != "f" or not np.isfinite(d).all():
            raise DocumentError(f"tuned weights for {name!r} are not finite floating-point numbers")
        d = d.copy()
        d.setflags(write=False)
        out[str(name)] = d
    return out


def _as_plus(code: Any) -> np.ndarray:
    arr = code.detach().cpu().numpy() if hasattr(code, "detach") else np.asarray(code)
    arr = arr.astype(np.float32).reshape(-1, W_DIM)
    return np.repeat(arr, NUM_SLOTS, 0) if arr.shape[0] == 1 else arr.reshape(NUM_SLOTS, W_DIM)


def _apply_edits(w: np.ndarray, alphas: dict[str, float], dirs: dict[str, Direction],
                 keep: list[str], layers: dict[str, tuple[int, int]]) -> np.ndarray:
    """Delegate to ``latentstudio.edit.apply.apply_edits``; its errors become DocumentError."""
    try:
        from latentstudio.edit.apply import apply_edits
        from latentstudio.edit.boundaries import BoundaryError
    except ImportError as exc:
        raise DocumentError(f"editing module not installed ({exc})") from exc
    try:
        return apply_edits(w, alphas, dirs, keep=keep, layers=layers)
    except BoundaryError as exc:
        raise DocumentError(str(exc)) from exc
