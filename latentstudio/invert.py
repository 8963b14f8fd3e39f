"""Invert an aligned face into the generator's W+ space (23×512) by optimisation.

The code is parametrised as ``w_plus[i] = w + delta[i]``: one shared w plus a per-slot offset.
The start is the preset's: the CNN encoder's W+ guess (:mod:`latentstudio.encoder`), either
as it is, which skips the W phase (``start="encoder"``: the ``quick`` preset), or averaged over
its slots into one w that the W phase starts from (``"encoder-w"``: ``fast``), or w_avg
(``"average"``: ``quality``). Measured on real photos (bench/RESULTS.md, 2-core CPU): started
from the guess as it is, 60 + 6 steps (``quick``, ~12 s a photo) reach LPIPS-VGG 0.34 and
OpenFace 0.41, where the same steps from w_avg stop at OpenFace 0.52. Over ``fast``'s schedule
the guess as it is fits small, turned faces better than w_avg but its codes answer the age edit
less (0.74 against 0.83); the guess's mean w followed by the W phase fits them better still
(six held-out faces: OpenFace 0.58 → 0.47) and its codes answer the edits as well as w_avg's or
better (smile / age 1.13 / 0.86 against 0.93 / 0.83), so ``fast`` starts there.

Optimisation runs in two phases (three with a tail):

1. **W phase** (the first ``w_fraction`` of the steps): only the shared w moves, deltas stay 0.
   The result lies on the W manifold, where the boundaries were trained, and already has the
   right pose, shape and colours.
2. **W+ phase**: deltas move too, penalised by ``delta_weight · mean_i ||delta_i||²`` so the code
   stays close to W (e4e's observation: small inter-slot variance keeps codes editable).
3. **Tail** (``tail_steps``, the fast preset): only the fine slots move, through the real 1024²
   network from cached coarse features, with LPIPS-VGG (:func:`_fit_tail`).

Losses: LPIPS + ``pixel_weight`` · MSE on the [-1, 1] image, + ``id_weight`` · dlib identity
distance when the identity net is installed. ``quality`` renders 1024² and downsamples for the
losses (LPIPS-VGG); it is meant for a GPU, where each step replays a CUDA graph (:class:`CodeLoss`):
800 steps took 6.9 s a photo on an H200 and reached LPIPS-VGG 0.138–0.141 on five real photos
(three runs), where 500 steps took 4.3 s and stopped at 0.156–0.157 (bench/RESULTS.md). ``fast`` is built for a 2-core CPU (~26 s a photo; forward + backward through
the render twin, ``Generator.render``: 256² route 0.07 s, 512² 0.13 s, the 1024² tail 0.24 s;
LPIPS-VGG at 256² 0.28 s, LPIPS-Alex 0.02 s): it uses
AlexNet LPIPS, runs most steps on the cheap 256² route (blocks up to 256² + distilled preview
head), and the last ``refine_steps`` on the 512² route, so that the code fits the real network's
output rather than the preview head's approximation of it (on 3 test faces that halved the
identity distance of the final 1024² render, 0.21 → 0.12, at half the time of the previous
120-step LPIPS-VGG preset; bench/RESULTS.md). The 512² route still ends in a distilled head and
never reaches the slots of the last block, so the tail fits those on the real network.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from latentstudio.models.generator import Generator, from_uint8, resize, to_uint8

from latentstudio.latent import NUM_SLOTS, W_DIM
from latentstudio.progress import CancelFn, Progress, ProgressFn, check


@dataclass(frozen=True)
class Preset:
    steps: int
    render_size: int  # 256 (cheap route) or 1024 (full network)
    loss_size: int  # images are compared at this resolution
    lr: float = 0.03
    w_fraction: float = 0.35  # share of the steps that optimise a single w
    pixel_weight: float = 1.0
    delta_weight: float = 1e-3
    id_weight: float = 0.1
    lpips_net: str = "vgg"  # "vgg" or "alex" (AlexNet LPIPS: ~17× cheaper on the CPU)
    refine_size: int | None = None  # the last ``refine_steps`` steps render at this size instead
    refine_steps: int = 0
    start: str = "average"  # "average" (w_avg), "encoder" (latentstudio.encoder's W+ guess) or "encoder-w" (its mean w)
    tail_steps: int = 0  # then this many steps on the fine slots alone, through the 1024² network
    tail_block: int = 6  # the tail moves slots 1 + 3·tail_block … 22 (blocks tail_block … 6 + to-image)
    tail_lr: float = 0.05
    tail_lpips: str = "vgg"


#: where an inversion starts (``Preset.start``): w_avg, the encoder's W+ guess, the guess's mean w
STARTS = ("average", "encoder", "encoder-w")

PRESETS: dict[str, Preset] = {
    "quick": Preset(steps=60, render_size=256, loss_size=256, lr=0.03, lpips_net="alex", start="encoder",
                    refine_size=512, refine_steps=10, tail_steps=6, tail_block=5),
    "fast": Preset(steps=120, render_size=256, loss_size=256, lr=0.06, lpips_net="alex", start="encoder-w",
                   refine_size=512, refine_steps=20, tail_steps=18, tail_block=5),
    "quality": Preset(steps=800, render_size=1024, loss_size=256, lr=0.02),
}


@dataclass
class Inversion:
    w_plus: np.ndarray  # (23, 512) float32
    losses: dict[str, float] = field(default_factory=dict)  # final values of each term
    steps: int = 0


class LossNets(Protocol):
    """Where the loss networks come from: ``latentstudio.runtime.Runtime`` (the app, the CLI), or
    ``ProcessNets`` for a library caller without one."""

    def lpips(self, net: str) -> Any: ...

    def identity_net(self) -> Any | None: ...


class ProcessNets:
    """Loss networks loaded once per process and device (callers without a ``Runtime``)."""

    _cache: dict[tuple[str, str], Any] = {}

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def _get(self, key: str, load: Any) -> Any:
        k = (key, str(self.device))
        if k not in self._cache:
            self._cache[k] = load()
        return self._cache[k]

    def lpips(self, net: str) -> Any:
        from latentstudio.losses.lpips import load_lpips

        return self._get("lpips-" + net, lambda: load_lpips(net, self.device))

    def identity_net(self) -> Any | None:
        return self._get("identity", lambda: _load_identity_net(self.device))


def _load_identity_net(device: torch.device) -> Any | None:
    """dlib's identity net, or None when it is not installed (the inversion then has no id term)."""
    try:
        from latentstudio.face.chip import IdentityNet

        return IdentityNet.load(device)
    except Exception:  # noqa: BLE001 - model not installed
        return None


class Losses:
    """Loss terms against one target image, with the networks of ``nets``."""

    def __init__(self, target: Tensor, preset: Preset, device: torch.device, nets: LossNets | None = None) -> None:
        nets = nets or ProcessNets(device)
        self.preset = preset
        self.target = resize(target, preset.loss_size)
        self.lpips = nets.lpips(preset.lpips_net).to_target(self.target)  # the target's features computed once
        self.identity = nets.identity_net() if preset.id_weight > 0 else None
        self.target_id = self.identity.embed_aligned(self.target) if self.identity else None

    def __call__(self, img: Tensor) -> dict[str, Tensor]:
        x = resize(img, self.preset.loss_size)
        terms = {"lpips": self.lpips(x).mean(),
                 "mse": F.mse_loss(x, self.target)}
        if self.identity is not None and self.target_id is not None:
            terms["id"] = (self.identity.embed_aligned(x) - self.target_id).norm(dim=-1).mean()
        return terms


def invert(aligned: np.ndarray, *, preset: str | Preset = "fast", steps: int | None = None,
           generator: Generator, seed: int = 0,
           progress: ProgressFn | None = None,
           cancelled: CancelFn | None = None, preview_every: int = 10,
           init: np.ndarray | None = None, cuda_graphs: bool = True, nets: LossNets | None = None) -> Inversion:
    """Find W+ (23,512) whose render matches ``aligned`` ((S,S,3) uint8, FFHQ-aligned, any S).

    Start: ``init`` when given — a w (512,) runs the W phase from there, a W+ code (23,512) skips
    it — else the preset's ``start`` (``STARTS``): w_avg, the encoder's W+ guess
    (:mod:`latentstudio.encoder`), or that guess's mean w. ``progress`` gets an
    ``Progress("invert", …)`` every step (with a 256² preview every ``preview_every`` steps);
    ``cancelled()`` is polled every step and stops the run with ``progress.Cancelled``.
    ``cuda_graphs``: on CUDA, replay each step's forward + backward as a CUDA graph (:class:`CodeLoss`).
    """
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if steps is not None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        p = replace(p, steps=steps, refine_steps=round(p.refine_steps * steps / p.steps),
                    tail_steps=round(p.tail_steps * steps / p.steps))
    img = check_aligned(aligned)
    g = generator
    torch.manual_seed(seed)
    target = from_uint8(img).to(g.device)
    losses = Losses(target, p, g.device, nets)

    if init is None and p.start in STARTS[1:]:
        init = _encoder_start(img)
        if init is not None and p.start == "encoder-w":
            init = init.mean(0)  # one w: the W phase runs from the guess
    base, delta0 = _initial(g, init)
    w = base.clone().requires_grad_(True)
    delta = delta0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=p.lr, betas=(0.9, 0.999))
    # a single w (512,) starts the usual W phase from there; a W+ code goes straight to W+
    w_steps = int(round(p.w_fraction * p.steps)) if init is None or np.ndim(init) == 1 else 0
    terms: dict[str, Tensor] = {}
    runs: dict[int, CodeLoss] = {}  # one per render size
    total_steps = p.steps + p.tail_steps
    for step in range(p.steps):
        check(cancelled, f"inversion cancelled at step {step}/{total_steps}")
        if step == w_steps:
            opt.add_param_group({"params": [delta], "lr": p.lr})
        lr = p.lr * _lr_ramp(step / p.steps)
        for group in opt.param_groups:
            group["lr"] = lr
        code = (w[None] + delta)[None]
        size = p.refine_size if p.refine_size and step >= p.steps - p.refine_steps else p.render_size
        if size not in runs:
            runs[size] = CodeLoss(g, losses, p, size, code.detach(), graph=cuda_graphs)
        out, terms, grad = runs[size](code.detach())
        terms["delta"] = delta.pow(2).sum(-1).mean()
        total = objective(terms, p, terms["delta"])  # the value; its gradient comes from ``grad``
        opt.zero_grad(set_to_none=True)
        ((code * grad).sum() + p.delta_weight * terms["delta"]).backward()
        opt.step()
        report_progress(progress, step, total_steps, total, out, preview_every)
    code = (w[None] + delta).detach()
    if p.tail_steps:
        code, terms = _fit_tail(code, w.detach(), p, g, target, progress, cancelled, preview_every, nets)
    return Inversion(code.cpu().numpy().astype(np.float32),
                     {k: float(v.detach()) for k, v in terms.items()}, total_steps)


class CodeLoss:
    """Loss terms of the render of a W+ code (1,23,512) and the gradient of their weighted sum
    (:func:`objective` without the delta penalty) with respect to that code.

    Batch-1 eager PyTorch is bound by kernel launches on a GPU: a ``quality`` step is hundreds of
    small kernels (generator at 1024², LPIPS-VGG, identity net, forward and backward). On CUDA the whole
    forward + backward is therefore captured once as a CUDA graph (after three warm-up runs on a
    side stream, as torch.cuda.graphs asks) and replayed each step on a static input; the optimiser
    stays eager. The caller turns the code gradient into parameter gradients with the surrogate
    ``(code · grad).sum()``, whose gradient through ``code = w + delta`` is the same chain rule.
    Elsewhere, or when capture fails (a warning says why), each call runs eagerly. Measured on an
    H200: 8.6 ms a ``quality`` step replayed against 24–35 ms eager (bench/RESULTS.md).
    """

    def __init__(self, g: Generator, losses: Losses, p: Preset, size: int, start: Tensor,
                 graph: bool = True) -> None:
        self.g, self.losses, self.p, self.size = g, losses, p, size
        self.code = start.detach().clone().requires_grad_(True)  # (1,23,512), the static input
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: Tensor | None = None
        self.terms: dict[str, Tensor] = {}
        if graph and g.device.type == "cuda":
            try:
                self._capture()
            except RuntimeError as exc:  # an op that cannot be captured: stay eager
                warnings.warn(f"inversion runs without CUDA graphs: {exc}", stacklevel=3)
                self.graph = None

    def _forward_backward(self) -> tuple[Tensor, dict[str, Tensor]]:
        self.code.grad = None
        out = self.g.render(self.code, self.size)
        terms = self.losses(out)
        objective(terms, self.p).backward()
        return out, terms

    def _capture(self) -> None:
        device = self.g.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up: cuDNN algorithm choice, cached constants
            for _ in range(3):
                self._forward_backward()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the app renders slider edits on another thread meanwhile; only this thread
        # must avoid unsafe calls during the capture. The gradient buffer is allocated inside it
        # (static afterwards).
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.out, self.terms = self._forward_backward()
        self.graph = graph

    def __call__(self, code: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """code (1,23,512), detached → (render (1,3,S,S), loss terms, d objective / d code (1,23,512)).
        With a graph the returned tensors are its static buffers, overwritten by the next call."""
        with torch.no_grad():
            self.code.copy_(code)
        if self.graph is None:
            out, terms = self._forward_backward()
            return out, terms, self.code.grad  # type: ignore[return-value]
        self.graph.replay()
        return self.out, dict(self.terms), self.code.grad  # type: ignore[return-value]


def objective(terms: dict[str, Tensor], p: Preset, delta: Tensor | None = None) -> Tensor:
    """The weighted sum that is minimised: LPIPS + MSE (+ delta penalty) (+ identity when present)."""
    total = terms["lpips"] + p.pixel_weight * terms["mse"]
    if delta is not None:
        total = total + p.delta_weight * delta
    return total + p.id_weight * terms["id"] if "id" in terms else total


def _fit_tail(code: Tensor, w: Tensor, p: Preset, g: Generator, target: Tensor,
              progress: ProgressFn | None, cancelled: CancelFn | None,
              preview_every: int, nets: LossNets | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Phase 3: move only the fine slots ``1 + 3·tail_block`` … 22 of ``code`` (23,512), through
    the real 1024² network, with ``tail_lpips`` (LPIPS-VGG: the metric). The coarse blocks' features
    are computed once (``Generator.tail_from``) and nothing flows back through them: with
    ``tail_block`` 5 a step costs ~0.6 s on 2 CPU cores with LPIPS-VGG.

    Why: the earlier phases fit the cheap routes, which end in distilled preview heads; the real
    last blocks then add their own detail and colour, and the fine slots they read never got a
    gradient of their own. Measured on five real photos, the same code without → with its tail:
    LPIPS-VGG of the 1024² render 0.379 → 0.299, edit response kept (bench/RESULTS.md).
    Progress and cancel continue the main loop's count (steps ``p.steps`` … ``p.steps + tail_steps``).
    """
    first = 1 + 3 * p.tail_block
    losses = Losses(target, replace(p, lpips_net=p.tail_lpips), g.device, nets)
    tail = g.tail_from(code[None], p.tail_block)
    coarse = code[None, :first]
    fine = code[None, first:].clone().requires_grad_(True)
    opt = torch.optim.Adam([fine], lr=p.tail_lr)
    terms: dict[str, Tensor] = {}
    total_steps = p.steps + p.tail_steps
    for step in range(p.steps, total_steps):
        check(cancelled, f"inversion cancelled at step {step}/{total_steps}")
        out = tail(torch.cat([coarse, fine], dim=1))
        terms = losses(out)
        total = objective(terms, p, (fine - w).pow(2).sum(-1).mean())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        report_progress(progress, step, total_steps, total, out, preview_every)
    code = torch.cat([coarse, fine.detach()], dim=1)[0]
    terms["delta"] = (code - w).pow(2).sum(-1).mean()
    return code, terms


def check_aligned(aligned: np.ndarray) -> np.ndarray:
    """The aligned face as a square (S,S,3) uint8 array; ValueError for anything else."""
    img = np.asarray(aligned)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or img.shape[0] != img.shape[1]:
        raise ValueError(f"expected a square (S,S,3) uint8 aligned face, got {img.dtype} {img.shape}")
    return img


def report_progress(progress: ProgressFn | None, step: int, total: int,
                    loss: Tensor, out: Tensor, preview_every: int, stage: str = "invert") -> None:
    """Send ``Progress("invert", …)`` for 0-based ``step``, with a 256² preview of ``out`` (N,3,S,S) on the
    first and last steps and every ``preview_every`` steps."""
    if progress is None:
        return
    preview = None
    if step == total - 1 or (preview_every > 0 and step % preview_every == 0):
        preview = to_uint8(resize(out.detach().clamp(-1, 1), 256))[0]
    progress(Progress(stage, step + 1, total, loss=float(loss.detach()), preview=preview))


def _encoder_start(aligned: np.ndarray) -> np.ndarray | None:
    """The encoder's W+ guess (23,512) for the face, or None (w_avg) when its file is unusable."""
    from latentstudio.encoder import EncoderError, load_encoder

    try:
        return load_encoder().guess(aligned)
    except EncoderError as exc:
        warnings.warn(f"starting inversion from the average face: {exc}", stacklevel=3)
        return None


def _initial(g: Generator, init: np.ndarray | None) -> tuple[Tensor, Tensor]:
    """Shared w (512,) and per-slot deltas (23,512) to start from."""
    if init is None:
        return g.w_avg.clone(), torch.zeros(NUM_SLOTS, W_DIM, device=g.device)
    from latentstudio.models.generator import as_w_plus

    code = as_w_plus(init).to(g.device)[0]
    base = code.mean(0)
    return base, code - base


def _lr_ramp(t: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """StyleGAN projector's schedule at progress t in [0, 1): warm-up, cosine ramp-down."""
    down = 0.5 - 0.5 * np.cos(min(1.0, (1.0 - t) / rampdown) * np.pi)
    return float(down * min(1.0, (t + 1e-3) / rampup))
