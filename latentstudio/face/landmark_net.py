"""A small differentiable landmark regressor for FFHQ-aligned renders (ours, trained on generated faces).

dlib's 68-point predictor is a cascade of regression trees: exact enough to measure, useless as a
loss. This CNN was distilled from it on generated faces (``bench/fit_landmark_net.py``): the input
is an aligned face, the output dlib's 68 points as fractions of the image side. It is used as the
landmark loss of the identity mapper's training and of ``transfer --refine``; measurements stay on
dlib itself.

    image (N, 3, S, S) in [-1, 1] ─► area-resize to 128² ─► 5 stride-2 conv stages
    (24, 48, 96, 192, 256 channels, 3×3, LeakyReLU 0.2, each but the first followed by a
    stride-1 conv; 128² → 4²) ─► FC 4096 → 512 → 136
    ─► + mean shape ─► (N, 68, 2) fractions of the side

Weight file: safetensors with the module's tensors and metadata ``{"format":
"latentstudio-landmarks", "version": "1"}`` (`assets/landmark_net.safetensors`, ~10 MB).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

FORMAT, VERSION = "latentstudio-landmarks", "1"
INPUT = 128
ASSET = Path(__file__).resolve().parents[2] / "assets" / "landmark_net.safetensors"


class LandmarkNetError(ValueError):
    """A missing or damaged landmark-net weight file."""


def _stage(c_in: int, c_out: int, refine: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.LeakyReLU(0.2)]
    if refine:
        layers += [nn.Conv2d(c_out, c_out, 3, 1, 1), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


def conv_trunk(chans: tuple[int, ...] = (3, 24, 48, 96, 192, 256)) -> nn.Sequential:
    """Five stride-2 stages (all but the first with a refining conv): (N, 3, 128, 128) →
    (N, 256, 4, 4). Shared with the inversion encoder (``latentstudio.encoder``)."""
    return nn.Sequential(*(_stage(a, b, refine=i > 0) for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))))


class LandmarkNet(nn.Module):
    """Aligned faces (N, 3, S, S) in [-1, 1] → dlib's 68 landmarks (N, 68, 2) as fractions of S."""

    def __init__(self) -> None:
        super().__init__()
        self.features = conv_trunk()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(256 * 4 * 4, 512), nn.LeakyReLU(0.2),
                                  nn.Linear(512, 136))
        self.register_buffer("mean_shape", torch.full((136,), 0.5))

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise LandmarkNetError(f"expected images (N, 3, S, S), got {tuple(images.shape)}")
        from latentstudio.models.generator import resize

        out = self.head(self.features(resize(images, INPUT))) * 0.1 + self.mean_shape
        return out.view(-1, 68, 2)


def save_landmark_net(net: LandmarkNet, path: str | Path, info: dict[str, str] | None = None) -> None:
    """Write the weights atomically (safetensors)."""
    from latentstudio.atomic import save_module

    save_module(path, net, {"format": FORMAT, "version": VERSION, **{k: str(v) for k, v in (info or {}).items()}})


def load_landmark_net(device: str | torch.device = "cpu", path: str | Path = ASSET) -> LandmarkNet:
    """Read the shipped (or given) weights; LandmarkNetError when missing or damaged."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise LandmarkNetError(f"{p}: no landmark-net weights")
    try:
        with safe_open(str(p), "pt") as f:
            meta = dict(f.metadata() or {})
        if meta.get("format") != FORMAT:
            raise LandmarkNetError(f"{p}: not a landmark-net file")
        net = LandmarkNet()
        net.load_state_dict(load_file(str(p)))
    except LandmarkNetError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors / load_state_dict raise several types
        raise LandmarkNetError(f"{p}: damaged landmark-net file ({exc})") from exc
    return net.eval().requires_grad_(False).to(device)
