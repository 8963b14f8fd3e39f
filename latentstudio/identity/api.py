"""Identity transfer, disentangled blending and de-identification (no Qt).

All codes are W+ (23, 512) float32 numpy arrays ((512,) w codes are accepted and broadcast).
Identity embeddings are dlib descriptors (128,) of the 256² render of a code (cached per code),
or of an aligned photo (``embed_aligned_photo``).

Two forms of the mapper's output, with M(e, a) = a + Δ(e, a) (``latentstudio.identity.mapper``):

* raw:       transfer(A, B) = M(e_A, B) = B + Δ(e_A, B)                    (the paper's output)
* anchored:  transfer(A, B) = B + Δ(e_A, B) − Δ(e_B, B)

The anchored form subtracts what the mapper does when asked for B's own identity, so
transfer(B, B) = B exactly and the mapper's bias cancels. ``blend`` is anchored at both ends:

    e   = (1 − id_alpha) · e_base + id_alpha · e_other
    a   = (1 − attr_alpha) · base + attr_alpha · other
    out = M(e, a) + (1 − attr_alpha) · (base − M(e_base, base)) + attr_alpha · (other − M(e_other, other))

so blend(base, other, 0, 0) = base, blend(base, other, 1, 1) = other, blend(base, other, 1, 0)
= base with other's identity and blend(base, other, 0, 1) = other's attributes with base's identity.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentstudio.identity.mapper import ASSET, EMB_DIM, NUM_SLOTS, W_DIM, Mapper, MapperError, load_mapper

EMBED_SIZE = 256  # render size for identity embeddings of codes
DEID_SEED_BASE = 7_000_000  # de-identification identities: generated faces from these seeds
DEID_PSI = 0.7
_CACHE_SIZE = 64


class IdentityError(MapperError):
    """Bad input to the identity functions (amounts, codes, embeddings)."""


@dataclass
class IdentityModels:
    """The frozen generator, dlib identity net and mapper, plus a per-code embedding cache."""

    generator: object  # latentstudio.models.generator.Generator
    identity_net: object  # latentstudio.face.chip.IdentityNet
    mapper: Mapper

    def __post_init__(self) -> None:
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return self.generator.device  # type: ignore[attr-defined]

    def embedding(self, code: np.ndarray) -> np.ndarray:
        """dlib descriptor (128,) of the 256² render of a W+ code (cached)."""
        from latentstudio.models.generator import from_uint8, to_uint8

        key = hashlib.sha1(np.ascontiguousarray(code, np.float32).tobytes()).hexdigest()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        g = self.generator
        with g.lock, torch.no_grad():  # type: ignore[attr-defined]
            img = g.synthesize(torch.from_numpy(code[None]), size=EMBED_SIZE)  # type: ignore[attr-defined]
            # the training faces were measured on uint8 renders: quantise the same way
            emb = self.identity_net.embed_aligned(from_uint8(to_uint8(img)))  # type: ignore[attr-defined]
        out = emb[0].cpu().numpy().astype(np.float32)
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return out

    def delta(self, emb: np.ndarray, attr: np.ndarray) -> np.ndarray:
        """Δ(e, a) for one embedding (128,) and W+ code (23,512) → (23,512) (0 outside the slots)."""
        with torch.no_grad():
            e = torch.from_numpy(emb[None]).to(self.device)
            a = torch.from_numpy(attr[None]).to(self.device)
            return (self.mapper(e, a) - a)[0].cpu().numpy()


@functools.lru_cache(maxsize=4)
def load_models(device: str | None = None, weights: str | None = None) -> IdentityModels:
    """Load (once per device and weight file) everything the identity functions need."""
    from latentstudio.face.chip import IdentityNet
    from latentstudio.models.generator import Generator

    path = Path(weights) if weights else ASSET
    g = Generator.load(device)
    mapper = load_mapper(path, g.device)  # before the other nets: fails fast when missing
    return IdentityModels(g, IdentityNet.load(g.device), mapper)


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
    arr = np.asarray(code, dtype=np.float32)
    if arr.shape == (W_DIM,):
        arr = np.repeat(arr[None], NUM_SLOTS, 0)
    if arr.shape != (NUM_SLOTS, W_DIM):
        raise IdentityError(f"{name} must be a W+ code (23, 512) or a w code (512,), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise IdentityError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(arr)


def _amount(value: float, name: str, lo: float = 0.0, hi: float = 1.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise IdentityError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(v) or not lo <= v <= hi:
        raise IdentityError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")
    return v


def _embedding(emb: np.ndarray | None, code: np.ndarray, m: IdentityModels, name: str) -> np.ndarray:
    if emb is None:
        return m.embedding(code)
    arr = np.asarray(emb, dtype=np.float32).reshape(-1)
    if arr.shape != (EMB_DIM,) or not np.isfinite(arr).all():
        raise IdentityError(f"{name} must be a finite ({EMB_DIM},) dlib descriptor, got {np.shape(emb)}")
    return arr


def identity_embedding(code: np.ndarray, *, models: IdentityModels | None = None) -> np.ndarray:
    """dlib descriptor (128,) of a code's 256² render."""
    m = models or load_models()
    return m.embedding(_code(code, "code"))


def embed_aligned_photo(aligned_rgb: np.ndarray, *, models: IdentityModels | None = None) -> np.ndarray:
    """dlib descriptor (128,) of an FFHQ-aligned photo crop (S, S, 3) uint8, S ≥ 64."""
    from latentstudio.models.generator import from_uint8

    rgb = np.asarray(aligned_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] != rgb.shape[1] or rgb.dtype != np.uint8:
        raise IdentityError(f"aligned photo must be a square (S, S, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    m = models or load_models()
    with torch.no_grad():
        return m.identity_net.embed_aligned(from_uint8(rgb))[0].cpu().numpy()  # type: ignore[attr-defined]


def transfer(identity_code: np.ndarray, attribute_code: np.ndarray, *, anchored: bool = True,
             identity_embedding: np.ndarray | None = None, models: IdentityModels | None = None) -> np.ndarray:
    """The face of ``identity_code`` with the pose, expression, lighting and hair of
    ``attribute_code`` → W+ (23,512) float32 (forms: see the module docstring).

    ``identity_embedding`` (128,) replaces the identity code's own descriptor (e.g. the descriptor
    of the original photo rather than of its inversion).
    """
    m = models or load_models()
    a = _code(attribute_code, "attribute_code")
    ident = _code(identity_code, "identity_code") if identity_embedding is None else None
    e = _embedding(identity_embedding, ident, m, "identity_embedding")  # type: ignore[arg-type]
    out = a + m.delta(e, a)
    if anchored:
        out = out - m.delta(m.embedding(a), a)
    return out.astype(np.float32)


def blend(base: np.ndarray, other: np.ndarray, id_alpha: float, attr_alpha: float, *,
          models: IdentityModels | None = None) -> np.ndarray:
    """Move identity and attributes independently from ``base`` towards ``other`` → W+ (23,512).

    ``id_alpha`` / ``attr_alpha`` in [0, 1]: how much of ``other``'s identity / attributes.
    """
    ia, aa = _amount(id_alpha, "id_alpha"), _amount(attr_alpha, "attr_alpha")
    b, o = _code(base, "base"), _code(other, "other")
    if ia == 0.0 and aa == 0.0:
        return b
    m = models or load_models()
    e_b, e_o = m.embedding(b), m.embedding(o)
    e = (1 - ia) * e_b + ia * e_o
    a = (1 - aa) * b + aa * o
    out = a + m.delta(e, a)
    out -= (1 - aa) * m.delta(e_b, b) + aa * m.delta(e_o, o)
    return out.astype(np.float32)


def random_identity(seed: int | None, *, models: IdentityModels | None = None) -> np.ndarray:
    """The descriptor (128,) of a random generated face (seeded), or the mean identity (None)."""
    m = models or load_models()
    if seed is None:
        return m.mapper.emb_mean.cpu().numpy().astype(np.float32)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise IdentityError(f"seed must be a non-negative integer or None, got {seed!r}")
    g = m.generator
    w = g.seed_w(DEID_SEED_BASE + int(seed), DEID_PSI).cpu().numpy()  # type: ignore[attr-defined]
    return m.embedding(_code(w, "seed code"))


def deidentify(code: np.ndarray, strength: float = 1.0, seed: int | None = 0, *,
               models: IdentityModels | None = None) -> np.ndarray:
    """Replace the identity of ``code`` by a random one (``seed``; None = the mean identity),
    keeping its attributes → W+ (23,512). ``strength`` in [0, 1]: 0 = unchanged, 1 = full."""
    s = _amount(strength, "strength")
    c = _code(code, "code")
    if s == 0.0:
        return c
    m = models or load_models()
    e_c = m.embedding(c)
    e = (1 - s) * e_c + s * random_identity(seed, models=m)
    return (c + m.delta(e, c) - m.delta(e_c, c)).astype(np.float32)
