"""Frozen-weight twin of ``mobilestylegan.Synthesis``: the same weights, arranged for speed.

``Synthesis`` stays the readable reference (and the one whose *weights* train: pivotal tuning,
the preview heads); ``FastSynthesis`` renders the same images (parity-tested to float rounding)
and back-propagates to the *code* (inversion, refinement, mapper and encoder training: its
weights are detached copies), with three changes, each measured on a 2-core CPU
(``bench/RESULTS.md``, "Render speed"):

1. **Channels-last (NHWC) tensors throughout.** oneDNN's depthwise and 1×1 convolutions run
   2–3× faster on NHWC than on NCHW here, and no layer has to reorder its input.
2. **Every inverse wavelet transform is one grouped transposed convolution** (kernel 2×2, stride
   2, one group per output channel), instead of a concatenation, an einsum and a pixel shuffle.
   For that a group's 4 bands must be adjacent channels, so the layer that produces them has its
   output channels permuted once, at set-up (``_bands_together``):

       new channel 4c + b  =  old channel  c          (b = 0, the low-pass band)
                              old channel  C + 3c + b − 1   (b = 1, 2, 3: the high-pass bands)

   and the consumers' weights follow the same permutation.
3. **Styles fold into weights** for a single image: the per-channel style multiply of a styled
   layer's input goes into the depthwise kernels, the transposed-conv kernels or the 1×1 to-image
   weights (a batch of N images multiplies its inputs instead).

Shapes (batch N, NHWC memory, NCHW indexing as PyTorch shows it):

    x_0   (N, 512, 4, 4)        after the 4×4 styled conv, channels permuted for block 0's bands
    x_b   (N, C_b, 8·2^b, 8·2^b) after block b, channels permuted for block b+1 (or the head)
    img   (N, 3, S, S)          S = 1024 (to-image + inverse wavelet) or 128 / 256 / 512 (preview
                                head after block 4 / 5 / 6 + pixel shuffle)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from latentstudio.latent import NUM_SLOTS
from latentstudio.models.mobilestylegan import Synthesis, mask_at
from latentstudio.models.preview import PREVIEW_SIZES

NHWC = torch.channels_last


def bands_together(c: int) -> Tensor:
    """The permutation (4c,) that puts each channel's 4 wavelet bands next to each other."""
    idx = torch.empty(4 * c, dtype=torch.long)
    ch = torch.arange(c)
    idx[0::4] = ch
    for k in range(3):
        idx[k + 1::4] = c + 3 * ch + k
    return idx


def idwt_kernel(mix: Tensor, c: int) -> Tensor:
    """Transposed-conv weight (4c, 1, 2, 2) of the inverse wavelet for ``c`` grouped channels:
    weight[4i + band, 0, a, b] = mix[2a + b, band]."""
    k = mix.t().reshape(4, 2, 2)  # band → (a, b)
    return k.repeat(c, 1, 1)[:, None].contiguous()


def shuffle_kernel(c: int) -> Tensor:
    """Transposed-conv weight (4c, 1, 2, 2) of ``pixel_shuffle(2)`` on 4c channels."""
    return torch.eye(4).reshape(4, 2, 2).repeat(c, 1, 1)[:, None].contiguous()


@dataclass
class _Layer:
    """One styled depthwise-separable layer: affine (C_in,512)/(C_in,) to the style, depthwise
    kernels (C_in,1,3,3), pointwise (C_out,C_in,1,1) + bias (C_out,), noise (1,1,H,W)."""

    affine_w: Tensor
    affine_b: Tensor
    dw: Tensor
    pw: Tensor
    bias: Tensor
    noise: Tensor

    def __call__(self, x: Tensor, w: Tensor) -> Tensor:
        s = F.linear(w, self.affine_w, self.affine_b)  # (N, C_in)
        if x.shape[0] == 1:
            x = F.conv2d(x, self.dw * s[0, :, None, None, None], padding=1, groups=x.shape[1])
        else:
            x = F.conv2d(x * s[:, :, None, None], self.dw, padding=1, groups=x.shape[1])
        return self._pointwise(x)

    def mixed(self, x: Tensor, w_in: Tensor, w_out: Tensor, m: Tensor) -> Tensor:
        """The layer with the style m·s(w_in) + (1 − m)·s(w_out) per pixel, m (N,1,H,W)."""
        xs = _mixed_style(x, self.affine_w, self.affine_b, w_in, w_out, m)
        return self._pointwise(F.conv2d(xs, self.dw, padding=1, groups=x.shape[1]))

    def _pointwise(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.pw, self.bias)
        return F.leaky_relu_(x.add_(self.noise), 0.2)


@dataclass
class _Up:
    """Styled inverse wavelet: affine to the style of the 4c grouped input channels, kernel (4c,1,2,2)."""

    affine_w: Tensor
    affine_b: Tensor
    kernel: Tensor

    def __call__(self, x: Tensor, w: Tensor) -> Tensor:
        s = F.linear(w, self.affine_w, self.affine_b)  # (N, 4c)
        groups = x.shape[1] // 4
        if x.shape[0] == 1:
            return F.conv_transpose2d(x, self.kernel * s[0, :, None, None, None], stride=2, groups=groups)
        return F.conv_transpose2d(x * s[:, :, None, None], self.kernel, stride=2, groups=groups)

    def mixed(self, x: Tensor, w_in: Tensor, w_out: Tensor, m: Tensor) -> Tensor:
        """The inverse wavelet with the style m·s(w_in) + (1 − m)·s(w_out) per pixel, m (N,1,H,W)."""
        xs = _mixed_style(x, self.affine_w, self.affine_b, w_in, w_out, m)
        return F.conv_transpose2d(xs, self.kernel, stride=2, groups=x.shape[1] // 4)


def _mixed_style(x: Tensor, aw: Tensor, ab: Tensor, w_in: Tensor, w_out: Tensor, m: Tensor) -> Tensor:
    """x (N,C,H,W) times the style m·s(w_in) + (1 − m)·s(w_out), m (N,1,H,W), s = affine (C,512)."""
    s_in, s_out = F.linear(w_in, aw, ab)[:, :, None, None], F.linear(w_out, aw, ab)[:, :, None, None]
    return (x * s_out).addcmul_(x * m, s_in - s_out)


class FastSynthesis:
    """``Synthesis`` with frozen weights: ``render`` (display), ``forward`` and ``tail`` (autograd
    to the code)."""

    def __init__(self, syn: Synthesis, heads: object | None = None) -> None:
        with torch.no_grad():
            self._build(syn, heads)

    def _style(self, style: torch.nn.Module, perm: Tensor | None = None) -> tuple[Tensor, Tensor]:
        w, b = style.affine.weight * style.scale, style.affine.bias * style.scale
        return (w, b) if perm is None else (w[perm], b[perm])

    def _build(self, syn: Synthesis, heads: object | None) -> None:
        blocks = list(syn.blocks)
        first = bands_together(blocks[0].up.style.affine.out_features // 4)
        conv = syn.conv
        self.const = syn.const.detach().contiguous(memory_format=NHWC)
        aw, ab = self._style(conv.style)
        self.conv = (aw, ab, conv.weight[first].detach(), (conv.noise + conv.bias)[:, first].detach())
        self.blocks: list[tuple[_Up, _Layer, _Layer]] = []
        self.perms: list[Tensor] = [first]  # perms[b]: the channel order of block b's input
        mix = syn.idwt_mix.detach()
        for i, block in enumerate(blocks):
            c = block.up.style.affine.out_features // 4
            perm_in = self.perms[i]
            up = _Up(*self._style(block.up.style, perm_in), idwt_kernel(mix, c))
            c1 = block.conv1
            l1 = _Layer(*self._style(c1.style), c1.dw.detach(), c1.pw.detach(), c1.bias.detach().reshape(-1),
                        c1.noise.detach())
            c2 = block.conv2
            out_ch = c2.pw.shape[0]
            nxt = bands_together(out_ch // 4) if i + 1 < len(blocks) else torch.arange(out_ch)
            self.perms.append(nxt)
            l2 = _Layer(*self._style(c2.style), c2.dw.detach(), c2.pw[nxt].detach(),
                        c2.bias.detach().reshape(-1)[nxt], c2.noise.detach())
            self.blocks.append((up, l1, l2))
        ti = syn.to_image
        lo_hi = bands_together(3)
        self.to_image = (*self._style(ti.style), ti.weight[lo_hi].detach(), ti.bias.detach().reshape(-1)[lo_hi],
                         idwt_kernel(mix, 3))
        self.heads: dict[int, tuple[Tensor, Tensor]] = {}
        if heads is not None:
            for size in getattr(heads, "available", ()):
                conv_h = heads.heads[str(size)]  # type: ignore[attr-defined]
                n = PREVIEW_SIZES[size]
                self.heads[size] = (conv_h.weight[:, self.perms[n]].detach(), conv_h.bias.detach())
        self.shuffle = shuffle_kernel(3)

    def features(self, w_plus: Tensor, num_blocks: int,
                 between: Callable[[], None] | None = None) -> Tensor:
        """Hidden features after ``num_blocks`` blocks, channels in this twin's order, NHWC.
        ``between()`` is called before each block (it may raise to abandon the render)."""
        n = w_plus.shape[0]
        aw, ab, weight, noise_bias = self.conv
        s = F.linear(w_plus[:, 0], aw, ab)
        x = self.const.expand(n, -1, -1, -1) * s[:, :, None, None]
        x = F.leaky_relu_(F.conv2d(x, weight, padding=1).add_(noise_bias), 0.2)
        return self.blocks_from(x, w_plus, 0, num_blocks, between)

    def blocks_from(self, x: Tensor, w_plus: Tensor, first: int, stop: int,
                    between: Callable[[], None] | None = None) -> Tensor:
        """Blocks ``first`` … ``stop − 1`` on the features ``x`` after block ``first − 1``, driven
        by slots ``1 + 3·first`` … ``3·stop`` of w_plus (N,23,512)."""
        for i in range(first, stop):
            if between is not None:
                between()
            up, l1, l2 = self.blocks[i]
            w3 = w_plus[:, 1 + 3 * i: 4 + 3 * i]
            x = l2(l1(up(x, w3[:, 0]), w3[:, 1]), w3[:, 2])
        return x

    def tail(self, x: Tensor, w_plus: Tensor, first_block: int) -> Tensor:
        """Finish a 1024² render from ``features(w_plus, first_block)`` ``x`` (as
        ``Synthesis.tail``): an optimiser moves the fine slots without the coarse blocks."""
        return self.image(self.blocks_from(x, w_plus, first_block, len(self.blocks)), w_plus).contiguous()

    def blocks_mixed(self, x: Tensor, inside: Tensor, outside: Tensor, mask: Tensor, first: int, stop: int,
                     between: Callable[[], None] | None = None) -> Tensor:
        """``Synthesis.blocks_mixed`` (styles that vary over the image: m·s(inside) + (1 − m)·
        s(outside), m = ``mask`` (N,1,h,w) resized to each layer) on features in this twin's
        order. inside, outside: (N,23,512)."""
        for i in range(first, stop):
            if between is not None:
                between()
            up, l1, l2 = self.blocks[i]
            slot = 1 + 3 * i
            x = up.mixed(x, inside[:, slot], outside[:, slot], mask_at(mask, x.shape[-1]))
            m = mask_at(mask, x.shape[-1])
            x = l1.mixed(x, inside[:, slot + 1], outside[:, slot + 1], m)
            x = l2.mixed(x, inside[:, slot + 2], outside[:, slot + 2], m)
        return x

    def tail_mixed(self, x: Tensor, inside: Tensor, outside: Tensor, mask: Tensor, first_block: int,
                   between: Callable[[], None] | None = None) -> Tensor:
        """``Synthesis.tail_mixed``: ``blocks_mixed`` to the last block, then the to-image layer
        with its style mixed the same way → (N,3,1024,1024)."""
        x = self.blocks_mixed(x, inside, outside, mask, first_block, len(self.blocks), between)
        aw, ab, weight, bias, kernel = self.to_image
        slot = NUM_SLOTS - 1
        xs = _mixed_style(x, aw, ab, inside[:, slot], outside[:, slot], mask_at(mask, x.shape[-1]))
        return F.conv_transpose2d(F.conv2d(xs, weight, bias), kernel, stride=2, groups=3).contiguous()

    def image(self, x: Tensor, w_plus: Tensor) -> Tensor:
        """The to-image layer and the last inverse wavelet: features after block 6 → (N,3,1024,1024)."""
        aw, ab, weight, bias, kernel = self.to_image
        s = F.linear(w_plus[:, NUM_SLOTS - 1], aw, ab)
        if x.shape[0] == 1:
            y = F.conv2d(x, weight * s[0][None, :, None, None], bias)
        else:
            y = F.conv2d(x * s[:, :, None, None], weight, bias)
        return F.conv_transpose2d(y, kernel, stride=2, groups=3)

    def head(self, x: Tensor, size: int) -> Tensor:
        """A preview head on the features of its block → (N,3,size,size)."""
        weight, bias = self.heads[size]
        return F.conv_transpose2d(F.conv2d(x, weight, bias), self.shuffle, stride=2, groups=3)

    def forward(self, w_plus: Tensor, size: int = 1024, between: Callable[[], None] | None = None) -> Tensor:
        """W+ (N,23,512) → (N,3,size,size), unclipped: the full network at 1024², else the
        preview head after block 4 / 5 / 6 for 128 / 256 / 512. Autograd follows the caller
        (gradients reach ``w_plus``, never the weights)."""
        if size == 1024:
            return self.image(self.features(w_plus, len(self.blocks), between), w_plus).contiguous()
        if size not in self.heads:
            raise RuntimeError(f"no {size}² preview head (assets/preview_heads.safetensors)")
        return self.head(self.features(w_plus, PREVIEW_SIZES[size], between), size).contiguous()

    def render(self, w_plus: Tensor, size: int = 1024, between: Callable[[], None] | None = None) -> Tensor:
        """``forward`` without autograd (for display)."""
        with torch.no_grad():  # not inference_mode: callers may mix the result into autograd work
            return self.forward(w_plus, size, between)


__all__ = ["FastSynthesis", "bands_together", "idwt_kernel", "shuffle_kernel"]
