"""Identity transfer, disentangled blending, de-identification and refinement (no Qt).

All codes are W+ (23, 512) float32 numpy arrays ((512,) w codes are accepted and broadcast).
The mapper M(A, B) (``latentstudio.identity.mapper``) gives A's person with B's attributes and
M(X, X) = X exactly. On top of it:

* ``transfer(A, B)``            = M(A, B)
* ``blend(base, other, i, a)``  = M(I, T) with I = lerp(base, other, t) (whose identity) and
                                  T = lerp(base, other, a) (whose attributes); so blend(·,·,0,0)
                                  = base, (1,1) = other, (1,0) = other's identity on base's
                                  attributes, and the amounts move each independently. t is the
                                  point of that straight line where our recogniser has covered
                                  the fraction i of the way to ``other``'s identity
                                  (``even_amount``, measured once per pair): an inverted photo's
                                  identity barely moves over the line's first quarter, so a plain
                                  t = i left the slider's first stretch doing nothing visible
* ``deidentify(X, s, seed)``    = M(X + k·s·(R − X), X) with R a generated face (seeded) whose
                                  identity is far from X's and whose locked result keeps X's pose
                                  and mouth (``random_identity``), and k (``deid_reach``) the least of 0.9 …
                                  1.4 that puts M(X + k·(R − X), X) at a dlib distance ≥ 0.85 from
                                  X: the least change that makes another person (the farther a face
                                  moves, the more its pose and mouth move with it)
* ``refine_transfer``           a short optimisation of one result (``latentstudio.identity.refine``)

``transfer``, ``blend`` and ``deidentify`` then apply the attribute lock by default
(``latentstudio.identity.lock``: the head pose and the mouth measured and put back along our
boundaries, read in the attribute face's surroundings, 3–9 s once per pair on 2 CPU cores, cached;
``lock=False`` skips it).

Identity descriptors (dlib, 128-d) are only needed for de-identification (choosing R) and for
refinement (the target); they are computed from the 256² render of a code, or from a photo.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentstudio.identity import REFINE_STEPS
from latentstudio.identity.data import CancelFn, ProgressFn
from latentstudio.identity.mapper import ASSET, Mapper, MapperError, load_mapper
from latentstudio.latent import NUM_SLOTS, W_DIM, as_code

EMBED_SIZE = 256  # render size for identity descriptors of codes
EMB_DIM = 128
DEID_SEED_BASE = 7_000_000  # de-identification identities: generated faces from these seeds
DEID_PSI = 0.7
#: strength 1 goes the first of these multiples of the way to the other face ...
DEID_REACHES = (0.9, 1.0, 1.1, 1.2, 1.4)
#: ... whose result is this far from the face by our dlib descriptor (else the last); dlib calls
#: faces under 0.6 the same person. Measured on real photos (bench/RESULTS.md): a fixed 1.4 moved
#: pose and mouth more than needed, a fixed 1.0 left some photos too close to their own person
DEID_DISTANCE = 0.85
DEID_CANDIDATES = 16  # of these, the one farthest from the face's identity is used ...
DEID_TRIES = 3  # ... of the farthest this many, the first whose locked result keeps the pose and mouth:
DEID_POSE = 3.0  # degrees of yaw or pitch left by the lock's fit, at most ...
DEID_MOUTH = 0.04  # ... and the mouth points' mean distance, as a fraction of the inter-ocular distance
EVEN_POINTS = 9  # the id-amount slider's curve is measured at this many points of the line …
EVEN_MIX = 0.8  # … and mixed with the plain amount, so a stretch where the recogniser is flat still moves
EVEN_MIN_SPAN = 0.1  # a smaller change of dlib distance along the line: one person, the plain amount
POSE_NOTE_DEGREES = 5.0  # a result's head further off the attribute face's than this gets a note
_CACHE_SIZE = 64


class IdentityError(MapperError):
    """Bad input to the identity functions (amounts, codes, descriptors)."""


@dataclass
class IdentityModels:
    """The frozen generator, dlib identity net and mapper, plus one small cache of what is
    measured per code (identity descriptors, attribute-lock offsets). The landmark net
    (refinement only) is loaded on first use."""

    generator: object  # latentstudio.models.generator.Generator
    identity_net: object  # latentstudio.face.chip.IdentityNet
    mapper: Mapper

    def __post_init__(self) -> None:
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._landmark_net: object | None = None
        self._surroundings: object | None = None

    @classmethod
    def load(cls, generator: object, weights: str | Path | None = None, identity_net: object | None = None,
             surroundings: object | None = None) -> IdentityModels:
        """The mapper (``weights``, default the shipped one) and dlib's identity net (the one
        given, else loaded) on ``generator``'s device; MapperError when the mapper weights are
        missing or unreadable. ``surroundings``: the ``Surroundings`` already loaded (the
        runtime's), else loaded when first asked for."""
        from latentstudio.face.chip import IdentityNet

        device = generator.device  # type: ignore[attr-defined]
        mapper = load_mapper(Path(weights) if weights else ASSET, device)  # first: fails fast when missing
        models = cls(generator, identity_net or IdentityNet.load(device), mapper)
        models._surroundings = surroundings
        return models

    @property
    def predictors(self):  # noqa: ANN201 - edit.predictors.Models
        """dlib's detector and 68 landmarks (the attribute lock measures with them)."""
        from latentstudio.edit.predictors import load_models

        return load_models()

    @property
    def device(self) -> torch.device:
        return self.generator.device  # type: ignore[attr-defined]

    @property
    def landmark_net(self):  # noqa: ANN201 - LandmarkNet
        if self._landmark_net is None and self._surroundings is not None:
            self._landmark_net = self._surroundings.landmark_net  # type: ignore[attr-defined]
        if self._landmark_net is None:
            from latentstudio.face.landmark_net import LandmarkNetError, load_landmark_net

            try:
                self._landmark_net = load_landmark_net(self.device)
            except LandmarkNetError as exc:
                raise IdentityError(str(exc)) from exc
        return self._landmark_net

    @property
    def surroundings(self):  # noqa: ANN201 - surroundings.Surroundings | None
        """What renders a result in the attribute face's hair and background
        (``identity.surroundings``); None when the face parsing is not installed."""
        if self._surroundings is None:
            from latentstudio.face.parsing import FaceParsing
            from latentstudio.identity.surroundings import Surroundings

            parsing = FaceParsing.load()
            if parsing is None:
                return None
            self._surroundings = Surroundings(parsing, self.landmark_net)
        return self._surroundings

    def cached(self, key: str, compute) -> np.ndarray:  # noqa: ANN001 - () -> np.ndarray
        """What is cached under ``key``, else ``compute()``, cached there (oldest out first)."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        out = compute()
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return out

    def per_amount(self, prefix: str, amount: float, compute, draft: bool = False) -> np.ndarray | None:  # noqa: ANN001
        """What is measured once per ``amount`` under ``prefix`` (``compute()``, cached). ``draft``:
        nothing is computed; the value cached for the amount nearest ``amount`` (what a draft
        ``blend`` borrows from an amount already measured), or None."""
        if not draft:
            return self.cached(prefix + repr(amount), compute)
        with self._lock:
            found = [(abs(float(k[len(prefix):]) - amount), k) for k in self._cache if k.startswith(prefix)]
            if not found:
                return None
            key = min(found)[1]
            self._cache.move_to_end(key)
            return self._cache[key]

    def embedding(self, code: np.ndarray, cache: bool = True) -> np.ndarray:
        """dlib descriptor (128,) of the 256² render of a W+ code (kept in the cache unless
        ``cache`` is False: a one-off code should not push out the locks)."""
        if not cache:
            return self._embed(code)
        return self.cached("emb:" + _digest(code), lambda: self._embed(code))

    def _embed(self, code: np.ndarray) -> np.ndarray:
        from latentstudio.models.generator import from_uint8, to_uint8

        g = self.generator
        with g.lock, torch.no_grad():  # type: ignore[attr-defined]
            img = g.synthesize(torch.from_numpy(code[None]), size=EMBED_SIZE)  # type: ignore[attr-defined]
            emb = self.identity_net.embed_aligned(from_uint8(to_uint8(img)))  # type: ignore[attr-defined]
        return emb[0].cpu().numpy().astype(np.float32)

    def lock_offset(self, code: np.ndarray, target: np.ndarray, cache: bool = True) -> np.ndarray:
        """The attribute lock's W+ offset (23, 512) for ``code`` towards ``target``
        (``latentstudio.identity.lock``; cached unless ``cache`` is False)."""
        from latentstudio.identity.lock import lock_offset

        if not cache:
            return lock_offset(code, target, self)
        return self.cached(_lock_key(code, target), lambda: lock_offset(code, target, self))

    def cached_lock_offset(self, code: np.ndarray, target: np.ndarray) -> np.ndarray | None:
        """``lock_offset`` if it has been measured, else None (a draft measures nothing)."""
        return self.peek(_lock_key(code, target))

    def peek(self, key: str) -> np.ndarray | None:
        """What the cache holds under ``key``, or None; measures nothing."""
        with self._lock:
            return self._cache.get(key)

    def map(self, identity: np.ndarray, attributes: np.ndarray) -> np.ndarray:
        """M(A, B) for one pair of W+ codes → (23, 512) float32."""
        with torch.no_grad():
            a = torch.from_numpy(identity[None]).to(self.device)
            b = torch.from_numpy(attributes[None]).to(self.device)
            return self.mapper(a, b)[0].cpu().numpy().astype(np.float32)


def _lock_key(code: np.ndarray, target: np.ndarray) -> str:
    return "lock:" + _digest(code) + _digest(target)


def _digest(code: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(code, np.float32).tobytes()).hexdigest()


def available(weights: str | Path | None = None) -> str | None:
    """None when the mapper weights can be read, else why not (one line)."""
    from latentstudio.identity.mapper import mapper_info

    try:
        mapper_info(Path(weights) if weights else ASSET)
    except MapperError as exc:
        return str(exc)
    return None


def _code(code: np.ndarray, name: str) -> np.ndarray:
    """A (23,512) float32 copy of a w or W+ code, IdentityError on anything else."""
    return as_code(code, name, IdentityError)


def _amount(value: float, name: str, lo: float = 0.0, hi: float = 1.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise IdentityError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(v) or not lo <= v <= hi:
        raise IdentityError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")
    return v


def _descriptor(emb: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(emb, dtype=np.float32).reshape(-1)
    if arr.shape != (EMB_DIM,) or not np.isfinite(arr).all():
        raise IdentityError(f"{name} must be a finite ({EMB_DIM},) dlib descriptor, got {np.shape(emb)}")
    return arr


def identity_embedding(code: np.ndarray, *, models: IdentityModels) -> np.ndarray:
    """dlib descriptor (128,) of a code's 256² render."""
    m = models
    return m.embedding(_code(code, "code"))


def embed_aligned_photo(aligned_rgb: np.ndarray, *, models: IdentityModels) -> np.ndarray:
    """dlib descriptor (128,) of an FFHQ-aligned photo crop (S, S, 3) uint8, S ≥ 64."""
    from latentstudio.models.generator import from_uint8

    rgb = np.asarray(aligned_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] != rgb.shape[1] or rgb.dtype != np.uint8:
        raise IdentityError(f"aligned photo must be a square (S, S, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    m = models
    with torch.no_grad():
        return m.identity_net.embed_aligned(from_uint8(rgb))[0].cpu().numpy()  # type: ignore[attr-defined]


def transfer(identity_code: np.ndarray, attribute_code: np.ndarray, *, lock: bool = True,
             models: IdentityModels) -> np.ndarray:
    """The person of ``identity_code`` with the pose, expression, lighting, hair and background
    of ``attribute_code`` → W+ (23, 512) float32. ``lock``: apply the attribute lock
    (``latentstudio.identity.lock``) so the pose and the mouth stay the attribute face's."""
    return blend(attribute_code, identity_code, 1.0, 0.0, lock=lock, models=models)


def blend(base: np.ndarray, other: np.ndarray, id_alpha: float, attr_alpha: float, *, lock: bool = True,
          even: bool = True, draft: bool = False, models: IdentityModels) -> np.ndarray:
    """Move identity and attributes independently from ``base`` towards ``other`` → W+ (23,512).

    ``id_alpha`` / ``attr_alpha`` in [0, 1]: how much of ``other``'s identity / attributes.
    ``even``: the id amount is the share of the way to ``other``'s identity by our recogniser
    (``even_amount``; measured once per pair and attribute amount); else the plain point on the
    straight line (a video's frames get the point chosen once for the clip).
    ``lock``: the attribute lock, measured once at the end of the identity move (id amount 1, or
    0 when the identity moves towards ``base``) and scaled with the amount, so a slider drag
    costs one lock per pair and attribute amount, and blend(X, X, ·, ·) = X still holds.
    ``draft``: measure nothing new (a slider drag's previews): what this attribute amount has not
    had measured yet (the lock, the id curve) is borrowed from the nearest attribute amount
    measured for the pair, or left out when there is none; the call then costs the mapper only
    (~2 ms instead of ~3 s) and the exact result comes from the same call without ``draft``.
    """
    ia, aa = _amount(id_alpha, "id_alpha"), _amount(attr_alpha, "attr_alpha")
    b, o = _code(base, "base"), _code(other, "other")
    if ia == 0.0 and aa == 0.0:
        return b
    m = models
    if even:
        ia = even_amount(b, o, ia, aa, lock=lock, draft=draft, models=m)
    ident, attrs = blend_sources(b, o, ia, aa)
    out = m.map(ident, attrs)
    if lock and ia != aa:
        end = 1.0 if ia > aa else 0.0
        offset = _pair_measure(m, f"lock{end:g}", b, o, aa, draft,
                               lambda: m.lock_offset(m.map(*blend_sources(b, o, end, aa)), attrs, cache=False))
        if offset is not None:
            out = out + np.float32((ia - aa) / (end - aa)) * offset
    return out


def _pair_measure(models: IdentityModels, kind: str, base: np.ndarray, other: np.ndarray, attr_alpha: float,
                  draft: bool, compute) -> np.ndarray | None:  # noqa: ANN001 - () -> np.ndarray
    """What ``blend`` measures once per pair and attribute amount (``kind``: the lock's offset, the
    id curve), cached. ``draft``: nothing is measured; the value of the nearest attribute amount
    already measured for the pair, or None."""
    return models.per_amount(f"{kind}:{_digest(base)}{_digest(other)}:", attr_alpha, compute, draft)


def even_amount(base: np.ndarray, other: np.ndarray, id_alpha: float, attr_alpha: float, *,
                lock: bool = True, draft: bool = False, models: IdentityModels) -> float:
    """The point t of ``blend``'s straight line (identity lerp(base, other, t)) that id amount
    ``id_alpha`` stands for: where our dlib descriptor (of the 256² renders) has covered the
    fraction ``id_alpha`` of its way from the result at t = 0 to ``other``'s identity at t = 1,
    read off ``EVEN_POINTS`` points of the line (made monotone; cached per pair and attribute
    amount) and mixed ``EVEN_MIX`` / (1 − ``EVEN_MIX``) with the plain amount. Ends fixed: 0 → 0,
    1 → 1; two faces of one person (the distance hardly changes) keep the plain amount.
    Measured on real photos (bench/RESULTS.md): the line's first quarter barely moves an inverted
    photo's identity, so with t = ``id_alpha`` the slider's first stretch did nothing visible.
    ``draft``: measure nothing (``blend``'s draft): the curve of the nearest attribute amount
    measured for the pair, or the plain amount."""
    ia, aa = _amount(id_alpha, "id_alpha"), _amount(attr_alpha, "attr_alpha")
    if ia in (0.0, 1.0):
        return ia
    b, o = _code(base, "base"), _code(other, "other")
    m = models
    covered = _pair_measure(m, f"even{lock:d}", b, o, aa, draft, lambda: _covered(b, o, aa, lock, m))
    if covered is None:
        return ia
    points = np.linspace(0.0, 1.0, EVEN_POINTS)
    t = float(np.interp(ia, covered + points * 1e-6, points))  # the ramp breaks ties of a flat stretch
    return EVEN_MIX * t + (1.0 - EVEN_MIX) * ia


def _covered(base: np.ndarray, other: np.ndarray, attr_alpha: float, lock: bool,
             models: IdentityModels) -> np.ndarray:
    """(EVEN_POINTS,) the monotone share of the dlib distance to ``other`` covered along the line."""
    points = np.linspace(0.0, 1.0, EVEN_POINTS)
    e_o = models.embedding(other)
    line = [blend(base, other, t, attr_alpha, lock=lock, even=False, models=models) for t in points]
    d = np.array([np.linalg.norm(models.embedding(x, cache=False) - e_o) for x in line])
    if d[0] - d[-1] < EVEN_MIN_SPAN:
        return points
    covered = np.maximum.accumulate(np.clip((d[0] - d) / (d[0] - d[-1]), 0.0, 1.0))
    covered[-1] = 1.0
    return covered


def blend_sources(base: np.ndarray, other: np.ndarray, id_alpha: float,
                  attr_alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The codes ``blend`` maps: (whose identity, whose attributes), each (23, 512) float32."""
    ident = (1 - id_alpha) * base + id_alpha * other
    attrs = (1 - attr_alpha) * base + attr_alpha * other
    return ident.astype(np.float32), attrs.astype(np.float32)


def random_identity(code: np.ndarray, seed: int, *, check: bool = True, models: IdentityModels) -> np.ndarray:
    """A generated face (W+ (23,512)) to take the identity of when de-identifying ``code``: of
    ``DEID_CANDIDATES`` seeded faces, the one farthest from ``code``'s person by the dlib
    descriptor whose de-identified, locked result keeps ``code``'s pose and mouth (the lock's fit
    leaves at most ``DEID_POSE`` degrees and ``DEID_MOUTH`` of the inter-ocular distance; the
    ``DEID_TRIES`` farthest are tried, else the one that kept them best). A far identity sometimes
    drags the head or the mouth further than the lock can bring them back (bench/RESULTS.md: 2 of
    45 de-identified portraits before this check, none after). The choice is cached per code and seed. ``check=False`` (a
    draft) measures nothing: the choice already made, else the farthest face."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise IdentityError(f"seed must be a non-negative integer, got {seed!r}")
    m = models
    c = _code(code, "code")
    key = f"deid:{int(seed)}:" + _digest(c)
    chosen = m.peek(key)
    if chosen is not None:
        return chosen
    e_c = m.embedding(c)
    g = m.generator
    found = []
    for k in range(DEID_CANDIDATES):
        w = g.seed_w(DEID_SEED_BASE + DEID_CANDIDATES * int(seed) + k, DEID_PSI).cpu().numpy()  # type: ignore[attr-defined]
        r = _code(w, "seed code")
        found.append((-float(np.linalg.norm(m.embedding(r) - e_c)), k, r))
    ranked = [r for _d, _k, r in sorted(found, key=lambda t: t[:2])]
    if not check:
        return ranked[0]
    return m.cached(key, lambda: _keeping_pose(c, ranked[:DEID_TRIES], m))


def _keeping_pose(code: np.ndarray, candidates: list[np.ndarray], m: IdentityModels) -> np.ndarray:
    """The first of ``candidates`` whose de-identification of ``code`` the lock brings back within
    ``DEID_POSE`` / ``DEID_MOUTH``, else the one it brought back nearest (its lock stays cached)."""
    from latentstudio.identity.lock import fit_lock

    best, best_miss = candidates[0], math.inf
    for r in candidates:
        full = _towards(code, r, deid_reach(code, r, models=m), m)
        fit = fit_lock(full, code, m)
        m.cached(_lock_key(full, code), lambda fit=fit: fit.offset)
        miss = max(fit.pose_error / DEID_POSE, fit.mouth_error / DEID_MOUTH)
        if miss <= 1.0:
            return r
        if miss < best_miss:  # a NaN (no face found) never wins
            best, best_miss = r, miss
    return best


def _towards(code: np.ndarray, other: np.ndarray, k: float, m: IdentityModels) -> np.ndarray:
    """M(code + k·(other − code), code): ``code``'s attributes, its identity moved the fraction
    ``k`` of the way to ``other``'s (what de-identification maps)."""
    return m.map((code + k * (other - code)).astype(np.float32), code)


def deid_reach(code: np.ndarray, other: np.ndarray, *, models: IdentityModels) -> float:
    """How far towards ``other`` de-identifying ``code`` at strength 1 goes (the source code moves
    to code + k·(other − code)): the least k of ``DEID_REACHES`` whose mapped result is at least
    ``DEID_DISTANCE`` from ``code`` by the dlib descriptor of the 256² renders, else the largest."""
    m = models
    c, r = _code(code, "code"), _code(other, "other")
    e_c = m.embedding(c)
    for k in DEID_REACHES:
        out = _towards(c, r, k, m)
        if float(np.linalg.norm(m.embedding(out) - e_c)) >= DEID_DISTANCE:
            return k
    return DEID_REACHES[-1]


def deidentify(code: np.ndarray, strength: float = 1.0, seed: int | None = 0, *, lock: bool = True,
               other: np.ndarray | None = None, reach: float | None = None, draft: bool = False,
               models: IdentityModels) -> np.ndarray:
    """Replace the identity of ``code`` by another person's (``seed``; None = the average face),
    keeping its pose, expression, lighting and surroundings → W+ (23,512).
    ``strength`` in [0, 1]: 0 = unchanged, 1 = the other identity in full. ``other``: that
    person's code, chosen once (``random_identity``) when many codes of one face must all get
    the same new person (a video's frames); default chosen here from ``seed``. ``reach``: how far
    towards that person strength 1 goes (default ``deid_reach`` for this code; a video chooses it
    once so every frame moves alike). ``draft``: as in ``blend``, the lock only if it has
    been measured for this code (a drag's previews over a blend that moves the code)."""
    s = _amount(strength, "strength")
    c = _code(code, "code")
    if s == 0.0:
        return c
    m = models
    if other is not None:
        r = _code(other, "other")
    elif seed is None:
        r = np.repeat(m.generator.w_avg.cpu().numpy().reshape(1, W_DIM), NUM_SLOTS, 0)  # type: ignore[attr-defined]
    else:
        r = random_identity(c, seed, check=lock and not draft, models=m)
    k = deid_reach(c, r, models=m) if reach is None else _amount(reach, "reach", 0.0, 2.0)
    out = _towards(c, r, k * s, m)
    if lock:  # measured at strength 1 and scaled, as in ``blend``
        full = _towards(c, r, k, m)
        offset = m.cached_lock_offset(full, c) if draft else m.lock_offset(full, c)
        if offset is not None:
            out = out + np.float32(s) * offset
    return out


def attribute_face(own: np.ndarray, other: np.ndarray | None, other_attributes: float) -> np.ndarray:
    """The face whose attributes (pose, expression, hair, surroundings) a blend keeps: ``other``
    when it gives more than half of them (``other_attributes`` > 0.5), else ``own``."""
    return other if other is not None and other_attributes > 0.5 else own


def pose_note(code: np.ndarray, attribute_code: np.ndarray, *, models: IdentityModels) -> str | None:
    """One line for the user when the head of ``code``'s render is turned more than
    ``POSE_NOTE_DEGREES`` (yaw or pitch) away from ``attribute_code``'s, else None. Measured as
    the lock measures: dlib's landmarks on the full render, ``code`` in ``attribute_code``'s
    surroundings (~1 s on 2 CPU cores; the preview
    route reads a turned real inversion's yaw several degrees off and missed some). A face turned
    far from the camera keeps its pose poorly: the mapper's result faces the camera more, and the
    lock goes only as far as a face stays whole (bench/RESULTS.md, held-out photos)."""
    from latentstudio.edit.predictors import head_pose
    from latentstudio.identity.lock import SIZE, landmarks

    c, b = _code(code, "code"), _code(attribute_code, "attribute_code")
    lm = np.concatenate([landmarks(models, c[None], outside=b), landmarks(models, b[None])])
    yaw, pitch, _ = head_pose(lm * SIZE, SIZE)
    off = max(abs(yaw[0] - yaw[1]), abs(pitch[0] - pitch[1]))
    if not math.isfinite(off) or off <= POSE_NOTE_DEGREES:
        return None
    return (f"the result's head is turned {off:.0f}° away from the pose it should keep (that face is turned "
            f"{abs(yaw[1]):.0f}° from the camera); faces turned that far keep their pose poorly, and a more "
            "frontal photo works better")


def refine_transfer(code: np.ndarray, attribute_code: np.ndarray, *, identity_code: np.ndarray | None = None,
                    identity_embedding: np.ndarray | None = None, steps: int = REFINE_STEPS,
                    progress: ProgressFn | None = None, cancelled: CancelFn | None = None,
                    lock: bool = True, models: IdentityModels) -> np.ndarray:
    """Refine a transfer result ``code`` for the best result on one pair (module
    ``latentstudio.identity.refine``): identity towards ``identity_embedding`` (a photo's
    descriptor; else that of ``identity_code``'s render), landmarks and surroundings towards
    ``attribute_code``, then the attribute lock (``lock``; our landmark net, which the optimisation
    uses, reads real faces' mouths only to ~4 % of the inter-ocular distance; the lock measures with
    dlib). Cancelled when ``cancelled()`` turns True."""
    from latentstudio.identity.refine import RefineConfig, refine
    from latentstudio.identity.train import Nets

    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 1000:
        raise IdentityError(f"refine steps must be a whole number from 1 to 1000, got {steps!r}")
    m = models
    c, b = _code(code, "code"), _code(attribute_code, "attribute_code")
    if identity_embedding is not None:
        target = _descriptor(identity_embedding, "identity_embedding")
    elif identity_code is not None:
        target = m.embedding(_code(identity_code, "identity_code"))
    else:
        raise IdentityError("refine needs the identity face: a code or a descriptor")
    nets = Nets(m.generator, m.identity_net, m.landmark_net)
    with m.generator.lock:  # type: ignore[attr-defined]
        out = refine(c, target, b, nets, RefineConfig(steps=steps), progress=progress, cancelled=cancelled)
    return out + m.lock_offset(out, b) if lock else out
