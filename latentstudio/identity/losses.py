"""Losses of the mapper training: MS-SSIM + L1 pixel loss, latent discriminator, surrogates.

``ms_ssim`` is a small implementation of multi-scale SSIM (Wang et al. 2003: 11-tap Gaussian
window σ 1.5, K1 0.01, K2 0.03, the five published scale weights, contrast-structure terms on the
first four scales and luminance-contrast-structure on the last, 2×2 average pooling between
scales); ``pytorch-msssim`` is not installed here. Values are computed on images mapped from
[-1, 1] to [0, 1]; negative contrast-structure terms are clamped to 0 before the power (as the
published implementations do to keep the product defined).

The latent discriminator (paper: on w, non-saturating loss + R1) is a small MLP on standardised w.
The landmark and identity *surrogates* are MLPs from w to dlib's measurements of the rendered face
(see ``latentstudio.identity.train``): differentiable stand-ins for dlib's landmarks, and a cheap
identity estimate for the latent stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentstudio.identity.mapper import W_DIM, mlp

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
PIXEL_MIX = 0.84  # paper: 0.84 · (1 − MS-SSIM) + 0.16 · L1


def _gaussian(size: int = 11, sigma: float = 1.5, device: torch.device | None = None) -> Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _blur(x: Tensor, g: Tensor) -> Tensor:
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_parts(a: Tensor, b: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Mean luminance-contrast-structure and contrast-structure maps of [0,1] images → (N,), (N,)."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = _blur(a, g), _blur(b, g)
    saa = _blur(a * a, g) - mu_a ** 2
    sbb = _blur(b * b, g) - mu_b ** 2
    sab = _blur(a * b, g) - mu_a * mu_b
    cs = (2 * sab + c2) / (saa + sbb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
    return (lum * cs).mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Single-scale SSIM of images (N,3,H,W) in [-1,1] → (N,)."""
    g = _gaussian(device=a.device)
    return _ssim_parts((a + 1) / 2, (b + 1) / 2, g)[0]


def ms_ssim(a: Tensor, b: Tensor) -> Tensor:
    """Multi-scale SSIM of images (N,3,H,W) in [-1,1], H, W ≥ 176 → (N,) in [0, 1]."""
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"ms_ssim needs two equal (N,3,H,W) batches, got {tuple(a.shape)}, {tuple(b.shape)}")
    if min(a.shape[-2:]) < 11 * 2 ** (len(MS_SSIM_WEIGHTS) - 1):
        raise ValueError(f"ms_ssim needs images of at least 176 px, got {tuple(a.shape[-2:])}")
    g = _gaussian(device=a.device)
    x, y = (a + 1) / 2, (b + 1) / 2
    out = torch.ones(a.shape[0], device=a.device)
    for i, weight in enumerate(MS_SSIM_WEIGHTS):
        full, cs = _ssim_parts(x, y, g)
        last = i == len(MS_SSIM_WEIGHTS) - 1
        out = out * (full if last else cs).clamp_min(0) ** weight
        if not last:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out


def pixel_loss(a: Tensor, b: Tensor) -> Tensor:
    """Paper's reconstruction loss 0.84·(1 − MS-SSIM) + 0.16·L1 (L1 on [0,1] pixels) → (N,)."""
    l1 = ((a - b).abs() / 2).mean(dim=(1, 2, 3))
    return PIXEL_MIX * (1 - ms_ssim(a, b)) + (1 - PIXEL_MIX) * l1


# ----------------------------------------------------------------------------- latent nets
class LatentNet(nn.Module):
    """An MLP on standardised w: (N,512) → (N,out). Used for the discriminator and surrogates.

    ``out_mean`` / ``out_scale`` de-standardise the output (surrogates regress standardised
    targets); the discriminator keeps 0 / 1.
    """

    def __init__(self, out: int, hidden: int = 512, depth: int = 2,
                 w_mean: Tensor | None = None, w_scale: Tensor | None = None) -> None:
        super().__init__()
        self.net = mlp([W_DIM, *([hidden] * depth), out])
        self.register_buffer("w_mean", torch.zeros(W_DIM) if w_mean is None else w_mean.clone().float())
        self.register_buffer("w_scale", torch.ones(()) if w_scale is None else w_scale.clone().float())
        self.register_buffer("out_mean", torch.zeros(out))
        self.register_buffer("out_scale", torch.ones(()))

    def forward(self, w: Tensor) -> Tensor:
        """w (N,512) → (N,out)."""
        return self.net((w - self.w_mean) / self.w_scale) * self.out_scale + self.out_mean


def d_loss(d: nn.Module, real: Tensor, fake: Tensor, r1_gamma: float = 1.0) -> Tensor:
    """Non-saturating discriminator loss on w batches + R1 penalty (γ/2 · E‖∇D(real)‖²) → ()."""
    real = real.detach().requires_grad_(True)
    out_real = d(real)
    loss = F.softplus(-out_real).mean() + F.softplus(d(fake.detach())).mean()
    if r1_gamma > 0:
        (grad,) = torch.autograd.grad(out_real.sum(), real, create_graph=True)
        loss = loss + r1_gamma / 2 * grad.pow(2).sum(1).mean()
    return loss


def g_adv_loss(d: nn.Module, fake: Tensor) -> Tensor:
    """Non-saturating generator (mapper) loss: softplus(−D(fake)) → ()."""
    return F.softplus(-d(fake)).mean()
