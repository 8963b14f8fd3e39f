"""The identity mapper: (identity code A, attribute code B) → a W+ code that is A's person with B's
pose, expression, lighting, hair and background. Both inputs are W+ codes (23, 512), in particular
codes of inverted photos.

Why this form (measured on real photos, ``bench/RESULTS.md`` "Identity transfer on real photos"):
an inverted photo keeps its identity in the per-slot detail of its code, so a mapper that adds a
small offset to B's code (the previous design, after Nitzan et al. 2020) gives back B's person.
Here the output is B plus a learned linear map of the whole difference A − B, slot by slot:

    d    = (A − B) − ((A − B)·K)·Kᵀ                     (N, 23, 512); K (512, k): orthonormal
                                                        basis of attribute boundaries whose
                                                        components always stay B's (expression)
    g    = ((d · U) ⊙ σ(gate)) · Uᵀ                     per slot, on W's principal axes U (512, 512),
                                                        one learned gate per slot and band of axes
    out  = B + P(g + Σᵣ ⟨g, downᵣ⟩ · upᵣ)               a learned rank-R correction across slots
                                                        (down, up: (R, 23, 512)); P removes the
                                                        components along K again

The gates decide, per slot and band of axes, whether a difference is identity (taken from A) or
attribute (kept from B); the low-rank correction removes what the gated difference would still do
to the pose, the mouth and the face outline. Because the map is linear in d, transfer(X, X) = X
exactly and the panel's amounts interpolate exactly. Everything is trained through the generator
with the real identity loss (dlib's ResNet on the render), a landmark loss towards B (our landmark
net, distilled from dlib) and a background loss towards B (``latentstudio.identity.train``).

Weight file: safetensors with ``basis`` (512, 512), ``gate`` (23, K), ``down`` / ``up``
(R, 23, 512) and metadata ``{"format": "latentstudio-mapper", "version": "2", "config": json, …}``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from latentstudio.latent import NUM_SLOTS, W_DIM

FORMAT = "latentstudio-mapper"
VERSION = "2"
ASSET = Path(__file__).resolve().parents[2] / "assets" / "mapper.safetensors"


class MapperError(ValueError):
    """A missing, damaged or incompatible mapper weight file, or bad mapper input."""


@dataclass(frozen=True)
class MapperConfig:
    """``bands``: how many equal bands the 512 principal axes are split into (one gate each per
    slot); ``rank``: rank of the cross-slot correction (0: none)."""

    bands: int = 16
    rank: int = 32
    keep: int = 0  # number of attribute directions always kept from B (the ``keep`` basis)

    def __post_init__(self) -> None:
        if self.bands < 1 or W_DIM % self.bands:
            raise MapperError(f"bands must divide {W_DIM}, got {self.bands}")
        if not 0 <= self.rank <= 512:
            raise MapperError(f"rank must be in 0..512, got {self.rank}")


class Mapper(nn.Module):
    """(A, B) W+ codes (N, 23, 512) → W+ (N, 23, 512). See the module docstring."""

    def __init__(self, config: MapperConfig = MapperConfig(), basis: Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("basis", basis.float().clone() if basis is not None else torch.eye(W_DIM))
        self.gate = nn.Parameter(torch.zeros(NUM_SLOTS, config.bands))
        self.down = nn.Parameter(torch.randn(config.rank, NUM_SLOTS, W_DIM) / (NUM_SLOTS * W_DIM) ** 0.5)
        self.up = nn.Parameter(torch.zeros(config.rank, NUM_SLOTS, W_DIM))
        self.register_buffer("keep", torch.zeros(W_DIM, config.keep))

    def gates(self) -> Tensor:
        """σ(gate) expanded to every axis → (23, 512)."""
        return torch.sigmoid(self.gate).repeat_interleave(W_DIM // self.config.bands, dim=1)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        for name, x in (("identity", a), ("attribute", b)):
            if x.dim() != 3 or x.shape[1:] != (NUM_SLOTS, W_DIM):
                raise MapperError(f"{name} codes must be (N, 23, 512), got {tuple(x.shape)}")
        if a.shape[0] != b.shape[0]:
            raise MapperError(f"identity and attribute batches differ: {a.shape[0]} vs {b.shape[0]}")
        d = a - b
        if self.config.keep:  # B's own components along the kept attribute directions
            d = d - (d @ self.keep) @ self.keep.T
        g = (self.gates() * (d @ self.basis)) @ self.basis.T
        if self.config.rank:
            g = g + torch.einsum("nr,rsd->nsd", torch.einsum("nsd,rsd->nr", g, self.down), self.up)
        if self.config.keep:  # and none of the change along them
            g = g - (g @ self.keep) @ self.keep.T
        return b + g


# ----------------------------------------------------------------------------- files
def save_mapper(mapper: Mapper, path: str | Path, info: dict[str, str] | None = None) -> None:
    """Write the mapper's tensors and config atomically (safetensors)."""
    from latentstudio.atomic import save_module

    meta = {"format": FORMAT, "version": VERSION, "config": json.dumps(asdict(mapper.config))}
    save_module(path, mapper, {**meta, **{k: str(v) for k, v in (info or {}).items()}})


def mapper_info(path: str | Path = ASSET) -> dict[str, str]:
    """The metadata stored in a mapper file (format, version, config, training notes)."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise MapperError(f"{p}: no mapper weights (train them with `latentstudio identity train`)")
    try:
        with safe_open(str(p), "pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types on damaged files
        raise MapperError(f"{p}: not a readable safetensors file ({exc})") from exc


def load_mapper(path: str | Path = ASSET, device: str | torch.device = "cpu") -> Mapper:
    """Read a mapper weight file (MapperError when missing, damaged or of another format)."""
    from safetensors.torch import load_file

    p = Path(path)
    meta = mapper_info(p)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise MapperError(f"{p}: not a LatentStudio mapper file of version {VERSION} (format "
                          f"{meta.get('format')!r}, version {meta.get('version')!r})")
    try:
        cfg = json.loads(meta["config"])
        config = MapperConfig(bands=int(cfg["bands"]), rank=int(cfg["rank"]), keep=int(cfg.get("keep", 0)))
        mapper = Mapper(config)
        mapper.load_state_dict(load_file(str(p)))
    except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise MapperError(f"{p}: damaged mapper file ({exc})") from exc
    if not all(torch.isfinite(t).all() for t in mapper.state_dict().values()):
        raise MapperError(f"{p}: damaged mapper file (non-finite values)")
    return mapper.eval().requires_grad_(False).to(device)


def pca_basis(w: np.ndarray) -> Tensor:
    """Principal axes of sampled w (N, 512), strongest first, as the columns of (512, 512)."""
    centred = w - w.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=True)  # (512, 512) even from few samples
    return torch.from_numpy(np.ascontiguousarray(vt.T)).float()
