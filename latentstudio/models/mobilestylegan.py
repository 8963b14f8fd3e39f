"""MobileStyleGAN (Belousov 2021) for FFHQ 1024², rebuilt from the structure of its OpenVINO IR.

Mapping: z (N,512) → pixel norm → 8 × [FC 512 + bias, leaky ReLU 0.2, ×√2] → w (N,512).

Synthesis, driven by a W+ code (N,23,512), one 512-d style vector per *slot*:

====  ===========================================  =======================
slot  layer                                        features after the layer
====  ===========================================  =======================
0     styled 3×3 conv on the constant 4×4 input    512 × 4²
1+3b  block b: styled inverse-DWT upsample ×2      C_in/4 × (2·r)²
2+3b  block b: styled depthwise-separable conv 1   C_out × (2·r)²
3+3b  block b: styled depthwise-separable conv 2   C_out × (2·r)²
22    styled 1×1 to-image conv (12 wavelet bands)  12 × 512²
====  ===========================================  =======================

with 7 blocks, C_out = 512, 512, 512, 512, 256, 128, 64 and r the input side (4 … 256).
A final inverse Haar DWT turns the 12 bands (3 low-pass + 9 high-pass) into RGB 3 × 1024².

"Styled" here means: style s = (A·w + b)·scale (per input channel), x ← x ⊙ s, then the conv.
The IR carries no demodulation; noise is baked in as constant per-layer maps added before the
bias. Every weight is an explicit named tensor; ``convert.py`` fills them from the IR.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentstudio.latent import NUM_SLOTS, W_DIM

BLOCK_CHANNELS = (512, 512, 512, 512, 256, 128, 64)


class Mapping(nn.Module):
    """z (N,512) → w (N,512): the StyleGAN2 FFHQ config-f mapping network (weights pre-scaled)."""

    def __init__(self, num_layers: int = 8, dim: int = W_DIM) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))

    def forward(self, z: Tensor) -> Tensor:
        """z: (N,512) float → w: (N,512)."""
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for fc in self.fcs:
            x = F.leaky_relu(fc(x), 0.2) * math.sqrt(2.0)
        return x


class Style(nn.Module):
    """Affine map of one W+ slot to per-channel multipliers: (N,512) → (N,C,1,1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.affine = nn.Linear(W_DIM, channels)
        self.register_buffer("scale", torch.ones(()))

    def forward(self, w: Tensor) -> Tensor:
        return (self.affine(w) * self.scale)[:, :, None, None]


class StyledConv(nn.Module):
    """Full 3×3 conv on styled input, + baked noise + bias, leaky ReLU 0.2 (the 4×4 layer)."""

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        self.style = Style(channels)
        self.weight = nn.Parameter(torch.zeros(channels, channels, 3, 3))
        self.noise = nn.Parameter(torch.zeros(1, 1, side, side))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x: (N,C,4,4), w: (N,512) → (N,C,4,4)."""
        x = F.conv2d(x * self.style(w), self.weight, padding=1)
        return F.leaky_relu(x + self.noise + self.bias, 0.2)


class StyledDWConv(nn.Module):
    """Styled depthwise 3×3 + pointwise 1×1 conv, + baked noise + bias, leaky ReLU 0.2."""

    def __init__(self, in_ch: int, out_ch: int, side: int) -> None:
        super().__init__()
        self.style = Style(in_ch)
        self.dw = nn.Parameter(torch.zeros(in_ch, 1, 3, 3))
        self.pw = nn.Parameter(torch.zeros(out_ch, in_ch, 1, 1))
        self.noise = nn.Parameter(torch.zeros(1, 1, side, side))
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x: (N,in_ch,H,W), w: (N,512) → (N,out_ch,H,W) with H = W = side."""
        if torch.is_grad_enabled():
            return self.styled(x * self.style(w))
        # Inference: fold the style into per-sample depthwise kernels (saves a full-size multiply)
        # and finish in place. Same arithmetic up to float rounding.
        n, c, h, wd = x.shape
        kernels = (self.dw[None] * self.style(w)[:, :, :, :, None]).reshape(n * c, 1, 3, 3)
        x = F.conv2d(x.reshape(1, n * c, h, wd), kernels, padding=1, groups=n * c)
        x = F.conv2d(x.reshape(n, c, h, wd), self.pw)
        return F.leaky_relu_(x.add_(self.noise).add_(self.bias), 0.2)

    def styled(self, xs: Tensor) -> Tensor:
        """The layer after its style multiply: xs = x ⊙ s (N,in_ch,H,W) → (N,out_ch,H,W)."""
        x = F.conv2d(F.conv2d(xs, self.dw, padding=1, groups=xs.shape[1]), self.pw)
        return F.leaky_relu(x + self.noise + self.bias, 0.2)


def inverse_haar(x: Tensor, mix: Tensor) -> Tensor:
    """Inverse DWT (one level): (N,4C,H,W) bands → (N,C,2H,2W).

    Channel layout as in the IR: the first C channels are the low-pass band, then C groups of the
    3 high-pass bands (channel c·3+k). ``mix`` (4,4) maps the 4 bands of a coefficient to the
    2×2 output pixels (row-major a·2+b), read from the IR's transposed-conv kernels.
    """
    n, c4, h, w = x.shape
    c = c4 // 4
    bands = torch.cat([x[:, :c, None], x[:, c:].reshape(n, c, 3, h, w)], dim=2)  # (N,C,4,H,W)
    pix = torch.einsum("pb,ncbhw->ncphw", mix.to(x.dtype), bands)  # (N,C,4,H,W), p = a·2+b
    return F.pixel_shuffle(pix.reshape(n, c * 4, h, w), 2)


class StyledIDWTUp(nn.Module):
    """Styled inverse-DWT upsample: (N,C,H,W) → (N,C/4,2H,2W) (no conv, no activation)."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.style = Style(in_ch)

    def forward(self, x: Tensor, w: Tensor, mix: Tensor) -> Tensor:
        return inverse_haar(x * self.style(w), mix)


class Block(nn.Module):
    """One synthesis block: IDWT-up → styled DW conv → styled DW conv (3 W+ slots)."""

    def __init__(self, in_ch: int, out_ch: int, side: int) -> None:
        super().__init__()
        self.up = StyledIDWTUp(in_ch)
        self.conv1 = StyledDWConv(in_ch // 4, out_ch, side)
        self.conv2 = StyledDWConv(out_ch, out_ch, side)

    def forward(self, x: Tensor, w3: Tensor, mix: Tensor) -> Tensor:
        """x: (N,in_ch,r,r), w3: (N,3,512) → (N,out_ch,2r,2r)."""
        x = self.up(x, w3[:, 0], mix)
        x = self.conv1(x, w3[:, 1])
        return self.conv2(x, w3[:, 2])


class ToImage(nn.Module):
    """Styled 1×1 conv to 12 wavelet bands (3 low-pass + 3×3 high-pass) at 512²."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.style = Style(in_ch)
        self.weight = nn.Parameter(torch.zeros(12, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, 12, 1, 1))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return F.conv2d(x * self.style(w), self.weight) + self.bias


class Synthesis(nn.Module):
    """W+ (N,23,512) → RGB (N,3,1024,1024), nominally in [-1,1] (unclipped here)."""

    def __init__(self) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.zeros(1, 512, 4, 4))
        self.conv = StyledConv(512, 4)
        blocks, in_ch, side = [], 512, 8
        for out_ch in BLOCK_CHANNELS:
            blocks.append(Block(in_ch, out_ch, side))
            in_ch, side = out_ch, side * 2
        self.blocks = nn.ModuleList(blocks)
        self.to_image = ToImage(in_ch)
        self.register_buffer("idwt_mix", torch.eye(4))

    def features(self, w_plus: Tensor, num_blocks: int = len(BLOCK_CHANNELS)) -> Tensor:
        """Hidden features after ``num_blocks`` blocks: (N, C_k, 4·2^k, 4·2^k)."""
        x = self.const.expand(w_plus.shape[0], -1, -1, -1)
        x = self.conv(x, w_plus[:, 0])
        for i, block in enumerate(self.blocks[:num_blocks]):
            x = block(x, w_plus[:, 1 + 3 * i: 4 + 3 * i], self.idwt_mix)
        return x

    def forward(self, w_plus: Tensor) -> Tensor:
        """w_plus: (N,23,512) → image (N,3,1024,1024)."""
        return self.tail(self.features(w_plus, 0), w_plus, 0)

    def tail(self, x: Tensor, w_plus: Tensor, first_block: int) -> Tensor:
        """Finish a render from ``features(w_plus, first_block)`` ``x``: blocks ``first_block`` …
        and the to-image layer, driven by slots ``1 + 3·first_block`` … 22 of w_plus (N,23,512)
        → image (N,3,1024,1024). Lets an optimiser move only the fine slots without re-running
        (or back-propagating through) the coarse blocks."""
        x = self.blocks_from(x, w_plus, first_block, len(self.blocks))
        return inverse_haar(self.to_image(x, w_plus[:, NUM_SLOTS - 1]), self.idwt_mix)

    def blocks_from(self, x: Tensor, w_plus: Tensor, first: int, stop: int) -> Tensor:
        """Blocks ``first`` … ``stop − 1`` on the features ``x`` after block ``first − 1``, driven
        by slots ``1 + 3·first`` … ``3·stop`` of w_plus (N,23,512)."""
        for i in range(first, stop):
            x = self.blocks[i](x, w_plus[:, 1 + 3 * i: 4 + 3 * i], self.idwt_mix)
        return x

    def blocks_mixed(self, x: Tensor, inside: Tensor, outside: Tensor, mask: Tensor, first: int, stop: int,
                     between: Callable[[], None] | None = None) -> Tensor:
        """Blocks ``first`` … ``stop − 1`` on features ``x``, with styles that vary over the image:
        each styled layer multiplies its input by m·s(inside) + (1 − m)·s(outside), m being
        ``mask`` (N,1,h,w) in [0, 1] resized to the layer's side. The network has no
        demodulation, so this is exactly one render whose region m has one code's styles and the
        rest the other's; mask ≡ 1 is ``inside``'s blocks, mask ≡ 0 ``outside``'s. inside,
        outside: (N,23,512). ``between()`` runs before each block (it may raise to stop)."""
        for i in range(first, stop):
            if between is not None:
                between()
            block, slot = self.blocks[i], 1 + 3 * i
            x = inverse_haar(_mixed(block.up.style, x, inside[:, slot], outside[:, slot], mask), self.idwt_mix)
            x = block.conv1.styled(_mixed(block.conv1.style, x, inside[:, slot + 1], outside[:, slot + 1], mask))
            x = block.conv2.styled(_mixed(block.conv2.style, x, inside[:, slot + 2], outside[:, slot + 2], mask))
        return x

    def tail_mixed(self, x: Tensor, inside: Tensor, outside: Tensor, mask: Tensor, first_block: int,
                   between: Callable[[], None] | None = None) -> Tensor:
        """``tail`` with ``blocks_mixed``'s styles, the to-image layer's mixed the same way:
        features after ``first_block`` blocks → image (N,3,1024,1024)."""
        x = self.blocks_mixed(x, inside, outside, mask, first_block, len(self.blocks), between)
        slot = NUM_SLOTS - 1
        bands = F.conv2d(_mixed(self.to_image.style, x, inside[:, slot], outside[:, slot], mask), self.to_image.weight)
        return inverse_haar(bands + self.to_image.bias, self.idwt_mix)


def _mixed(style: Style, x: Tensor, w_in: Tensor, w_out: Tensor, mask: Tensor) -> Tensor:
    """x (N,C,H,W) times the per-pixel style m·s(w_in) + (1 − m)·s(w_out), m = ``mask`` resized."""
    s_in, s_out = style(w_in), style(w_out)
    return x * (s_out + mask_at(mask, x.shape[-1]) * (s_in - s_out))


def mask_at(mask: Tensor, side: int) -> Tensor:
    """A style mask (N,1,h,w) at a layer's ``side``: area-averaged down, bilinear up."""
    if mask.shape[-1] == side:
        return mask
    if mask.shape[-1] > side:
        return F.interpolate(mask, size=(side, side), mode="area")
    return F.interpolate(mask, size=(side, side), mode="bilinear", align_corners=False)
