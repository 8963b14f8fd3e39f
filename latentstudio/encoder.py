"""A linear encoder: FFHQ-aligned face → a first guess of its w, where inversion starts.

Ridge regression from the face's 32×32 area-reduced RGB pixels (3 072 numbers in [-1, 1]) to
w (512), fitted on generated faces whose w is known (``bench/fit_encoder.py``: the 256² renders
that ``latentstudio boundaries train --keep-images`` caches, ψ = 0.7). At 32² only pose, face
shape, skin, hair and background colours survive, which is exactly what the W phase of the
optimisation is slow to find from the average face: starting there, the same 180 steps (the fast
preset of the time) reach LPIPS 0.15 instead of 0.40 on a face with a hood and a busy background.
But the codes it leads to answer the shipped age edit less, and real photos gain nothing (bench/RESULTS.md), so
inversion uses it only on request (``Preset.start = "encoder"``, ``invert --start encoder``).

>>> enc = load_encoder()            # assets/encoder.safetensors
>>> w0 = enc(aligned)               # (S,S,3) uint8 → (512,) float32

The file holds ``weight`` (3072, 512), ``pixel_mean`` (3072,), ``w_mean`` (512,), float32, and
metadata (format, version, size, ridge, samples, held-out relative error).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from latentstudio.latent import W_DIM

ASSET = Path(__file__).resolve().parent.parent / "assets" / "encoder.safetensors"
FORMAT, VERSION = "latentstudio-linear-encoder", "1"
SIZE = 32


class EncoderError(Exception):
    """The encoder file is missing, damaged or of another format."""


def features(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(N,S,S,3) or (S,S,3) uint8 aligned faces → (N, 3·size²) float64 in [-1, 1] (area filter)."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3 or arr.shape[1] != arr.shape[2]:
        raise ValueError(f"expected square (N,S,S,3) uint8 faces, got {arr.dtype} {arr.shape}")
    from latentstudio.models.generator import resize

    x = resize(torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).double(), size)
    return (x.flatten(1) / 127.5 - 1.0).numpy()


@dataclass(frozen=True)
class LinearEncoder:
    """w ≈ (features(face) − pixel_mean) @ weight + w_mean."""

    weight: np.ndarray  # (3·size², 512)
    pixel_mean: np.ndarray  # (3·size²,)
    w_mean: np.ndarray  # (512,)
    size: int = SIZE
    info: dict[str, str] = field(default_factory=dict)

    def __call__(self, aligned: np.ndarray) -> np.ndarray:
        """(S,S,3) uint8 → (512,) float32, or (N,S,S,3) → (N,512)."""
        x = features(aligned, self.size)
        w = ((x - self.pixel_mean) @ self.weight + self.w_mean).astype(np.float32)
        return w[0] if np.asarray(aligned).ndim == 3 else w


def fit_encoder(images: np.ndarray, w: np.ndarray, *, ridge: float = 10.0, size: int = SIZE,
                held_out: int = 500) -> LinearEncoder:
    """Fit on (N,S,S,3) uint8 faces and their (N,512) w; the last ``held_out`` are only scored.

    ``info["relative_error"]``: mean ||ŵ − w||² / mean ||w̄ − w||² on the held-out faces
    (1 = no better than always answering the mean w).
    """
    if len(images) != len(w) or len(images) <= held_out + 10:
        raise ValueError(f"need matching images and codes, more than {held_out + 10}; got {len(images)}, {len(w)}")
    x = np.concatenate([features(images[i:i + 256], size) for i in range(0, len(images), 256)])
    w = np.asarray(w, np.float64)
    tr = slice(0, len(x) - held_out)
    mx, mw = x[tr].mean(0), w[tr].mean(0)
    xc = x[tr] - mx
    weight = np.linalg.solve(xc.T @ xc + ridge * np.eye(x.shape[1]), xc.T @ (w[tr] - mw))
    pred = (x[-held_out:] - mx) @ weight + mw
    rel = float(np.sum((pred - w[-held_out:]) ** 2) / np.sum((mw - w[-held_out:]) ** 2))
    info = {"size": str(size), "ridge": f"{ridge:g}", "samples": str(len(x) - held_out),
            "held_out": str(held_out), "relative_error": f"{rel:.4f}"}
    return LinearEncoder(weight.astype(np.float32), mx.astype(np.float32), mw.astype(np.float32), size, info)


def save_encoder(enc: LinearEncoder, path: str | Path, **meta: str) -> None:
    """Write atomically as safetensors (tensors + metadata)."""
    from safetensors.numpy import save

    from latentstudio.atomic import atomic_write

    info = {k: str(v) for k, v in {**enc.info, **meta, "format": FORMAT, "version": VERSION}.items()}
    blob = save({"weight": enc.weight, "pixel_mean": enc.pixel_mean, "w_mean": enc.w_mean}, metadata=info)
    atomic_write(path, lambda f: f.write(blob))


def load_encoder(path: str | Path | None = None) -> LinearEncoder:
    """Read an encoder file (default: the shipped ``ASSET``); EncoderError when missing, damaged
    or not an encoder. Cached per path and modification time."""
    p = Path(ASSET if path is None else path).resolve()
    return _load(str(p), p.stat().st_mtime_ns if p.is_file() else 0)


@functools.lru_cache(maxsize=2)
def _load(path: str, mtime_ns: int) -> LinearEncoder:
    from safetensors import safe_open

    if not Path(path).is_file():
        raise EncoderError(f"{path}: no encoder weights (fit them with bench/fit_encoder.py)")
    try:
        with safe_open(path, "np") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types on damaged files
        raise EncoderError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise EncoderError(f"{path}: not a LatentStudio encoder file ({json.dumps(meta)[:80]})")
    try:
        size = int(meta["size"])
        enc = LinearEncoder(tensors["weight"], tensors["pixel_mean"], tensors["w_mean"], size, meta)
    except (KeyError, ValueError) as exc:
        raise EncoderError(f"{path}: incomplete encoder file ({exc})") from exc
    n = 3 * size * size
    if enc.weight.shape != (n, W_DIM) or enc.pixel_mean.shape != (n,) or enc.w_mean.shape != (W_DIM,):
        raise EncoderError(f"{path}: tensor shapes {enc.weight.shape}, {enc.pixel_mean.shape}, "
                           f"{enc.w_mean.shape} do not fit a {size}² encoder")
    if not all(np.isfinite(t).all() for t in (enc.weight, enc.pixel_mean, enc.w_mean)):
        raise EncoderError(f"{path}: non-finite weights")
    return enc
