"""The inversion encoder: an FFHQ-aligned face → a first guess of its W+ code (23×512).

A small CNN in the spirit of e4e / pSp (Tov et al. 2021, Richardson et al. 2021), ours and
trained on generated faces whose codes are known (``bench/fit_encoder.py``: single-w samples and
style mixes at ψ 0.5–1, rendered at 256² and reduced to 128², with blur, noise and JPEG-like
degradations so that upscaled photos look familiar). Like e4e it predicts one w plus per-slot
offsets; the offsets go through a rank-128 bottleneck, so the guess stays near W, where the
edit boundaries were trained. It is a starting point: the optimisation of
:mod:`latentstudio.invert` refines it (the ``fast`` preset starts here), and the app shows it the
moment a face is chosen (``photo.first_guess``).

    image (N, 3, S, S) in [-1, 1] ─► area-resize to 128² ─► 5 stride-2 conv stages
    (24, 48, 96, 192, 256 channels; as ``face.landmark_net``; 128² → 4²) ─► FC 4096 → 512
    ─┬► w:      FC 512 → 512                 ─┐
     └► deltas: FC 512 → 128 → 23·512         ├► W+ = w_mean + w_std · (w + deltas)   (N, 23, 512)

>>> enc = load_encoder()            # assets/encoder.safetensors
>>> code = enc.guess(aligned)       # (S,S,3) uint8 → (23,512) float32

Weight file: safetensors with the module's tensors (``w_mean`` and ``w_std`` are buffers) and
metadata ``{"format": "latentstudio-encoder", "version": "2", …}`` (how it was trained).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from latentstudio.face.landmark_net import conv_trunk
from latentstudio.latent import NUM_SLOTS, W_DIM

ASSET = Path(__file__).resolve().parent.parent / "assets" / "encoder.safetensors"
FORMAT, VERSION = "latentstudio-encoder", "2"
INPUT = 128
RANK = 128


class EncoderError(Exception):
    """The encoder file is missing, damaged or of another format."""


class Encoder(nn.Module):
    """Aligned faces (N, 3, S, S) in [-1, 1] → W+ codes (N, 23, 512)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = conv_trunk()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(256 * 4 * 4, 512), nn.LeakyReLU(0.2))
        self.w = nn.Linear(512, W_DIM)
        self.deltas = nn.Sequential(nn.Linear(512, RANK), nn.Linear(RANK, NUM_SLOTS * W_DIM))
        self.register_buffer("w_mean", torch.zeros(W_DIM))
        self.register_buffer("w_std", torch.ones(W_DIM))

    def normalised(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(N,3,S,S) → the prediction in units of ``w_std`` around ``w_mean``: w (N,512) and
        per-slot offsets (N,23,512) (the training loss is taken here)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise EncoderError(f"expected images (N, 3, S, S), got {tuple(images.shape)}")
        from latentstudio.models.generator import resize

        h = self.trunk(self.features(resize(images, INPUT)))
        return self.w(h), self.deltas(h).view(-1, NUM_SLOTS, W_DIM)

    def forward(self, images: Tensor) -> Tensor:
        w, deltas = self.normalised(images)
        return self.w_mean + self.w_std * (w[:, None] + deltas)

    @torch.no_grad()
    def guess(self, aligned: np.ndarray) -> np.ndarray:
        """(S,S,3) uint8 → (23,512) float32, or (N,S,S,3) → (N,23,512)."""
        arr = np.asarray(aligned)
        if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or arr.shape[-1] != 3 or arr.shape[-2] != arr.shape[-3]:
            raise ValueError(f"expected square (S,S,3) or (N,S,S,3) uint8 faces, got {arr.dtype} {arr.shape}")
        from latentstudio.models.generator import from_uint8

        out = self(from_uint8(np.ascontiguousarray(arr)).to(self.w_mean.device)).float().cpu().numpy()
        return out[0] if arr.ndim == 3 else out


def save_encoder(enc: Encoder, path: str | Path, **meta: str) -> None:
    """Write the weights atomically (safetensors, with ``meta`` as metadata)."""
    from latentstudio.atomic import save_module

    save_module(path, enc, {**{k: str(v) for k, v in meta.items()}, "format": FORMAT, "version": VERSION})


def load_encoder(path: str | Path | None = None) -> Encoder:
    """Read an encoder file (default: the shipped ``ASSET``) onto the CPU; EncoderError when
    missing, damaged or not an encoder. Cached per path and modification time."""
    p = Path(ASSET if path is None else path).resolve()
    return _load(str(p), p.stat().st_mtime_ns if p.is_file() else 0)


@functools.lru_cache(maxsize=2)
def _load(path: str, mtime_ns: int) -> Encoder:
    from safetensors import safe_open

    if not Path(path).is_file():
        raise EncoderError(f"{path}: no encoder weights (train them with bench/fit_encoder.py)")
    try:
        with safe_open(path, "pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types on damaged files
        raise EncoderError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise EncoderError(f"{path}: not a LatentStudio encoder file ({json.dumps(meta)[:80]})")
    enc = Encoder()
    try:
        enc.load_state_dict(tensors)
    except RuntimeError as exc:  # missing keys or wrong shapes
        raise EncoderError(f"{path}: incomplete encoder file ({str(exc)[:200]})") from exc
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise EncoderError(f"{path}: non-finite weights")
    return enc.eval().requires_grad_(False)
