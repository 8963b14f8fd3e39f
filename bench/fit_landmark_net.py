"""Distil dlib's 68 landmarks into the small CNN of ``latentstudio.face.landmark_net``.

    python bench/fit_landmark_net.py [--data DIR] [--epochs 30] [--out assets/landmark_net.safetensors]
    python bench/fit_landmark_net.py --real [--out assets/landmark_net.safetensors]

Data: the chunks written by ``latentstudio identity data`` (generated faces, broadcast and
style-mixed W+ codes, 128² renders, dlib's landmarks measured on the 256² renders). 10 % of the
faces are held out; the printed error is the mean point distance / inter-ocular distance on
them, overall and for the mouth (points 48–67).

``--real`` fits nothing: it measures the net given by ``--out`` against dlib on the real
portraits (``bench/photos.py``): their aligned photos and the 256² renders of their fast-preset
codes (the kind of image refine and training feed it), as point error / IOD and yaw / pitch
error (solvePnP on both point sets).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from latentstudio.edit.predictors import interocular
from latentstudio.face.landmark_net import LandmarkNet, save_landmark_net
from latentstudio.identity.data import DataError, load_chunks


def evaluate(net: LandmarkNet, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(all points, mouth) mean point error / IOD on images x (N,3,128,128) and targets y (N,68,2)."""
    with torch.no_grad():
        pred = torch.cat([net(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()
    t = y.numpy()
    err = np.linalg.norm(pred - t, axis=-1) / interocular(t)[:, None]
    return float(err.mean()), float(err[:, 48:].mean())


def evaluate_real(path: str, codes_folder: str) -> None:
    """Print the net's error against dlib on the real portraits and their reconstructions."""
    import cv2

    from latentstudio.edit.predictors import find_landmarks, head_pose, load_models
    from latentstudio.face.landmark_net import load_landmark_net
    from latentstudio.models.generator import Generator, from_uint8, to_uint8
    from photos import real_photos
    from transfer import photo_codes

    g = Generator.load("cpu")
    codes, aligned, _ = photo_codes(Path(codes_folder), g, real_photos())
    names = list(codes)
    with torch.no_grad():
        renders = to_uint8(g.synthesize(torch.from_numpy(np.stack([codes[n] for n in names])), size=256))
    photos = np.stack([cv2.resize(aligned[n], (256, 256), interpolation=cv2.INTER_AREA) for n in names])
    net = load_landmark_net("cpu", path)
    print("| images | point error / IOD | mouth / IOD | yaw error ° | pitch error ° |\n|---|---|---|---|---|")
    for label, images in (("aligned photos", photos), ("reconstructions (256² renders)", renders)):
        ref = find_landmarks(images, load_models()).points
        with torch.no_grad():
            pred = net(from_uint8(images)).numpy() * 256
        err = np.linalg.norm(pred - ref, axis=-1) / interocular(ref)[:, None]
        (y, p, _), (y0, p0, _) = head_pose(pred), head_pose(ref)
        print(f"| {label} | {err.mean():.3f} | {err[:, 48:].mean():.3f} | {np.abs(y - y0).mean():.1f} "
              f"(max {np.abs(y - y0).max():.1f}) | {np.abs(p - p0).mean():.1f} (max {np.abs(p - p0).max():.1f}) |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="chunk folder (default: the identity data cache)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="assets/landmark_net.safetensors")
    ap.add_argument("--real", action="store_true", help="only measure --out on the real portraits")
    ap.add_argument("--codes", default="bench/out/transfer/codes", help="with --real: cache of their inversions")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.real:
        evaluate_real(args.out, args.codes)
        return 0
    torch.manual_seed(0)
    try:
        d = load_chunks(args.data)
    except DataError as exc:
        print(f"fit_landmark_net: {exc}", file=sys.stderr)
        return 2
    ok = d["valid"]
    x = torch.from_numpy(d["img128"][ok]).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    y = torch.from_numpy(d["landmarks"][ok] / 256.0).float()
    val = torch.from_numpy(np.random.default_rng(0).random(len(x)) < 0.1)
    xt, yt, xv, yv = x[~val], y[~val], x[val], y[val]
    net = LandmarkNet()
    net.mean_shape.copy_(yt.mean(0).reshape(-1))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    steps = args.epochs * (len(xt) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    t0 = time.monotonic()
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(perm) - args.batch + 1, args.batch):
            b = perm[i:i + args.batch]
            imgs, target = xt[b], yt[b]
            if torch.rand(()) < 0.5:  # mirror: flip the image and the landmark order
                imgs = imgs.flip(-1)
                target = target[:, MIRROR].clone()
                target[..., 0] = 1.0 - target[..., 0] - 1.0 / 256.0
            loss = (net(imgs) - target).pow(2).sum(-1).mean() * 1e4
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        e_all, e_mouth = evaluate(net, xv, yv)
        print(f"epoch {epoch + 1}/{args.epochs}: held-out error / IOD {e_all:.4f} (mouth {e_mouth:.4f}), "
              f"{time.monotonic() - t0:.0f} s", flush=True)
    save_landmark_net(net, args.out, {"train_faces": str(len(xt)), "held_out_faces": str(len(xv)),
                                      "held_out_err_iod": f"{e_all:.4f}", "held_out_mouth_err_iod": f"{e_mouth:.4f}",
                                      "epochs": str(args.epochs)})
    print(f"wrote {args.out}")
    return 0


# dlib's 68-point order under a horizontal flip
MIRROR = np.array([*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
                   45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
                   54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])

if __name__ == "__main__":
    sys.exit(main())
