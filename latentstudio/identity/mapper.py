"""The identity mapper network (Nitzan et al. 2020, sized for our codes) and its weight file.

    identity embedding e (128, dlib)  ─┐
                                       ├─ concat (640) ─► MLP 640→1024→1024→512→512 ─► Δ (512)
    attribute code a (512, see below) ─┘          (LeakyReLU 0.2 between layers)

    output W+ = attribute W+ + Δ on every slot in ``slots`` (default all 23)

The attribute code is the attribute source's own latent code (no trained attribute encoder): the
mean of its W+ slots, which for generated faces is their w. The output is a residual on the
attribute W+ code, so "no change" is the starting point (the last layer starts at zero) and the
per-slot detail of an inverted photo's W+ code survives. For generated (W) attribute sources the
output stays a single w broadcast to all slots, as in the paper.

Inputs are standardised with constants stored in the weight file: (e - emb_mean) / emb_scale,
(a - w_mean) / w_scale, and Δ is produced in units of ``w_scale``.

Weight file: safetensors with the MLP tensors (``net.*``), the four normalisation tensors
(``norm.*``) and metadata ``{"format": "latentstudio-mapper", "version": "1", "config": json}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

NUM_SLOTS, W_DIM, EMB_DIM = 23, 512, 128
FORMAT = "latentstudio-mapper"
VERSION = "1"
ASSET = Path(__file__).resolve().parents[2] / "assets" / "mapper.safetensors"


class MapperError(ValueError):
    """A missing, damaged or incompatible mapper weight file, or bad mapper input."""


@dataclass(frozen=True)
class MapperConfig:
    """MLP widths after the 640-d input (the last entry is hidden, then a 512 output layer)."""

    hidden: tuple[int, ...] = (1024, 1024, 512)
    slots: tuple[int, int] = (0, NUM_SLOTS - 1)  # first and last W+ slot that receive Δ

    def __post_init__(self) -> None:
        lo, hi = self.slots
        if not 0 <= lo <= hi <= NUM_SLOTS - 1:
            raise MapperError(f"mapper slots must satisfy 0 <= first <= last <= 22, got {self.slots}")
        if not self.hidden or min(self.hidden) < 1:
            raise MapperError(f"mapper hidden widths must be positive, got {self.hidden}")


def mlp(sizes: list[int], slope: float = 0.2) -> nn.Sequential:
    """Linear layers of ``sizes`` with LeakyReLU(slope) between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers)


@dataclass
class Normalisation:
    """Standardisation constants: w_mean (512,), w_scale (), emb_mean (128,), emb_scale ()."""

    w_mean: Tensor = field(default_factory=lambda: torch.zeros(W_DIM))
    w_scale: Tensor = field(default_factory=lambda: torch.ones(()))
    emb_mean: Tensor = field(default_factory=lambda: torch.zeros(EMB_DIM))
    emb_scale: Tensor = field(default_factory=lambda: torch.ones(()))

    @staticmethod
    def fit(w: np.ndarray, emb: np.ndarray) -> Normalisation:
        """From samples w (N,512) and embeddings (N,128): means and mean per-dimension std."""
        return Normalisation(torch.tensor(w.mean(0), dtype=torch.float32),
                             torch.tensor(float(w.std(0).mean()), dtype=torch.float32),
                             torch.tensor(emb.mean(0), dtype=torch.float32),
                             torch.tensor(float(emb.std(0).mean()), dtype=torch.float32))


class Mapper(nn.Module):
    """(identity embedding, attribute W+) → W+. See the module docstring."""

    def __init__(self, config: MapperConfig = MapperConfig(), norm: Normalisation | None = None) -> None:
        super().__init__()
        self.config = config
        self.net = mlp([EMB_DIM + W_DIM, *config.hidden, W_DIM])
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        norm = norm or Normalisation()
        for name in ("w_mean", "w_scale", "emb_mean", "emb_scale"):
            self.register_buffer(name, getattr(norm, name).float().clone())
        mask = torch.zeros(NUM_SLOTS, 1)
        mask[config.slots[0]:config.slots[1] + 1] = 1.0
        self.register_buffer("slot_mask", mask, persistent=False)

    def delta(self, emb: Tensor, attr_w: Tensor) -> Tensor:
        """emb (N,128), attribute w (N,512) → Δ (N,512) in w units."""
        x = torch.cat([(emb - self.emb_mean) / self.emb_scale, (attr_w - self.w_mean) / self.w_scale], 1)
        return self.net(x) * self.w_scale

    def forward(self, emb: Tensor, attr: Tensor) -> Tensor:
        """emb (N,128); attr W+ (N,23,512) or w (N,512) → W+ (N,23,512)."""
        if emb.dim() != 2 or emb.shape[1] != EMB_DIM:
            raise MapperError(f"identity embeddings must be (N, {EMB_DIM}), got {tuple(emb.shape)}")
        if attr.dim() == 2:
            attr = attr[:, None].expand(-1, NUM_SLOTS, -1)
        if attr.dim() != 3 or attr.shape[1:] != (NUM_SLOTS, W_DIM) or attr.shape[0] != emb.shape[0]:
            raise MapperError(f"attribute codes must be (N, 23, 512) with N = {emb.shape[0]}, "
                              f"got {tuple(attr.shape)}")
        d = self.delta(emb, attr.mean(1))
        return attr + self.slot_mask * d[:, None]


# ----------------------------------------------------------------------------- files
def save_mapper(mapper: Mapper, path: str | Path, info: dict[str, str] | None = None) -> None:
    """Write the mapper's weights, normalisation and config atomically (safetensors)."""
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in mapper.state_dict().items()}
    tensors = {(f"norm.{k}" if not k.startswith("net.") else k): v for k, v in tensors.items()}
    meta = {"format": FORMAT, "version": VERSION, "config": json.dumps(asdict(mapper.config))}
    meta.update({k: str(v) for k, v in (info or {}).items()})
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}-", suffix=".safetensors", dir=p.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a weight file is meant to be shared
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        raise MapperError(f"{p}: not a LatentStudio mapper file (format {meta.get('format')!r}, "
                          f"version {meta.get('version')!r})")
    try:
        cfg = json.loads(meta["config"])
        config = MapperConfig(hidden=tuple(cfg["hidden"]), slots=tuple(cfg["slots"]))
        tensors = load_file(str(p))
        mapper = Mapper(config)
        state = {k.removeprefix("norm."): v for k, v in tensors.items()}
        mapper.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise MapperError(f"{p}: damaged mapper file ({exc})") from exc
    return mapper.eval().requires_grad_(False).to(device)
