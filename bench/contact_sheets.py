"""Contact sheets of the 16 highest and 16 lowest scored generated faces, one per predictor.

    python bench/contact_sheets.py [--n 400] [--seed 0] [--faces cache.npy] [--out bench/contact_sheets]

Renders n generator samples (psi 0.7, 256x256; reused from --faces when that file exists, written
there otherwise), scores them with ``latentstudio.edit.predictors.predict_all`` and writes
``<out>/<predictor>.jpg``: top two rows = highest scores (descending), bottom two rows = lowest
(ascending), 128 px thumbnails labelled with their score and seed. Invalid samples are skipped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from latentstudio.edit.predictors import SCORE_NAMES, predict_all

THUMB = 128
COLS = 8
PER_END = 16


def render_faces(n: int, seed: int, batch: int = 16) -> np.ndarray:
    """n generator samples, seeds seed..seed+n-1, psi 0.7: (n, 256, 256, 3) uint8."""
    from latentstudio.models.generator import Generator, to_uint8

    g = Generator.load("cpu")
    out = []
    for start in range(seed, seed + n, batch):
        w = g.map(g.sample_z(start, min(batch, seed + n - start)), psi=0.7)
        out.append(to_uint8(g.synthesize(w, size=256)))
    return np.concatenate(out)


def thumb(face: np.ndarray, label: str) -> np.ndarray:
    """(H, W, 3) RGB -> (128, 128, 3) BGR thumbnail with the label drawn at the bottom."""
    t = cv2.resize(face, (THUMB, THUMB), interpolation=cv2.INTER_AREA)[:, :, ::-1].copy()
    cv2.rectangle(t, (0, THUMB - 14), (THUMB, THUMB), (0, 0, 0), -1)
    cv2.putText(t, label, (2, THUMB - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                cv2.LINE_AA)
    return t


def sheet(faces: np.ndarray, scores: np.ndarray, seeds: np.ndarray, name: str) -> np.ndarray:
    """BGR contact sheet: 16 highest (rows 1-2) over 16 lowest (rows 3-4), with a title bar."""
    order = np.argsort(-scores, kind="stable")
    picks = list(order[:PER_END]) + list(order[::-1][:PER_END])
    tiles = [thumb(faces[i], f"{scores[i]:.3g} #{seeds[i]}") for i in picks]
    rows = [np.hstack(tiles[r * COLS:(r + 1) * COLS]) for r in range(len(tiles) // COLS)]
    gap = np.full((6, THUMB * COLS, 3), (0, 0, 255), np.uint8)
    title = np.zeros((22, THUMB * COLS, 3), np.uint8)
    cv2.putText(title, f"{name}: 16 highest (top), 16 lowest (bottom) of {len(scores)}",
                (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([title, *rows[:2], gap, *rows[2:]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--faces", type=Path, help="cache of rendered faces (.npy)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "contact_sheets")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    if args.faces and args.faces.exists():
        faces = np.load(args.faces)[:args.n]
    else:
        t = time.perf_counter()
        faces = render_faces(args.n, args.seed)
        print(f"rendered {len(faces)} faces in {time.perf_counter() - t:.0f} s")
        if args.faces:
            np.save(args.faces, faces)
    seeds = np.arange(args.seed, args.seed + len(faces))

    t = time.perf_counter()
    scores = predict_all(faces)
    print(f"scored {len(faces)} faces in {time.perf_counter() - t:.1f} s; "
          f"valid {int(scores['valid'].sum())}")
    keep = scores["valid"]
    args.out.mkdir(parents=True, exist_ok=True)
    for name in SCORE_NAMES:
        s = scores[name][keep]
        print(f"{name:11s} min {s.min():8.3f}  median {np.median(s):8.3f}  max {s.max():8.3f}")
        path = args.out / f"{name}.jpg"
        cv2.imwrite(str(path), sheet(faces[keep], s, seeds[keep], name), [cv2.IMWRITE_JPEG_QUALITY, 80])


if __name__ == "__main__":
    main()
