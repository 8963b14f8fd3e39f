"""Cheap preview renders: stop the synthesis early and map hidden features straight to pixels.

MobileStyleGAN was trained with a to-image head after every block; the IR kept only the last one.
We distil replacements: after block 4 (512 ch at 64²), block 5 (256 ch at 128²) and block 6
(128 ch at 256²), a 1×1 conv predicts 12 channels that ``pixel_shuffle(2)`` turns into RGB at
128² / 256² / 512². (128² is the drag preview on slow CPUs; it costs about a third of 256².) The heads are fitted
in closed form (ridge least squares) against area-downsampled full 1024² renders and shipped in
``assets/preview_heads.safetensors`` (a few KB).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

PREVIEW_SIZES = {128: 4, 256: 5, 512: 6}  # output size → number of synthesis blocks to run
_HEAD_CHANNELS = {128: 512, 256: 256, 512: 128}
ASSET = Path(__file__).resolve().parents[2] / "assets" / "preview_heads.safetensors"


class PreviewHeads(nn.Module):
    """features (N,C,S/2,S/2) → RGB (N,3,S,S) for S in {256, 512}."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({str(s): nn.Conv2d(c, 12, 1) for s, c in _HEAD_CHANNELS.items()})
        self.available = set(PREVIEW_SIZES)  # sizes whose weights were fitted / loaded

    def forward(self, features: Tensor, size: int) -> Tensor:
        return F.pixel_shuffle(self.heads[str(size)](features), 2)


def load_preview_heads(path: Path = ASSET) -> PreviewHeads | None:
    if not path.is_file():
        return None
    heads = PreviewHeads()
    state = load_file(str(path))
    heads.load_state_dict(state, strict=False)
    heads.available = {s for s in PREVIEW_SIZES if f"heads.{s}.weight" in state}
    return heads


@torch.no_grad()
def fit_preview_heads(synthesis: nn.Module, codes: Callable[[int], Tensor], samples: int,
                      ridge: float = 1e-3, log: Callable[[str], None] = print) -> PreviewHeads:
    """Fit both heads by least squares over ``samples`` W+ codes (``codes(i)`` → (1,23,512))."""
    from latentstudio.models.mobilestylegan import inverse_haar

    stats = {s: (torch.zeros(c + 1, c + 1, dtype=torch.float64),
                 torch.zeros(c + 1, 12, dtype=torch.float64)) for s, c in _HEAD_CHANNELS.items()}
    for i in range(samples):
        w_plus = codes(i)
        feats = {}
        x = synthesis.features(w_plus, 4)
        feats[128] = x
        x = synthesis.blocks[4](x, w_plus[:, 13:16], synthesis.idwt_mix)
        feats[256] = x
        x = synthesis.blocks[5](x, w_plus[:, 16:19], synthesis.idwt_mix)
        feats[512] = x
        x = synthesis.blocks[6](x, w_plus[:, 19:22], synthesis.idwt_mix)
        full = inverse_haar(synthesis.to_image(x, w_plus[:, 22]), synthesis.idwt_mix).clamp(-1, 1)
        for size, f in feats.items():
            target = F.pixel_unshuffle(F.adaptive_avg_pool2d(full, size), 2)  # (1,12,S/2,S/2)
            xs = torch.cat([f[0].flatten(1), torch.ones(1, f.shape[2] * f.shape[3])]).double()
            ys = target[0].flatten(1).double()
            xtx, xty = stats[size]
            xtx += xs @ xs.T
            xty += xs @ ys.T
        if (i + 1) % 10 == 0:
            log(f"preview heads: {i + 1}/{samples} samples")
    heads = PreviewHeads()
    for size, (xtx, xty) in stats.items():
        reg = ridge * torch.diag(xtx).mean() * torch.eye(xtx.shape[0], dtype=torch.float64)
        sol = torch.linalg.solve(xtx + reg, xty)  # (C+1, 12)
        conv = heads.heads[str(size)]
        conv.weight.copy_(sol[:-1].T.float()[:, :, None, None])
        conv.bias.copy_(sol[-1].float())
    return heads


def save_preview_heads(heads: PreviewHeads, path: Path = ASSET, meta: dict[str, str] | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in heads.state_dict().items()}, str(tmp), metadata=meta)
    tmp.replace(path)
