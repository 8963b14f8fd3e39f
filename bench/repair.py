"""Artifact repair: train the quality boundary, then measure repair on ψ = 1 samples.

    python bench/repair.py --train [--n 2000] [--ratio 0.05]      # writes boundaries/quality.npy + index entry
    python bench/repair.py [--samples 200] [--seed0 900000]        # the benchmark table + contact sheet

Benchmark, on ``--samples`` ψ = 1 faces (seeds not used in training):

* share judged broken before / after repair by the quality predictor (score < its threshold);
* the same by a second signal not used for training: dlib's landmark fit is inconsistent under a
  mirror (mean landmark distance between the face and its mirrored detection, in units of the
  inter-ocular distance; "broken" above the 95th percentile of clean ψ = 0.7 faces);
* dlib identity distance between each repaired face and its original (mean, max);
* LPIPS change on faces that were already clean (should be 0: they are left alone);
* ``bench/contact_sheets/repair.jpg``: the 8 worst faces before (top) and after (bottom).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from latentstudio.edit.boundaries import SHIPPED_DIR, load_all, save_index
from latentstudio.cli.common import progress_printer
from latentstudio.edit.repair import repair, train_quality_boundary
from latentstudio.models.generator import Generator, from_uint8, to_uint8

#: dlib 68-point index of each landmark's mirror partner
MIRROR_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


def mirror_inconsistency(images: np.ndarray) -> np.ndarray:
    """(N,S,S,3) uint8 → (N,) landmark disagreement between a face and its mirror image."""
    from latentstudio.edit.predictors import predict_all

    a = predict_all(images)
    b = predict_all(np.ascontiguousarray(images[:, :, ::-1]))
    size = images.shape[2]
    pb = b["landmarks"][:, MIRROR_68].copy()
    pb[..., 0] = size - 1 - pb[..., 0]
    iod = np.linalg.norm(a["landmarks"][:, 36:42].mean(1) - a["landmarks"][:, 42:48].mean(1), axis=1)
    d = np.linalg.norm(a["landmarks"] - pb, axis=-1).mean(1) / np.maximum(iod, 1.0)
    d[~(a["valid"] & b["valid"])] = np.inf  # no face found: broken
    return d


def render(g: Generator, codes: np.ndarray) -> np.ndarray:
    return np.concatenate([to_uint8(g.synthesize(torch.from_numpy(codes[i:i + 8]), size=256))
                           for i in range(0, len(codes), 8)])


def sheet(before: np.ndarray, after: np.ndarray, path: Path) -> None:
    thumbs = [np.concatenate(list(row), axis=1) for row in (before, after)]
    img = np.concatenate(thumbs, axis=0)
    img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])


def train(args: argparse.Namespace) -> None:
    g = Generator.load("cpu")
    b = train_quality_boundary(args.n, ratio=args.ratio, generator=g, progress=progress_printer("quality"))
    save_index(Path(args.out) if args.out else SHIPPED_DIR, [b], merge=True)
    print(f"\nquality boundary: val accuracy {b.val_accuracy:.3f}, threshold {b.details['threshold']}")


def bench(args: argparse.Namespace) -> None:
    from latentstudio.edit.quality import quality_scores
    from latentstudio.face.chip import IdentityNet
    from latentstudio.losses.lpips import load_lpips

    g = Generator.load("cpu")
    boundaries = load_all()
    threshold = float(boundaries["quality"].details["threshold"])
    idnet, lp = IdentityNet.load("cpu"), load_lpips("vgg")
    w = g.map(g.sample_z(args.seed0, args.samples), 1.0).cpu().numpy()
    codes = np.repeat(w[:, None], 23, axis=1)
    clean_ref = mirror_inconsistency(render(g, np.repeat(
        g.map(g.sample_z(args.seed0 + 10_000, 100), 0.7).cpu().numpy()[:, None], 23, axis=1)))
    limit2 = float(np.percentile(clean_ref[np.isfinite(clean_ref)], 95))
    before = render(g, codes)
    results = [repair(c, boundaries, generator=g, max_strength=args.max_strength) for c in codes]
    repaired = np.stack([r.w_plus for r in results])
    after = render(g, repaired)
    q0, q1 = quality_scores(before), quality_scores(after)
    m0, m1 = mirror_inconsistency(before), mirror_inconsistency(after)
    moved = np.array([r.alpha > 0 for r in results])
    with torch.no_grad():
        e0 = idnet.embed_aligned(from_uint8(before))
        e1 = idnet.embed_aligned(from_uint8(after))
        ident = (e0 - e1).norm(dim=1).numpy()
        untouched = [float(lp(from_uint8(before[i:i + 1]), from_uint8(after[i:i + 1])))
                     for i in np.flatnonzero(~moved)[:20]]
    print(f"{args.samples} ψ=1 samples (seeds {args.seed0}…), threshold {threshold:.3f}, "
          f"max strength {args.max_strength}, machine: {os.cpu_count()}-core CPU")
    print("| measure | before | after |\n|---|---|---|")
    print(f"| broken by the quality predictor | {(q0 < threshold).mean():.1%} | {(q1 < threshold).mean():.1%} |")
    print(f"| broken by landmark mirror-consistency (not used in training) | {(m0 > limit2).mean():.1%} | {(m1 > limit2).mean():.1%} |")
    print(f"| mean quality score | {q0.mean():.2f} | {q1.mean():.2f} |")
    print(f"\nrepaired (moved) {moved.sum()} / {len(moved)}; mean α {np.mean([r.alpha for r in results]):.2f}")
    if moved.any():
        print(f"identity distance repaired ↔ original: mean {ident[moved].mean():.3f}, "
              f"max {ident[moved].max():.3f}, share ≤ 0.45: {(ident[moved] <= 0.45).mean():.1%}")
    print(f"LPIPS change on clean faces (left alone): max {max(untouched, default=0.0):.4f}")
    worst = np.argsort(q0)[:8]
    sheet(before[worst], after[worst], Path(__file__).parent / "contact_sheets" / "repair.jpg")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--ratio", type=float, default=0.05)
    ap.add_argument("--out", help="boundary folder to write (default: the shipped boundaries/)")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--seed0", type=int, default=900_000)
    ap.add_argument("--max-strength", type=float, default=3.0)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    train(args) if args.train else bench(args)


if __name__ == "__main__":
    main()
