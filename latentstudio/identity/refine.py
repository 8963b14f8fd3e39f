"""Refine one transfer: a short optimisation of the mapper's output for the best result on one pair.

Starting from the feed-forward code, Adam moves an offset δ (23, 512) to minimise, at 256²:

    ‖E(out) − e_A‖                       identity: dlib's ResNet (torch port) against the identity
                                          face's descriptor (its photo when there is one)
  + w_lm · mean ‖L(out) − L(B)‖² / IOD²  landmarks: our landmark net against the attribute face's
                                          render (pose, expression, face outline)
  + w_bg · L1(out, B) outside B's face    surroundings: hair, background, clothes of B
  + w_reg · ‖δ‖² / 23                    stay near the mapper's output (editability)

The identity term sees each step's render through a random view (``random_view``: a zoom of
±6 %, a shift of up to 4 %, a mirror image, a blur by 1–3 pixels), so the code is fitted to the
person and not to one network's reading of one exact image. On the five portraits this moved the
recogniser no loss uses, OpenFace, from 0.720 to 0.655 after 60 steps (bench/RESULTS.md).

Each step reports ``Progress("refine", step, steps)`` and polls ``cancelled()``; a cancelled
refinement raises ``Cancelled`` (the feed-forward code is still the caller's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from latentstudio.identity import REFINE_STEPS
from latentstudio.identity.train import attribute_targets, image_losses
from latentstudio.progress import CancelFn, Cancelled, Progress, ProgressFn

SIZE = 256


@dataclass(frozen=True)
class RefineConfig:
    steps: int = REFINE_STEPS
    lr: float = 0.02
    w_lm: float = 100.0  # 60 left the mouth at 4.0–4.1 % of the IOD on the real pairs (bench/RESULTS.md)
    w_bg: float = 1.0
    w_reg: float = 0.02
    views: bool = True  # the identity term through ``random_view`` (False: the render as it is)
    seed: int = 0  # of the views: the same call gives the same code


def random_view(images: Tensor, gen: torch.Generator) -> Tensor:
    """(N, 3, S, S) → the same size, one random view for the batch: zoom 0.94–1.06, shift up to
    ±4 % each way (edges repeated), mirrored half of the time, and blurred by averaging over 1, 2
    or 3 pixels. Differentiable."""
    n, _, s, _ = images.shape
    r = torch.rand(5, generator=gen)
    zoom, tx, ty = 0.94 + 0.12 * float(r[0]), 0.08 * (float(r[1]) - 0.5), 0.08 * (float(r[2]) - 0.5)
    theta = torch.tensor([[zoom, 0.0, tx], [0.0, zoom, ty]], dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta.expand(n, 2, 3), list(images.shape), align_corners=False)
    x = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    if r[3] < 0.5:
        x = x.flip(-1)
    k = 1 + int(3 * float(r[4]))  # 1, 2 or 3
    if k > 1:
        x = F.interpolate(F.avg_pool2d(x, k), size=(s, s), mode="bilinear", align_corners=False)
    return x


def refine(code: np.ndarray, identity_embedding: np.ndarray, attribute_code: np.ndarray, nets,  # noqa: ANN001
           config: RefineConfig = RefineConfig(), *, progress: ProgressFn | None = None,
           cancelled: CancelFn | None = None) -> np.ndarray:
    """The refined W+ code (23, 512) float32; ``nets``: ``latentstudio.identity.train.Nets``."""
    g = nets.generator
    dev = nets.identity.device
    start = torch.from_numpy(np.asarray(code, np.float32))[None].to(dev)
    target = torch.from_numpy(np.asarray(identity_embedding, np.float32))[None].to(dev)
    img_b = g.synthesize(torch.from_numpy(np.asarray(attribute_code, np.float32))[None], size=SIZE)
    lm_b, mask = attribute_targets(nets, img_b)
    gen = torch.Generator().manual_seed(config.seed)
    view = (lambda images: random_view(images, gen)) if config.views else None
    delta = torch.zeros_like(start, requires_grad=True)
    opt = torch.optim.Adam([delta], config.lr)
    best, best_loss = start, float("inf")
    for step in range(config.steps):
        if cancelled and cancelled():
            raise Cancelled(f"refinement cancelled at step {step}/{config.steps}")
        out = g.synthesize(start + delta, size=SIZE, grad=True)
        t = image_losses(nets, out, target, img_b, lm_b, mask, view)
        loss = t["id"] + config.w_lm * t["lm"] + config.w_bg * t["bg"] + config.w_reg * delta.pow(2).sum() / 23
        value = float(loss.detach())
        if value < best_loss:  # the loss of the code before this step's update
            best_loss, best = value, (start + delta).detach().clone()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress:
            progress(Progress("refine", step + 1, config.steps,
                              " ".join(f"{k} {float(v.detach()):.4f}" for k, v in t.items())))
    return best[0].cpu().numpy().astype(np.float32)
