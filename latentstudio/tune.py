"""Pivotal tuning (Roich et al. 2022, "PTI"): fit the generator to one photo around its code.

After :func:`latentstudio.invert.invert` has found a W+ code (the *pivot*), the synthesis
weights are fine-tuned for a few steps so that the render of the pivot matches the photo
more closely; the code stays as it is, and edits (pivot + Σ αᵢ·nᵢ) are rendered with the tuned
weights. This is the optional high-fidelity mode of issue 7: ``latentstudio invert --tune``.

Measured after the fast preset (2-core CPU, bench/RESULTS.md): 60 steps on the 512² route
(blocks up to 256² + the distilled 512² head, ~45 s) lower LPIPS-VGG from 0.349 to 0.265 on the
five real bench photos and from 0.198 to 0.150 on 10 generated faces, and the OpenFace identity
distance by a quarter; the shipped smile/age edits keep ~80 % of their effect. A higher
learning rate (1e-3) over-fits the preview head and the real 1024² render gets *worse*, hence 3e-4.

Only the blocks the route renders receive gradients, so the last block and the to-image layer
(1024² only) keep their weights. The result is a set of weight *deltas* (float16, ~15 MB),
stored in a code file beside ``w_plus`` under ``tuned/<parameter name>``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from latentstudio.codes import LatentError, tuned_arrays, tuned_deltas
from latentstudio.invert import (
    Inversion,
    LossNets,
    Losses,
    Preset,
    check_aligned,
    invert,
    objective,
    report_progress,
)
from latentstudio.models.generator import Generator, as_w_plus, from_uint8
from latentstudio.progress import CancelFn, ProgressFn, check


@dataclass(frozen=True)
class TuneSettings:
    steps: int = 60
    size: int = 512  # render route: 256 or 512 (preview heads) or 1024 (full network, ~4× dearer)
    lr: float = 3e-4
    pixel_weight: float = 1.0
    id_weight: float = 0.0


@dataclass
class Tuning:
    deltas: dict[str, np.ndarray]  # synthesis parameter name → float16 weight change
    losses: dict[str, float] = field(default_factory=dict)  # final loss terms
    steps: int = 0

    def arrays(self) -> dict[str, np.ndarray]:
        """The deltas as code-file arrays (``tuned/<name>``), for :func:`latentstudio.codes.save_code`."""
        return tuned_arrays(self.deltas)


def pivotal_tune(aligned: np.ndarray, w_plus: np.ndarray, *, settings: TuneSettings = TuneSettings(),
                 generator: Generator, seed: int = 0,
                 progress: ProgressFn | None = None,
                 cancelled: CancelFn | None = None, preview_every: int = 10, nets: LossNets | None = None) -> Tuning:
    """Tune the synthesis weights so the render of ``w_plus`` (23,512) matches ``aligned``.

    ``aligned``: (S,S,3) uint8 FFHQ-aligned face (any S). ``progress`` gets an
    ``Progress("tune", …)`` every step (with a 256² preview every ``preview_every`` steps);
    ``cancelled()`` is polled every step and stops the run with ``progress.Cancelled``.
    The generator passed in is not modified.
    """
    if settings.steps < 1:
        raise ValueError(f"tuning steps must be at least 1, got {settings.steps}")
    img = check_aligned(aligned)
    g = generator
    torch.manual_seed(seed)
    tuned = _copy(g)
    params = dict(tuned.synthesis.named_parameters())
    for p in params.values():
        p.requires_grad_(True)
    code = as_w_plus(w_plus).to(g.device)
    losses = Losses(from_uint8(img).to(g.device),
                    Preset(steps=settings.steps, render_size=settings.size, loss_size=256, lpips_net="alex",
                           pixel_weight=settings.pixel_weight, id_weight=settings.id_weight), g.device, nets)
    opt = torch.optim.Adam(params.values(), lr=settings.lr)
    terms: dict[str, Tensor] = {}
    for step in range(settings.steps):
        check(cancelled, f"tuning cancelled at step {step}/{settings.steps}")
        out = tuned.synthesize(code, size=settings.size, clip=False, grad=True)
        terms = losses(out)
        total = objective(terms, losses.preset)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        report_progress(progress, step, settings.steps, total, out, preview_every, "tune")
    original = dict(g.synthesis.named_parameters())
    deltas = {name: (p.detach() - original[name]).cpu().numpy().astype(np.float16)
              for name, p in params.items() if p.grad is not None}
    return Tuning(deltas, {k: float(v.detach()) for k, v in terms.items()}, settings.steps)


def invert_and_tune(aligned: np.ndarray, *, preset: str | Preset = "fast", steps: int | None = None,
                    tune: TuneSettings | None = None, generator: Generator, seed: int = 0,
                    progress: ProgressFn | None = None,
                    cancelled: CancelFn | None = None, init: np.ndarray | None = None,
                    nets: LossNets | None = None) -> tuple[Inversion, Tuning | None]:
    """:func:`latentstudio.invert.invert`, then (when ``tune`` is given) :func:`pivotal_tune`
    around the code, as one job: ``progress`` counts the steps of both on one scale."""
    g = generator
    extra = tune.steps if tune is not None else 0
    report = None if progress is None else (lambda pr: progress(replace(pr, total=pr.total + extra)))
    inv = invert(aligned, preset=preset, steps=steps, generator=g, seed=seed, progress=report,
                 cancelled=cancelled, init=init, nets=nets)
    if tune is None:
        return inv, None
    report = None if progress is None else (
        lambda pr: progress(replace(pr, done=inv.steps + pr.done, total=inv.steps + pr.total)))
    return inv, pivotal_tune(aligned, inv.w_plus, settings=tune, generator=g, seed=seed, progress=report,
                             cancelled=cancelled, nets=nets)


def tuned_generator(g: Generator, deltas: dict[str, np.ndarray]) -> Generator:
    """A generator whose synthesis weights are ``g``'s plus ``deltas`` (``g`` is not modified).

    Raises LatentError when a delta names no parameter or has the wrong shape.
    """
    tuned = _copy(g)
    params = dict(tuned.synthesis.named_parameters())
    with torch.no_grad():
        for name, delta in deltas.items():
            if name not in params:
                raise LatentError(f"tuned weights name an unknown generator parameter {name!r}")
            p = params[name]
            d = np.asarray(delta)
            if d.shape != tuple(p.shape) or not np.issubdtype(d.dtype, np.floating):
                raise LatentError(f"tuned weights for {name!r}: expected {tuple(p.shape)} floats, "
                                  f"got {d.dtype} {d.shape}")
            if not np.isfinite(d).all():
                raise LatentError(f"tuned weights for {name!r} contain NaN or infinite values")
            p.add_(torch.from_numpy(d.astype(np.float32)).to(p.device))
    return tuned


def _copy(g: Generator) -> Generator:
    """A generator with its own copy of the synthesis weights, sharing everything else."""
    return Generator(g.mapping, copy.deepcopy(g.synthesis), g.w_avg, g.heads, g.device)


def generator_for_code(g: Generator, extras: dict[str, np.ndarray]) -> Generator:
    """``g`` tuned by the code file's ``tuned/…`` arrays, or ``g`` itself when it has none."""
    deltas = tuned_deltas(extras)
    return tuned_generator(g, deltas) if deltas else g
