"""Train the identity mapper (Nitzan et al. 2020 recipe, adapted to a CPU budget).

Stages (each reports ``Progress`` and polls ``cancelled()``; a cancelled run raises
``TrainingCancelled`` after writing a checkpoint, and the same call resumes it):

1. **faces** — ``data.build_faces``: seeded samples (ψ 0.7) rendered at 256² and measured with
   the dlib identity net, dlib's 68 landmarks and the head pose (cached per chunk).
2. **surrogates** — two MLPs on w fitted to those measurements: ``lm`` (w → 68 landmarks) and
   ``id`` (w → 128-d dlib descriptor), with a held-out split whose errors are reported. dlib's
   landmarks are not differentiable; the landmark surrogate is the differentiable landmark loss
   of both training stages. The identity surrogate is only used by the cheap latent stage.
3. **latent** — mapper steps without rendering: identity = ‖id(out) − e_A‖ (e_A = the real
   descriptor of face A), landmarks = MSE of points 17–67 between lm(out) and lm(w_B), and on
   every ``same_every``-th step A = B with a latent reconstruction ‖out − w_A‖² standing in for
   the pixel loss; a latent discriminator on w (non-saturating + R1) keeps outputs in W.
   Attribute sources B are fresh samples of the mapping network (free), identity sources A come
   from the face table (their descriptors cost a render each).
4. **render** — the same losses with the real thing where it is affordable: the output is rendered
   at 256² (``g.synthesize(..., grad=True)``) and identity is the dlib net's distance on the
   render; on same-face steps the pixel loss is 0.84·(1 − MS-SSIM) + 0.16·L1 against the render of
   w_A. Landmarks stay on the surrogate, the discriminator stays on.

Checkpoints (``workdir/checkpoint.pt``: mapper, discriminator, optimiser states, stage and step;
``workdir/surrogates.safetensors``) make runs resumable: the same config continues where it
stopped, a different config starts over (``restart=True`` forces that).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from latentstudio.identity import losses
from latentstudio.identity.data import (
    CancelFn,
    FaceTable,
    Progress,
    ProgressFn,
    TrainingCancelled,
    build_faces,
)
from latentstudio.identity.mapper import EMB_DIM, Mapper, MapperConfig, Normalisation, save_mapper

LM_POINTS = slice(17, 68)  # paper: landmarks 17-67 (no jaw line)
LM_SIZE = 256.0  # landmarks are regressed as fractions of the 256² render


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (hashed to decide whether a checkpoint fits)."""

    faces: int = 5000
    psi: float = 0.7
    hidden: tuple[int, ...] = (1024, 1024, 512)
    slots: tuple[int, int] = (0, 22)
    surrogate_epochs: int = 40
    latent_steps: int = 10000
    latent_batch: int = 64
    render_steps: int = 0
    render_batch: int = 2
    lr: float = 1e-4
    render_lr: float = 1e-5  # render stage: 1e-4 wrecked landmarks in a CPU trial (module doc)
    d_lr: float = 1e-4
    same_every: int = 3
    w_id: float = 1.0
    w_lm: float = 0.2
    w_rec: float = 1.0
    w_pix: float = 1.0
    w_adv: float = 0.1
    r1_gamma: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.faces < 20:
            raise ValueError(f"need at least 20 training faces, got {self.faces}")
        if min(self.same_every, self.latent_batch, self.render_batch) < 1:
            raise ValueError("same_every and batch sizes must be at least 1")
        if min(self.latent_steps, self.render_steps, self.surrogate_epochs) < 0:
            raise ValueError("step and epoch counts must not be negative")
        if self.surrogate_epochs < 1:
            raise ValueError("surrogate_epochs must be at least 1")
        if not 0.0 < self.psi <= 1.0:
            raise ValueError(f"psi must be in (0, 1], got {self.psi}")

    def digest(self) -> str:
        """Hash of the settings a checkpoint depends on; stage lengths are left out, so a run
        can be extended (more steps) and still resume."""
        d = {k: v for k, v in asdict(self).items() if k not in ("latent_steps", "render_steps")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class TrainResult:
    """What a run produced: the mapper, surrogate validation errors, last logged losses."""

    mapper: Mapper
    surrogate_errors: dict[str, float] = field(default_factory=dict)
    last_losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def default_workdir() -> Path:
    from latentstudio import paths

    return paths.home() / "cache" / "identity_train"


def _atomic_torch_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".pt", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- surrogates
@dataclass
class Surrogates:
    """Differentiable stand-ins: ``lm`` w (N,512) → (N,68,2) fractions of the side; ``id`` → (N,128)."""

    lm: losses.LatentNet
    id: losses.LatentNet
    errors: dict[str, float]

    def landmarks(self, w: Tensor) -> Tensor:
        return self.lm(w).view(-1, 68, 2)


def _fit_latent_net(x: np.ndarray, y: np.ndarray, norm: Normalisation, *, epochs: int, seed: int,
                    val: np.ndarray, cancelled: CancelFn | None, report) -> losses.LatentNet:  # noqa: ANN001
    """Regress y (N,k) on w (N,512) with an MLP (AdamW, dropout-free, best held-out epoch kept)."""
    torch.manual_seed(seed)
    net = losses.LatentNet(y.shape[1], w_mean=norm.w_mean, w_scale=norm.w_scale)
    yt = torch.from_numpy(y).float()
    net.out_mean.copy_(yt[~val].mean(0))
    net.out_scale.copy_(yt[~val].std(0).mean())
    xt = torch.from_numpy(x).float()
    tr_idx = torch.from_numpy(np.flatnonzero(~val))
    opt = torch.optim.AdamW(net.net.parameters(), 1e-3, weight_decay=1e-2)
    best, best_state = math.inf, None
    for epoch in range(epochs):
        net.train()
        perm = tr_idx[torch.randperm(len(tr_idx))]
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            loss = ((net(xt[b]) - yt[b]) / net.out_scale).pow(2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if cancelled and cancelled():
            raise TrainingCancelled("surrogate fitting cancelled")
        with torch.no_grad():
            err = float(((net(xt[val]) - yt[val]) / net.out_scale).pow(2).sum(1).mean()) if val.any() else -epoch
        if err < best:
            best, best_state = err, {k: v.clone() for k, v in net.state_dict().items()}
        report(epoch + 1)
    assert best_state is not None
    net.load_state_dict(best_state)
    return net.eval().requires_grad_(False)


def _interocular(lm: np.ndarray) -> np.ndarray:
    return np.linalg.norm(lm[:, 36:42].mean(1) - lm[:, 42:48].mean(1), axis=1)


def fit_surrogates(faces: FaceTable, norm: Normalisation, *, epochs: int, seed: int = 0,
                   progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> Surrogates:
    """Fit the landmark and identity surrogates on the detected faces; 10 % held out for errors."""
    ok = faces.detected
    w, lm, emb = faces.w[ok], faces.landmarks[ok] / LM_SIZE, faces.emb[ok]
    val = np.random.default_rng(seed).random(len(w)) < 0.1
    total = 2 * epochs

    def report(offset: int):  # noqa: ANN202
        return lambda e: progress and progress(Progress("surrogates", offset + e, total,
                                                        f"surrogate epoch {offset + e}/{total}"))

    lm_net = _fit_latent_net(w, lm.reshape(len(w), -1), norm, epochs=epochs, seed=seed, val=val,
                             cancelled=cancelled, report=report(0))
    id_net = _fit_latent_net(w, emb, norm, epochs=epochs, seed=seed + 1, val=val,
                             cancelled=cancelled, report=report(epochs))
    with torch.no_grad():
        wt = torch.from_numpy(w[val])
        lm_pred = lm_net(wt).view(-1, 68, 2).numpy()
        id_pred = id_net(wt).numpy()
    iod = _interocular(lm[val])
    point_err = np.linalg.norm(lm_pred - lm[val], axis=-1)
    errors = {
        "val_faces": float(val.sum()),
        "lm_err_iod": float((point_err[:, LM_POINTS].mean(1) / iod).mean()),
        "lm_mouth_err_iod": float((point_err[:, 48:68].mean(1) / iod).mean()),
        "id_err": float(np.linalg.norm(id_pred - emb[val], axis=1).mean()),
        "id_err_mean_predictor": float(np.linalg.norm(emb[val] - emb[~val].mean(0), axis=1).mean()),
    }
    return Surrogates(lm_net, id_net, errors)


def save_surrogates(s: Surrogates, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {f"lm.{k}": v.contiguous() for k, v in s.lm.state_dict().items()}
    tensors.update({f"id.{k}": v.contiguous() for k, v in s.id.state_dict().items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".surrogates-", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"errors": json.dumps(s.errors)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_surrogates(path: Path) -> Surrogates:
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        errors = json.loads((f.metadata() or {}).get("errors", "{}"))
    lm, idn = losses.LatentNet(68 * 2), losses.LatentNet(EMB_DIM)
    lm.load_state_dict({k[3:]: v for k, v in tensors.items() if k.startswith("lm.")})
    idn.load_state_dict({k[3:]: v for k, v in tensors.items() if k.startswith("id.")})
    return Surrogates(lm.eval().requires_grad_(False), idn.eval().requires_grad_(False), errors)


# ----------------------------------------------------------------------------- steps
@dataclass
class _State:
    mapper: Mapper
    disc: losses.LatentNet
    opt: torch.optim.Optimizer
    d_opt: torch.optim.Optimizer
    stage: str = "latent"
    step: int = 0


def _landmark_loss(s: Surrogates, out_w: Tensor, attr_w: Tensor) -> Tensor:
    """Mean squared error of points 17-67, in percent of the image side, surrogate vs surrogate."""
    a = s.landmarks(out_w)[:, LM_POINTS]
    b = s.landmarks(attr_w)[:, LM_POINTS].detach()
    return ((a - b) * 100).pow(2).sum(-1).mean()


def _fresh_w(g, n: int, psi: float, gen: torch.Generator) -> Tensor:  # noqa: ANN001
    z = torch.randn(n, 512, generator=gen)
    return g.map(z, psi)


def _d_step(st: _State, real: Tensor, fake: Tensor, cfg: TrainConfig) -> float:
    loss = losses.d_loss(st.disc, real, fake, cfg.r1_gamma)
    st.d_opt.zero_grad()
    loss.backward()
    st.d_opt.step()
    return float(loss.detach())


def _pairs(faces: FaceTable, n: int, same: bool, g, cfg: TrainConfig,  # noqa: ANN001
           gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(identity descriptors e_A (n,128), identity sources w_A (n,512), attribute w_B (n,512))."""
    idx = torch.randint(len(faces), (n,), generator=gen).numpy()
    emb = torch.from_numpy(faces.emb[idx]).to(g.device)
    w_a = torch.from_numpy(faces.w[idx]).to(g.device)
    w_b = w_a.clone() if same else _fresh_w(g, n, cfg.psi, gen)
    return emb, w_a, w_b


def latent_step(st: _State, s: Surrogates, faces: FaceTable, g, cfg: TrainConfig) -> dict[str, float]:  # noqa: ANN001
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + st.step)
    same = st.step % cfg.same_every == 0
    emb, w_a, w_b = _pairs(faces, cfg.latent_batch, same, g, cfg, gen)
    out = st.mapper(emb, w_b).mean(1)  # W inputs stay W: one w per sample
    terms = {"lm": _landmark_loss(s, out, w_b), "adv": losses.g_adv_loss(st.disc, out)}
    if same:
        terms["rec"] = ((out - w_a) / st.mapper.w_scale).pow(2).sum(1).mean()
    else:
        terms["id"] = torch.linalg.vector_norm(s.id(out) - emb, dim=1).mean()
    loss = (cfg.w_lm * terms["lm"] + cfg.w_adv * terms["adv"] + cfg.w_rec * terms.get("rec", 0)
            + cfg.w_id * terms.get("id", 0))
    st.opt.zero_grad()
    loss.backward()
    st.opt.step()
    terms_f = {k: float(v.detach()) for k, v in terms.items()}
    terms_f["d"] = _d_step(st, _fresh_w(g, cfg.latent_batch, cfg.psi, gen), out, cfg)
    return terms_f


def render_step(st: _State, s: Surrogates, faces: FaceTable, g, idn, cfg: TrainConfig) -> dict[str, float]:  # noqa: ANN001
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 500_000_000 + st.step)
    same = st.step % cfg.same_every == 0
    emb, w_a, w_b = _pairs(faces, cfg.render_batch, same, g, cfg, gen)
    out_plus = st.mapper(emb, w_b)
    out = out_plus.mean(1)
    img = g.synthesize(out_plus, size=256, grad=True)
    terms = {"lm": _landmark_loss(s, out, w_b), "adv": losses.g_adv_loss(st.disc, out)}
    if same:
        with torch.no_grad():
            target = g.synthesize(w_a, size=256)
        terms["pix"] = losses.pixel_loss(img, target).mean()
    else:
        terms["id"] = torch.linalg.vector_norm(idn.embed_aligned(img) - emb, dim=1).mean()
    loss = (cfg.w_lm * terms["lm"] + cfg.w_adv * terms["adv"] + cfg.w_pix * terms.get("pix", 0)
            + cfg.w_id * terms.get("id", 0))
    st.opt.zero_grad()
    loss.backward()
    st.opt.step()
    terms_f = {k: float(v.detach()) for k, v in terms.items()}
    terms_f["d"] = _d_step(st, _fresh_w(g, cfg.render_batch * 8, cfg.psi, gen), out, cfg)
    return terms_f


# ----------------------------------------------------------------------------- driver
def _new_state(cfg: TrainConfig, norm: Normalisation, device: torch.device) -> _State:
    torch.manual_seed(cfg.seed)
    mapper = Mapper(MapperConfig(hidden=tuple(cfg.hidden), slots=tuple(cfg.slots)), norm).to(device)
    disc = losses.LatentNet(1, w_mean=norm.w_mean, w_scale=norm.w_scale).to(device)
    return _State(mapper, disc,
                  torch.optim.Adam(mapper.net.parameters(), cfg.lr, betas=(0.9, 0.999)),
                  torch.optim.Adam(disc.net.parameters(), cfg.d_lr, betas=(0.5, 0.999)))


def _save_checkpoint(st: _State, cfg: TrainConfig, path: Path) -> None:
    _atomic_torch_save({"config": cfg.digest(), "stage": st.stage, "step": st.step,
                        "mapper": st.mapper.state_dict(), "disc": st.disc.state_dict(),
                        "opt": st.opt.state_dict(), "d_opt": st.d_opt.state_dict()}, path)


def _load_checkpoint(st: _State, cfg: TrainConfig, path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        ck = torch.load(path, map_location=st.mapper.w_mean.device, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError):
        return False  # damaged: start over
    if ck.get("config") != cfg.digest():
        return False
    st.mapper.load_state_dict(ck["mapper"])
    st.disc.load_state_dict(ck["disc"])
    st.opt.load_state_dict(ck["opt"])
    st.d_opt.load_state_dict(ck["d_opt"])
    st.stage, st.step = ck["stage"], int(ck["step"])
    return True


def train_mapper(cfg: TrainConfig, *, workdir: Path | None = None, device: str | None = None,
                 restart: bool = False, checkpoint_every: int = 500, log_every: int = 100,
                 progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> TrainResult:
    """Run (or resume) the training described in the module docstring; returns the mapper."""
    from latentstudio.face.chip import IdentityNet
    from latentstudio.models.generator import Generator

    t0 = time.monotonic()
    workdir = workdir or default_workdir()
    workdir.mkdir(parents=True, exist_ok=True)
    g = Generator.load(device)
    idn = IdentityNet.load(g.device)
    faces = build_faces(cfg.faces, psi=cfg.psi, generator=g, identity_net=idn,
                        progress=progress, cancelled=cancelled)
    faces = faces.subset(np.flatnonzero(faces.detected))
    norm = Normalisation.fit(faces.w, faces.emb)

    sur_path = workdir / f"surrogates-{cfg.digest()}.safetensors"
    if sur_path.is_file() and not restart:
        sur = load_surrogates(sur_path)
    else:
        sur = fit_surrogates(faces, norm, epochs=cfg.surrogate_epochs, seed=cfg.seed,
                             progress=progress, cancelled=cancelled)
        save_surrogates(sur, sur_path)
    sur.lm.to(g.device)
    sur.id.to(g.device)

    st = _new_state(cfg, norm, g.device)
    ck_path = workdir / "checkpoint.pt"
    if not restart:
        _load_checkpoint(st, cfg, ck_path)
    log_path = workdir / "log.jsonl"
    last: dict[str, float] = {}
    plan = [("latent", cfg.latent_steps), ("render", cfg.render_steps)]
    for stage, total in plan:
        if plan.index((stage, total)) < [p[0] for p in plan].index(st.stage):
            continue  # finished in an earlier run
        if st.stage != stage:
            st.stage, st.step = stage, 0
        for group in st.opt.param_groups:
            group["lr"] = cfg.lr if stage == "latent" else cfg.render_lr
        acc: dict[str, list[float]] = {}
        while st.step < total:
            if cancelled and cancelled():
                _save_checkpoint(st, cfg, ck_path)
                raise TrainingCancelled(f"training cancelled at {stage} step {st.step}/{total} "
                                        f"(checkpoint kept; run again to resume)")
            st.mapper.train()
            terms = (latent_step(st, sur, faces, g, cfg) if stage == "latent"
                     else render_step(st, sur, faces, g, idn, cfg))
            st.step += 1
            for k, v in terms.items():
                acc.setdefault(k, []).append(v)
            if st.step % log_every == 0 or st.step == total:
                last = {k: float(np.mean(v)) for k, v in acc.items()}
                acc = {}
                with open(log_path, "a") as f:
                    f.write(json.dumps({"stage": stage, "step": st.step, **last}) + "\n")
                if progress:
                    progress(Progress(stage, st.step, total,
                                      " ".join(f"{k} {v:.4f}" for k, v in sorted(last.items()))))
            if st.step % checkpoint_every == 0 or st.step == total:
                _save_checkpoint(st, cfg, ck_path)
    return TrainResult(st.mapper.eval(), sur.errors, last, time.monotonic() - t0)


def write_result(result: TrainResult, cfg: TrainConfig, out: Path, extra: dict[str, str] | None = None) -> None:
    """Save the trained mapper with its training description in the file's metadata."""
    info = {"train_config": json.dumps(asdict(cfg)),
            "surrogate_errors": json.dumps(result.surrogate_errors),
            "last_losses": json.dumps(result.last_losses),
            "train_seconds": f"{result.seconds:.0f}"}
    info.update(extra or {})
    save_mapper(result.mapper, out, info)
