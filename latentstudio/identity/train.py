"""Train the identity mapper (gates and low-rank correction) through the generator.

Each step draws identity sources A and attribute sources B from the training codes
(``latentstudio.identity.data``: broadcast and style-mixed W+), moves each at random along the
yaw, pitch, smile and mouth-open boundaries (``augment``: real pairs differ more in pose and
expression than two samples do), adds per-slot noise so they look like inversions (``noise`` ×
W's per-axis spread, independently per slot; ``inverted``: that share of them replaced by the
encoder's guess of their render, codes shaped like a photo's inversion), renders A, B
and the output at ``size``² (the preview route) and minimises

    w_id · ‖E(out) − E(A)‖              dlib's ResNet (torch port) on the renders
  + w_lm · mean ‖L(out) − L(B)‖² / IOD² our landmark net, all 68 points, in inter-ocular units
  + w_bg · L1(out, B) outside B's face hull (background, hair, clothes)

with Adam. Every ``same_every``-th step uses A = B with a different noise draw, which the anchored
form already maps to B exactly; it is skipped (nothing to learn). Checkpoints (``workdir/
checkpoint.pt``) make the run resumable; ``cancelled()`` stops it after writing one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from latentstudio.identity.data import DataError, load_chunks, mixed_codes
from latentstudio.identity.lock import Direction, directions
from latentstudio.identity.mapper import NUM_SLOTS, Mapper, MapperConfig, pca_basis, save_mapper
from latentstudio.progress import CancelFn, Cancelled, Progress, ProgressFn

HULL = list(range(17)) + list(range(26, 16, -1))  # jaw line, then the brows right to left


#: attribute boundaries the mapper never takes from A (pose and expression)
KEEP = ("yaw", "pitch", "smile", "mouth_open", "surprise", "eyes_open")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (hashed to decide whether a checkpoint fits)."""

    bands: int = 16
    rank: int = 32
    steps: int = 400
    batch: int = 4
    size: int = 128
    lr: float = 0.05  # gates
    lr_rank: float = 0.002  # the low-rank correction
    noise: float = 0.3
    w_id: float = 1.0
    w_lm: float = 20.0
    w_bg: float = 1.0
    fine_gate: float = 0.5  # σ(gate) of the slots the training route never renders
    augment: float = 2.5  # each code moves up to ± this along yaw, pitch, smile and mouth-open
    keep: tuple[str, ...] = KEEP  # boundaries whose components the mapper always takes from B
    seed: int = 0
    init: str = ""  # a mapper weight file to start from (fine-tuning, e.g. at a larger size); "" = fresh
    inverted: float = 0.0  # share of the training codes replaced by the encoder's guess of their render

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch < 1:
            raise ValueError("steps must be >= 0 and batch >= 1")
        if self.size not in (128, 256, 512):
            raise ValueError(f"size must be 128, 256 or 512, got {self.size}")
        if not 0.0 < self.fine_gate < 1.0:
            raise ValueError(f"fine_gate must be in (0, 1), got {self.fine_gate}")
        if not 0.0 <= self.inverted <= 1.0:
            raise ValueError(f"inverted must be in [0, 1], got {self.inverted}")

    def digest(self) -> str:
        """Hash of the settings a checkpoint depends on (``steps`` left out: a run can be extended)."""
        d = {k: v for k, v in asdict(self).items() if k != "steps"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


#: W+ slots each training route renders (the preview heads stop after block 4 / 5 / 6)
ROUTE_SLOTS = {128: 13, 256: 16, 512: 19}


@dataclass
class TrainResult:
    mapper: Mapper
    last_losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def default_workdir() -> Path:
    from latentstudio import paths

    return paths.home() / "cache" / "identity_train"


def hull_masks(landmarks: np.ndarray, size: int) -> Tensor:
    """1 outside the face hull (jaw + brows, grown by 10 %), 0 inside → (N, 1, size, size)."""
    out = np.ones((len(landmarks), size, size), np.float32)
    for m, pts in zip(out, landmarks):
        p = pts[HULL] * size
        c = p.mean(0)
        p = c + 1.1 * (p - c)
        top = p[:, 1].min() - 0.25 * (p[:, 1].max() - p[:, 1].min())  # forehead above the brows
        p = np.vstack([p, [[p[-1, 0], top], [p[17, 0], top]]])
        cv2.fillPoly(m, [cv2.convexHull(p.astype(np.int32))], 0.0)
    return torch.from_numpy(out)[:, None]


def interocular(lm: Tensor) -> Tensor:
    """(N, 68, 2) → (N,) distance between the eye centres."""
    return torch.linalg.vector_norm(lm[:, 36:42].mean(1) - lm[:, 42:48].mean(1), dim=1)


@dataclass
class Nets:
    """The frozen networks a step needs."""

    generator: object
    identity: object  # latentstudio.face.chip.IdentityNet
    landmarks: object  # latentstudio.face.landmark_net.LandmarkNet


def attribute_targets(nets: Nets, img_b: Tensor) -> tuple[Tensor, Tensor]:
    """What the attribute face's render (N, 3, S, S) fixes: its landmarks (N, 68, 2) from our
    landmark net, and the mask outside its face hull (N, 1, S, S)."""
    with torch.no_grad():
        lm_b = nets.landmarks(img_b)  # type: ignore[operator]
        return lm_b, hull_masks(lm_b.cpu().numpy(), img_b.shape[-1]).to(img_b.device)


def image_losses(nets: Nets, out: Tensor, e_target: Tensor, img_b: Tensor, lm_b: Tensor,
                 mask: Tensor, view: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
    """The three terms on a rendered output (N, 3, S, S): identity distance to ``e_target``
    (N, 128), landmark error to ``lm_b`` in inter-ocular units², L1 to ``img_b`` outside the face.
    ``view``: what the identity net sees instead of ``out`` (e.g. ``refine.random_view``)."""
    e = nets.identity.embed_aligned(out if view is None else view(out))  # type: ignore[attr-defined]
    lm = nets.landmarks(out)  # type: ignore[operator]
    iod = interocular(lm_b)[:, None]
    return {"id": torch.linalg.vector_norm(e - e_target, dim=1).mean(),
            "lm": (torch.linalg.vector_norm(lm - lm_b, dim=-1) / iod).pow(2).mean(),
            "bg": ((out - img_b).abs() * mask).sum() / (mask.sum() * 3 + 1e-6)}


def step_losses(mapper: Mapper, nets: Nets, a: Tensor, b: Tensor, cfg: TrainConfig) -> dict[str, Tensor]:
    """The three loss terms for identity sources a and attribute sources b (N, 23, 512)."""
    g = nets.generator
    with torch.no_grad():
        e_a = nets.identity.embed_aligned(g.synthesize(a, size=cfg.size))  # type: ignore[attr-defined]
        img_b = g.synthesize(b, size=cfg.size)  # type: ignore[attr-defined]
    lm_b, mask = attribute_targets(nets, img_b)
    out = g.synthesize(mapper(a, b), size=cfg.size, grad=True)  # type: ignore[attr-defined]
    return image_losses(nets, out, e_a, img_b, lm_b, mask)


AUGMENT = ("yaw", "pitch", "smile", "mouth_open")  # attributes real pairs differ in most


def keep_basis(names: tuple[str, ...]) -> Tensor:
    """Orthonormal basis (512, k) of the shipped boundaries ``names`` (DataError if one is missing)."""
    from latentstudio.edit.boundaries import load_all

    if not names:
        return torch.zeros(512, 0)
    found = load_all()
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"no boundary for {', '.join(missing)} (needed by the mapper's keep list)")
    q, _ = np.linalg.qr(np.stack([found[n].normal for n in names]).T)
    return torch.from_numpy(np.ascontiguousarray(q)).float()


def _codes(data: dict[str, np.ndarray], idx: np.ndarray, rng: np.random.Generator, spread: np.ndarray,
           cfg: TrainConfig, moves: tuple[Direction, ...]) -> Tensor:
    """Training codes: mixed W+ codes, moved at random along ``moves`` (pose and expression
    vary far more between two photos than between two ψ 0.7 samples), plus per-slot noise."""
    codes = mixed_codes(data["w1"][idx], data["w2"][idx], data["cross"][idx])
    for d in moves:
        alpha = rng.uniform(-cfg.augment, cfg.augment, len(idx)) * (rng.random(len(idx)) < 0.5)
        codes += (alpha[:, None, None] * d.as_w_plus()[None]).astype(np.float32)
    codes += cfg.noise * spread * rng.standard_normal(codes.shape).astype(np.float32)
    return torch.from_numpy(codes)


def _encoder(device: torch.device):  # noqa: ANN202 - latentstudio.encoder.Encoder
    from latentstudio.encoder import EncoderError, load_encoder

    try:
        return load_encoder().to(device).eval().requires_grad_(False)
    except EncoderError as exc:
        raise DataError(f"inverted training codes need the encoder: {exc}") from exc


def _as_inverted(codes: Tensor, encoder: torch.nn.Module | None, nets: Nets, rng: np.random.Generator,
                 share: float) -> Tensor:
    """``codes`` (N, 23, 512) with about ``share`` of them replaced by the encoder's guess of
    their 256² render: W+ codes off W in the way an inverted photo's code is (each slot its own
    w, the fine slots loose), as the identity panel's inputs are (issue 21)."""
    if encoder is None:
        return codes
    pick = torch.from_numpy(rng.random(len(codes)) < share).to(codes.device)
    if not bool(pick.any()):
        return codes
    with torch.no_grad():
        guess = encoder(nets.generator.synthesize(codes[pick], size=256))  # type: ignore[attr-defined]
    out = codes.clone()
    out[pick] = guess
    return out


def train_mapper(cfg: TrainConfig, nets: Nets, *, data_folder: Path | None = None, workdir: Path | None = None,
                 restart: bool = False, progress: ProgressFn | None = None,
                 cancelled: CancelFn | None = None, log_every: int = 10) -> TrainResult:
    """Run (or resume) the training described in the module docstring."""
    t0 = time.monotonic()
    data = load_chunks(data_folder)
    w = np.concatenate([data["w1"], data["w2"]])
    spread = w.std(0).astype(np.float32)
    torch.manual_seed(cfg.seed)
    keep = keep_basis(cfg.keep)
    mapper = Mapper(MapperConfig(bands=cfg.bands, rank=cfg.rank, keep=keep.shape[1]), pca_basis(w))
    mapper.keep.copy_(keep)
    fine = ROUTE_SLOTS[cfg.size]
    with torch.no_grad():
        mapper.gate[fine:] = float(np.log(cfg.fine_gate / (1 - cfg.fine_gate)))
    opt = torch.optim.Adam([{"params": [mapper.gate], "lr": cfg.lr},
                            {"params": [mapper.down, mapper.up], "lr": cfg.lr_rank}])
    workdir = workdir or default_workdir()
    ck_path = workdir / "checkpoint.pt"
    step = 0
    if ck_path.is_file() and not restart:
        ck = torch.load(ck_path, map_location="cpu", weights_only=True)
        if ck.get("config") == cfg.digest():
            mapper.load_state_dict(ck["mapper"])
            opt.load_state_dict(ck["opt"])
            step = int(ck["step"])
    if step == 0 and cfg.init:
        _start_from(mapper, Path(cfg.init))
    dev = nets.identity.device  # type: ignore[attr-defined]
    mapper.to(dev)
    moves = directions(AUGMENT) if cfg.augment > 0 else ()
    encoder = _encoder(dev) if cfg.inverted > 0 else None
    acc: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    while step < cfg.steps:
        if cancelled and cancelled():
            _checkpoint(mapper, opt, cfg, step, ck_path)
            raise Cancelled(f"training cancelled at step {step}/{cfg.steps} (checkpoint kept; run again)")
        rng = np.random.default_rng([cfg.seed, step])
        ia, ib = rng.integers(0, len(data["w1"]), (2, cfg.batch))
        a = _as_inverted(_codes(data, ia, rng, spread, cfg, moves).to(dev), encoder, nets, rng, cfg.inverted)
        b = _as_inverted(_codes(data, ib, rng, spread, cfg, moves).to(dev), encoder, nets, rng, cfg.inverted)
        terms = step_losses(mapper, nets, a, b, cfg)
        loss = cfg.w_id * terms["id"] + cfg.w_lm * terms["lm"] + cfg.w_bg * terms["bg"]
        opt.zero_grad()
        loss.backward()
        mapper.gate.grad[fine:] = 0.0  # type: ignore[index]
        opt.step()
        step += 1
        for k, v in terms.items():
            acc.setdefault(k, []).append(float(v.detach()))
        if step % log_every == 0 or step == cfg.steps:
            last = {k: float(np.mean(v)) for k, v in acc.items()}
            acc = {}
            if progress:
                progress(Progress("train", step, cfg.steps, " ".join(f"{k} {v:.4f}" for k, v in last.items())))
            _checkpoint(mapper, opt, cfg, step, ck_path)
    return TrainResult(mapper.eval().requires_grad_(False), last, time.monotonic() - t0)


def _start_from(mapper: Mapper, path: Path) -> None:
    """Copy a trained mapper's weights into ``mapper`` (DataError when its shape differs). A
    mapper that kept other boundaries gives everything but them: the run keeps its own."""
    from dataclasses import replace

    from latentstudio.identity.mapper import MapperError, load_mapper

    try:
        init = load_mapper(path)
    except MapperError as exc:
        raise DataError(f"cannot start from {path}: {exc}") from exc
    if replace(init.config, keep=mapper.config.keep) != mapper.config:
        raise DataError(f"cannot start from {path}: it has {init.config}, this run {mapper.config}")
    mapper.load_state_dict({k: v for k, v in init.state_dict().items() if k != "keep"}, strict=False)


def _checkpoint(mapper: Mapper, opt: torch.optim.Optimizer, cfg: TrainConfig, step: int, path: Path) -> None:
    from latentstudio.atomic import atomic_write

    state = {"config": cfg.digest(), "step": step, "mapper": mapper.state_dict(), "opt": opt.state_dict()}
    atomic_write(path, lambda f: torch.save(state, f))


def write_result(result: TrainResult, cfg: TrainConfig, out: Path, extra: dict[str, str] | None = None) -> None:
    """Save the trained mapper with its training description in the file's metadata."""
    info = {"train_config": json.dumps(asdict(cfg)), "last_losses": json.dumps(result.last_losses),
            "train_seconds": f"{result.seconds:.0f}", "slots": str(NUM_SLOTS)}
    info.update(extra or {})
    save_mapper(result.mapper, out, info)
