"""The generator API used by everything else: seeds → z → w → W+ → images, CPU or CUDA.

>>> g = Generator.load("cpu")
>>> w = g.map(g.sample_z(seed=7), psi=0.7)            # (1,512)
>>> img = g.synthesize(w, size=256)                    # (1,3,256,256) in [-1,1]
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor

from latentstudio.codes import LatentError
from latentstudio.safety import MAX_LATENT_ABS
from latentstudio.models.fetch import require
from latentstudio.models.fast import FastSynthesis
from latentstudio.models.mobilestylegan import NUM_SLOTS, W_DIM, Mapping, Synthesis
from latentstudio.models.preview import PREVIEW_SIZES, PreviewHeads, load_preview_heads

SIZES = (128, 256, 512, 1024)


def pick_device(device: str | None = None) -> torch.device:
    """``None``/"auto" → CUDA when present, else CPU; "cuda" without a GPU is an error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA device is available; use --device cpu")
    return torch.device(device)


def as_w_plus(code: Tensor | np.ndarray) -> Tensor:
    """Accept w (512,), (N,512) or W+ (23,512), (N,23,512); return (N,23,512) float32.

    Raises LatentError on any other shape, on NaN/inf, or on values beyond ±MAX_LATENT_ABS.
    """
    t = torch.as_tensor(np.asarray(code) if isinstance(code, np.ndarray) else code)
    if not t.is_floating_point():
        raise LatentError(f"latent code must be floating point, got {t.dtype}")
    if t.shape[-1:] != (W_DIM,) or t.dim() not in (1, 2, 3):
        raise LatentError(f"latent code must have shape (512,), (23,512) or (N,23,512); got {tuple(t.shape)}")
    if t.dim() == 1:
        t = t[None, None].expand(1, NUM_SLOTS, W_DIM)
    elif t.dim() == 2:
        t = t[None] if t.shape[0] == NUM_SLOTS else t[:, None].expand(-1, NUM_SLOTS, W_DIM)
    elif t.shape[1] != NUM_SLOTS:
        raise LatentError(f"W+ code must have {NUM_SLOTS} slots, got {t.shape[1]}")
    if not torch.isfinite(t).all():
        raise LatentError("latent code contains NaN or infinite values")
    top = float(t.detach().abs().max())
    if top > MAX_LATENT_ABS:  # not a face: the generator renders black or NaN from such codes
        raise LatentError(f"latent code values up to {top:.3g} are out of range (at most ±{MAX_LATENT_ABS:g})")
    return t.float()


class Generator:
    """MobileStyleGAN FFHQ 1024: mapping, truncation, W+ synthesis at 256/512/1024."""

    def __init__(self, mapping: Mapping, synthesis: Synthesis, w_avg: Tensor,
                 heads: PreviewHeads | None, device: torch.device) -> None:
        self.device = device
        self.mapping = mapping.to(device).eval().requires_grad_(False)
        self.synthesis = synthesis.to(device).eval().requires_grad_(False)
        self.w_avg = w_avg.to(device)
        self.heads = heads.to(device).eval().requires_grad_(False) if heads is not None else None
        self.lock = threading.Lock()  # one render at a time per generator (worker threads)
        self._fast: tuple[tuple[int, ...], FastSynthesis] | None = None
        self._fast_lock = threading.Lock()

    @classmethod
    def load(cls, device: str | None = "cpu", folder: Path | None = None) -> "Generator":
        folder = folder or require("mobilestylegan")
        mapping, synthesis = Mapping(), Synthesis()
        mapping.load_state_dict(load_file(str(folder / "mapping.safetensors")))
        synthesis.load_state_dict(load_file(str(folder / "synthesis.safetensors")))
        w_avg = load_file(str(folder / "w_avg.safetensors"))["w_avg"]
        return cls(mapping, synthesis, w_avg, load_preview_heads(), pick_device(device))

    # ----------------------------------------------------------------- latents
    @staticmethod
    def sample_z(seed: int, n: int = 1) -> Tensor:
        """z for seeds seed … seed+n-1 (each seed gives the same face whatever the batch): (n,512)."""
        return torch.stack([torch.randn(W_DIM, generator=torch.Generator().manual_seed(seed + i))
                            for i in range(n)])

    @torch.no_grad()
    def map(self, z: Tensor, psi: float = 1.0) -> Tensor:
        """z (n,512) → w (n,512), truncated towards w_avg by ψ."""
        w = self.mapping(z.to(self.device).float())
        return self.truncate(w, psi)

    def truncate(self, w: Tensor, psi: float) -> Tensor:
        return self.w_avg + psi * (w - self.w_avg)

    def seed_w(self, seed: int, psi: float = 0.7) -> Tensor:
        """The W code of a seeded sample: (512,)."""
        return self.map(self.sample_z(seed), psi)[0]

    # ----------------------------------------------------------------- images
    def synthesize(self, code: Tensor | np.ndarray, size: int = 1024, clip: bool = True,
                   grad: bool = False) -> Tensor:
        """Render w (n,512) or W+ (n,23,512) → (n,3,size,size) in [-1,1] (clipped unless clip=False).

        size 1024 runs the full network; 512, 256 and 128 stop after block 6 / 5 / 4 and use the
        distilled preview heads (far cheaper than downscaling a full render).
        """
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size}")
        w_plus = as_w_plus(code).to(self.device)
        with torch.set_grad_enabled(grad):
            img = self.render(w_plus, size)
        return img.clamp(-1, 1) if clip else img

    def predictor_images(self, codes: Tensor | np.ndarray, full: bool = True, size: int = 256) -> np.ndarray:
        """W+ codes (n,23,512) → (n,size,size,3) uint8, the images the predictors read.

        ``full``: the full 1024² network's renders, the face the user exports, as 8-bit images
        area-reduced to ``size`` (what the predictors make of a 1024² image:
        ``edit.predictors.working_images``); one code at a time, since a 1024² batch holds n
        full-size feature maps. Else the ``size`` preview route, in one batch: cheaper but
        distilled, and dlib reads real inversions and damaged faces on it a few pixels off
        (bench/RESULTS.md)."""
        import cv2

        w_plus = as_w_plus(codes)
        if not full:
            return to_uint8(self.synthesize(w_plus, size=size))
        return np.stack([cv2.resize(to_uint8(self.synthesize(c[None], size=1024))[0], (size, size),
                                    interpolation=cv2.INTER_AREA) for c in w_plus])

    def fast(self) -> FastSynthesis | None:
        """The frozen-weight twin of the synthesis network (``models.fast``), rebuilt whenever a
        weight changed in place; None on CUDA (it is not measured there) and while any synthesis
        or head weight requires a gradient (pivotal tuning trains them: the twin's copies would
        not)."""
        if self.device.type != "cpu":
            return None
        params = [*self.synthesis.parameters(), *(self.heads.parameters() if self.heads is not None else ())]
        if any(p.requires_grad for p in params):
            return None
        key = tuple(p._version for p in params) + tuple(id(p) for p in params)
        with self._fast_lock:
            if self._fast is None or self._fast[0] != key:
                self._fast = (key, FastSynthesis(self.synthesis, self.heads))
            return self._fast[1]

    def render(self, w_plus: Tensor, size: int = 1024) -> Tensor:
        """The networks alone: W+ (n,23,512) float32 on this device → (n,3,size,size), unclipped,
        autograd as the caller has it (to the code, and to the weights when they train). The twin
        (``fast``) where there is one, else the reference modules. No checks of the code's values
        (they would wait for the GPU, which a CUDA graph capture forbids): ``synthesize`` is the
        checked entry point."""
        fast = self.fast()
        return self.reference(w_plus, size) if fast is None else fast.forward(w_plus, size)

    def reference(self, w_plus: Tensor, size: int = 1024) -> Tensor:
        """``render`` through the readable reference modules (``mobilestylegan``, preview heads)."""
        if size == 1024:
            return self.synthesis(w_plus)
        if self.heads is None or size not in self.heads.available:
            raise RuntimeError(f"no {size}² preview head (assets/preview_heads.safetensors)")
        return self.heads(self.synthesis.features(w_plus, PREVIEW_SIZES[size]), size)

    def tail_from(self, w_plus: Tensor, first_block: int) -> Callable[[Tensor], Tensor]:
        """The coarse blocks' features of ``w_plus`` (1,23,512), computed once without autograd →
        f(code) = the 1024² render of ``code`` through blocks ``first_block`` … and the to-image
        layer only (reads slots ``1 + 3·first_block`` … 22 of code; autograd to them)."""
        fast = self.fast()
        net = self.synthesis if fast is None else fast
        with torch.no_grad():
            features = net.features(w_plus, first_block)
        return lambda code: net.tail(features, code, first_block)


def to_uint8(img: Tensor) -> np.ndarray:
    """(n,3,H,W) in [-1,1] → (n,H,W,3) uint8 RGB."""
    x = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # C order: dlib misreads strided arrays


def resize(img: Tensor, size: int) -> Tensor:
    """(N,C,S,S) → (N,C,size,size): area filter when shrinking, bilinear when enlarging."""
    if img.shape[-1] == size:
        return img
    shrink = img.shape[-1] > size
    return F.interpolate(img, size=(size, size), mode="area" if shrink else "bilinear",
                         align_corners=None if shrink else False)


def from_uint8(rgb: np.ndarray) -> Tensor:
    """(H,W,3) or (n,H,W,3) uint8 → (n,3,H,W) float in [-1,1]."""
    a = rgb[None] if rgb.ndim == 3 else rgb
    return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1
