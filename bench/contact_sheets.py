"""Contact sheets of the 16 highest and 16 lowest scored generated faces, one per predictor.

    python bench/contact_sheets.py [--n 400] [--seed 0] [--faces cache.npy] [--out bench/contact_sheets]
    python bench/contact_sheets.py --quality [--n 400] [--seed 1000] [--faces cache.npy]

Renders n generator samples (psi 0.7, 256x256; reused from --faces when that file exists, written
there otherwise, with the W codes beside it as ``<stem>_w.npy``), scores them with
``latentstudio.edit.predictors.predict_all`` and writes ``<out>/<predictor>.jpg``: top two rows =
highest scores (descending), bottom two rows = lowest (ascending), 128 px thumbnails labelled
with their score and seed. Invalid samples are skipped.

``--quality`` renders psi = 1 samples instead, scores them with the shipped quality model
(``latentstudio.edit.repair.QualityModel``: pose-relative signals), prints each signal's spread
and writes ``<out>/quality.jpg`` (16 cleanest over 16 worst).
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


def render_faces(n: int, seed: int, psi: float = 0.7, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """n generator samples, seeds seed..seed+n-1 (batches of 16 seeds each: ``sample_z(start, 16)``):
    faces (n, 256, 256, 3) uint8 and their W codes (n, 512) float32."""
    from latentstudio.models.generator import Generator, to_uint8

    g = Generator.load("cpu")
    faces, codes = [], []
    for start in range(seed, seed + n, batch):
        w = g.map(g.sample_z(start, min(batch, seed + n - start)), psi=psi)
        faces.append(to_uint8(g.synthesize(w, size=256)))
        codes.append(w.numpy())
    return np.concatenate(faces), np.concatenate(codes)


def cached_faces(path: Path | None, n: int, seed: int, psi: float) -> tuple[np.ndarray, np.ndarray]:
    """Faces and codes from ``path`` (+ ``<stem>_w.npy``) when present, else rendered and saved there."""
    codes_path = path.with_name(f"{path.stem}_w.npy") if path else None
    if path and path.exists() and codes_path and codes_path.exists():
        return np.load(path)[:n], np.load(codes_path)[:n]
    t = time.perf_counter()
    faces, codes = render_faces(n, seed, psi)
    print(f"rendered {len(faces)} faces in {time.perf_counter() - t:.0f} s")
    if path and codes_path:
        np.save(path, faces)
        np.save(codes_path, codes)
    return faces, codes


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


def quality_sheet(faces: np.ndarray, codes: np.ndarray, seeds: np.ndarray, out: Path) -> None:
    """Score faces with the shipped quality model (``latentstudio.edit.repair``), print each
    signal's spread, write quality.jpg."""
    from latentstudio.edit.boundaries import load_all
    from latentstudio.edit.repair import measure_samples, quality_model

    t = time.perf_counter()
    measured = measure_samples(faces)
    print(f"quality signals of {len(faces)} faces in {time.perf_counter() - t:.1f} s")
    model = quality_model(load_all())
    for name, v in model.signals(measured).items():
        print(f"{name:16s} pose-relative z: median {float(np.median(v)):7.3f}  5th percentile {np.percentile(v, 5):7.3f}")
    scores = model.score(measured)
    print(f"score: min {scores.min():.2f} median {np.median(scores):.2f} max {scores.max():.2f}; "
          f"below the clean threshold {model.threshold:.2f}: {(scores < model.threshold).mean():.1%}")
    print("worst 16 seeds:", " ".join(str(s) for s in seeds[np.argsort(scores)[:16]]))
    cv2.imwrite(str(out / "quality.jpg"), sheet(faces, scores, seeds, "quality"), [cv2.IMWRITE_JPEG_QUALITY, 80])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, help="first seed (default 0, or 1000 with --quality)")
    ap.add_argument("--faces", type=Path, help="cache of rendered faces (.npy)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "contact_sheets")
    ap.add_argument("--quality", action="store_true", help="psi = 1 samples, quality sheet only")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seed = args.seed if args.seed is not None else (1000 if args.quality else 0)

    faces, codes = cached_faces(args.faces, args.n, seed, 1.0 if args.quality else 0.7)
    seeds = np.arange(seed, seed + len(faces))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quality:
        quality_sheet(faces, codes, seeds, args.out)
        return

    t = time.perf_counter()
    scores = predict_all(faces)
    print(f"scored {len(faces)} faces in {time.perf_counter() - t:.1f} s; "
          f"valid {int(scores['valid'].sum())}")
    keep = scores["valid"]
    for name in SCORE_NAMES:
        s = scores[name][keep]
        print(f"{name:11s} min {s.min():8.3f}  median {np.median(s):8.3f}  max {s.max():8.3f}")
        path = args.out / f"{name}.jpg"
        cv2.imwrite(str(path), sheet(faces[keep], s, seeds[keep], name), [cv2.IMWRITE_JPEG_QUALITY, 80])


if __name__ == "__main__":
    main()
