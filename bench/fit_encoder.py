"""Train the inversion encoder (``latentstudio.encoder``, assets/encoder.safetensors) on generated faces.

    python bench/fit_encoder.py data [--chunks 24]          # renders the training faces (resumable)
    python bench/fit_encoder.py train [--minutes 40] [--out assets/encoder.safetensors]

``data`` writes chunks of 1 000 generated faces to ``<cache>/encoder_data``: for each, two w at
one ψ drawn from 0.5–1 (seeds from 2 000 000 on: no overlap with the benches' seeds), 60 % of
them style-mixed at a crossover slot drawn from 2–20 (so the codes vary along the slots, as the
codes of inverted photos do), rendered at 256² and area-reduced to 128². ~45 s a chunk on 2 CPU
cores.

``train`` fits the encoder by regression on the known codes, in units of w's mean spread (so
the directions along which faces vary most weigh most): mean squared error of every slot + ``--delta-weight`` · the squared per-slot
offsets (keeps the guess near W). The last chunk is held out. Each batch is degraded the way
real photos differ from renders: downscaled and upscaled again (faces of ~200 px upscaled to the
alignment), blurred, noisy, shifted by up to 2 px. Checkpoints go to ``<cache>/encoder_train``
every 200 steps and ``train`` resumes from the last one; ``--minutes`` bounds this run. It ends
by writing the weights (with how they were made as metadata) and printing the held-out error.

A second phase (``--init`` the first phase's file, ``--image-weight 1``) adds LPIPS-Alex and MSE
between the guess's 128² render (through the generator, whose weights stay fixed) and the clean
face, which weighs what shows in the image over the directions of w that do not (~0.6 s a step
of 8 on 2 cores). At CPU length it changed nothing measurable, so the shipped weights are the
regression's alone (``assets/MODELS.md``); ``bench/train_encoder_gpu.sh`` runs both phases.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latentstudio.atomic import atomic_write, save_npz
from latentstudio.encoder import ASSET, Encoder, load_encoder, save_encoder
from latentstudio.identity.data import mixed_codes
from latentstudio.latent import NUM_SLOTS
from latentstudio.models.generator import Generator, resize, to_uint8
from latentstudio.paths import home

CHUNK = 1000
SEED0 = 2_000_000


def cache_dir() -> Path:
    return home() / "cache"


def data_dir() -> Path:
    return cache_dir() / "encoder_data"


def make_chunk(g: Generator, index: int, path: Path) -> None:
    """Render chunk ``index`` (1 000 faces) to ``path`` (npz: w1, w2, cross, psi, img128)."""
    rng = np.random.default_rng(1000 + index)
    seed = SEED0 + index * 2 * CHUNK
    psi = torch.from_numpy(rng.uniform(0.5, 1.0, CHUNK).astype(np.float32))[:, None].to(g.device)
    w1, w2 = (torch.cat([g.map(Generator.sample_z(s + i, 100)) for i in range(0, CHUNK, 100)])
              for s in (seed, seed + CHUNK))
    w1, w2 = g.w_avg + psi * (w1 - g.w_avg), g.w_avg + psi * (w2 - g.w_avg)
    cross = np.where(rng.random(CHUNK) < 0.4, NUM_SLOTS, rng.integers(2, 21, CHUNK))  # NUM_SLOTS: no mix
    images = []
    for i in range(0, CHUNK, 8):
        codes = torch.from_numpy(mixed_codes(w1[i:i + 8].cpu().numpy(), w2[i:i + 8].cpu().numpy(), cross[i:i + 8]))
        images.append(to_uint8(resize(g.synthesize(codes, size=256), 128)))
    save_npz(path, w1=w1.cpu().numpy(), w2=w2.cpu().numpy(), cross=cross.astype(np.int64), psi=psi[:, 0].cpu().numpy(),
             img128=np.concatenate(images))


def load_data(folder: Path) -> dict[str, np.ndarray]:
    files = sorted(folder.glob("chunk*.npz"))
    if len(files) < 2:
        raise SystemExit(f"{folder}: fewer than 2 chunks; run `python bench/fit_encoder.py data` first")
    parts = [dict(np.load(f)) for f in files]
    return {k: np.concatenate([p[k] for p in parts]) for k in ("w1", "w2", "cross", "img128")}


def degrade(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Batch (N,3,128,128) in [-1,1] → the same faces as a photo might show them."""
    n = len(x)
    out = []
    for i in range(n):
        img = x[i:i + 1]
        r = torch.rand(5, generator=rng)
        if r[0] < 0.5:  # a small face upscaled to the alignment
            s = int(40 + 88 * float(torch.rand(1, generator=rng)))
            img = F.interpolate(F.interpolate(img, size=(s, s), mode="area"), size=(128, 128), mode="bilinear",
                                align_corners=False)
        if r[1] < 0.3:
            k = torch.tensor([1.0, 2.0, 1.0])
            k = (k[:, None] * k[None]) / 16
            img = F.conv2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 3, 3).contiguous(), groups=3)
        if r[2] < 0.3:
            img = img + torch.randn(img.shape, generator=rng) * 0.04 * float(r[3])
        if r[4] < 0.5:  # the alignment's jitter
            dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=rng))
            img = torch.roll(img, (dy, dx), dims=(2, 3))
        out.append(img)
    return torch.cat(out).clamp(-1, 1)


def batch(data: dict[str, np.ndarray], idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(data["img128"][idx]).permute(0, 3, 1, 2).float() / 127.5 - 1
    y = torch.from_numpy(mixed_codes(data["w1"][idx], data["w2"][idx], data["cross"][idx]))
    return x, y


def evaluate(enc: Encoder, data: dict[str, np.ndarray], idx: np.ndarray) -> tuple[float, float]:
    """Held-out (mean squared error in w-spread units, relative error against always answering w_mean)."""
    enc.eval()
    err = base = 0.0
    with torch.no_grad():
        for i in range(0, len(idx), 200):
            x, y = batch(data, idx[i:i + 200])
            x, y = x.to(enc.w_mean.device), y.to(enc.w_mean.device)
            pred = enc(x)
            err += float(((pred - y) / enc.w_std).pow(2).sum())
            base += float(((enc.w_mean - y) / enc.w_std).pow(2).sum())
    enc.train()
    n = len(idx) * NUM_SLOTS * y.shape[-1]
    return err / n, err / base


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    data = load_data(data_dir())
    n = len(data["w1"])
    held = np.arange(n - CHUNK, n)
    train_idx = np.arange(n - CHUNK)
    images = args.image_weight > 0
    ckpt = cache_dir() / "encoder_train" / ("checkpoint-image.pt" if images else "checkpoint.pt")
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    enc = Encoder().to(device)
    opt = torch.optim.Adam(enc.parameters(), lr=args.lr)
    step, seconds = 0, 0.0
    g = lpips = None
    if images:  # the generator and LPIPS-Alex judge the guess's 128² render against the face
        from latentstudio.losses.lpips import load_lpips

        g = Generator.load(args.device)
        lpips = load_lpips("alex", device).requires_grad_(False)
    if not ckpt.is_file() and args.init:
        enc.load_state_dict(load_encoder(args.init).state_dict())
        print(f"starting from {args.init}")
    elif ckpt.is_file():
        state = torch.load(ckpt, weights_only=True, map_location=device)
        enc.load_state_dict(state["encoder"])
        opt.load_state_dict(state["optimiser"])
        step, seconds = int(state["step"]), float(state["seconds"])
        print(f"resumed at step {step} ({seconds / 60:.0f} min of training)")
    if not ckpt.is_file() and not args.init:
        w = torch.from_numpy(data["w1"][train_idx]).to(device)
        enc.w_mean.copy_(w.mean(0))
        enc.w_std.fill_(float(w.std(0).pow(2).mean().sqrt()))  # one scale: the loss weighs dimensions by their spread
    rng = torch.Generator().manual_seed(step)
    np_rng = np.random.default_rng(step)
    start = time.time()
    enc.train()
    while time.time() - start < args.minutes * 60 and step < args.steps:
        idx = np_rng.choice(train_idx, args.batch, replace=False)
        x, y = batch(data, idx)
        clean, x, y = x.to(device), degrade(x, rng).to(device), y.to(device)
        w, deltas = enc.normalised(x)
        target = (y - enc.w_mean) / enc.w_std
        fit = (w[:, None] + deltas - target).pow(2).mean()
        loss = fit + args.delta_weight * deltas.pow(2).mean()
        if g is not None and lpips is not None:
            render = g.render(enc.w_mean + enc.w_std * (w[:, None] + deltas), 128)
            seen = lpips(render, clean).mean() + F.mse_loss(render, clean)
            loss = loss + args.image_weight * seen
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, step / args.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            shown = f" image {float(seen):.4f}" if images else ""
            print(f"step {step}: fit {float(fit):.4f}{shown} lr {lr:.2e} ({time.time() - start:.0f} s)", flush=True)
        if step % 200 == 0:
            _checkpoint(ckpt, enc, opt, step, seconds + time.time() - start)
    seconds += time.time() - start
    _checkpoint(ckpt, enc, opt, step, seconds)
    mse, rel = evaluate(enc, data, held)
    print(f"held-out ({len(held)} faces): error {mse:.4f} (w-spread units²), relative {rel:.3f}")
    save_encoder(enc.eval().cpu(), args.out, samples=str(len(train_idx)), steps=str(step), batch=str(args.batch),
                 delta_weight=f"{args.delta_weight:g}", image_weight=f"{args.image_weight:g}",
                 started_from=str(args.init or "scratch"), minutes=f"{seconds / 60:.0f}",
                 held_out_relative_error=f"{rel:.4f}", device=str(device))
    print(f"wrote {args.out}")


def _checkpoint(path: Path, enc: Encoder, opt: torch.optim.Optimizer, step: int, seconds: float) -> None:
    def write(f) -> None:  # noqa: ANN001
        torch.save({"encoder": enc.state_dict(), "optimiser": opt.state_dict(), "step": step,
                    "seconds": seconds}, f)

    atomic_write(path, write)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data")
    d.add_argument("--chunks", type=int, default=24)
    d.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    t = sub.add_parser("train")
    t.add_argument("--minutes", type=float, default=40)
    t.add_argument("--steps", type=int, default=20000, help="length of the cosine schedule")
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--delta-weight", type=float, default=0.05)
    t.add_argument("--image-weight", type=float, default=0.0,
                   help="> 0: also LPIPS-Alex + MSE of the guess's 128² render against the face (second phase)")
    t.add_argument("--init", default=None, help="start from these encoder weights (the second phase)")
    t.add_argument("--out", default=str(ASSET))
    t.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    if args.command == "data":
        g = Generator.load(args.device)
        data_dir().mkdir(parents=True, exist_ok=True)
        for i in range(args.chunks):
            path = data_dir() / f"chunk{i:03d}.npz"
            if not path.exists():
                t0 = time.time()
                make_chunk(g, i, path)
                print(f"{path.name}: {time.time() - t0:.0f} s", flush=True)
    else:
        train(args)


if __name__ == "__main__":
    main()
