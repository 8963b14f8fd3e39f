"""Fit the face parsing (assets/face_parsing.safetensors) on generated faces.

Run: python bench/fit_face_parsing.py [--samples 160] [--clusters 16]   (≈ 1 min on 2 CPU cores)
Faces: ψ 0.8 samples of seeds 10 000 …; the generator's 128² features are clustered on the unit
sphere, and each cluster is called face by the share of its pixels inside dlib's 68-point hull
plus the forehead just above the brows (``pasteback.IDENTITY_FOREHEAD``) on the faces' 256² renders (``latentstudio.face.parsing``); a face dlib does not find is left out.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from latentstudio.face import parsing
from latentstudio.face.detect import aligned_landmarks
from latentstudio.face.pasteback import IDENTITY_FOREHEAD, aligned_face_mask
from latentstudio.models.generator import Generator, to_uint8


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=160)
    ap.add_argument("--clusters", type=int, default=16)
    ap.add_argument("--seed", type=int, default=10_000)
    args = ap.parse_args()
    start = time.time()
    g = Generator.load("cpu")
    feats, inside = [], []
    with torch.no_grad():
        for i in range(0, args.samples, 16):
            n = min(16, args.samples - i)
            w = g.map(g.sample_z(args.seed + i, n), 0.8)[:, None].repeat(1, 23, 1)
            f = g.synthesis.features(w, parsing.BLOCKS)
            side = f.shape[-1]
            for img, one in zip(to_uint8(g.synthesize(w, 256)), f):
                try:
                    pts = aligned_landmarks(img) * side / img.shape[0]
                except Exception:  # noqa: BLE001 - no face found: the sample is left out
                    continue
                inside.append(aligned_face_mask(pts, side, IDENTITY_FOREHEAD, 0.0) > 0.0)
                feats.append(one[None])
    print(f"{len(feats)} of {args.samples} faces found", flush=True)
    model, share = parsing.fit(torch.cat(feats), np.stack(inside), args.clusters)
    model.save(parsing.ASSET, {"share": " ".join(f"{v:.2f}" for v in share), "samples": str(args.samples), "clusters": str(args.clusters),
                               "seed": str(args.seed), "psi": "0.8", "script": "bench/fit_face_parsing.py",
                               "machine": platform.machine(), "seconds": f"{time.time() - start:.0f}"})
    print("share inside per cluster:", " ".join(f"{k}:{v:.2f}" for k, v in enumerate(share)))
    print(f"{int(model.face.sum())} of {args.clusters} clusters are face; {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
