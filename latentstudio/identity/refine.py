"""Refine one transfer: a short optimisation of the mapper's output for the best result on one pair.

Starting from the feed-forward code, Adam moves an offset δ (23, 512) to minimise, at 256²:

    ‖E(out) − e_A‖                       identity: dlib's ResNet (torch port) against the identity
                                          face's descriptor (its photo when there is one)
  + w_lm · mean ‖L(out) − L(B)‖² / IOD²  landmarks: our landmark net against the attribute face's
                                          render (pose, expression, face outline)
  + w_bg · L1(out, B) outside B's face    surroundings: hair, background, clothes of B
  + w_reg · ‖δ‖² / 23                    stay near the mapper's output (editability)

Each step reports ``Progress("refine", step, steps)`` and polls ``cancelled()``; a cancelled
refinement raises ``Cancelled`` (the feed-forward code is still the caller's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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
    delta = torch.zeros_like(start, requires_grad=True)
    opt = torch.optim.Adam([delta], config.lr)
    best, best_loss = start, float("inf")
    for step in range(config.steps):
        if cancelled and cancelled():
            raise Cancelled(f"refinement cancelled at step {step}/{config.steps}")
        out = g.synthesize(start + delta, size=SIZE, grad=True)
        t = image_losses(nets, out, target, img_b, lm_b, mask)
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
