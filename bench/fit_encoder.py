"""Fit the linear inversion encoder (assets/encoder.safetensors) on generated faces.

    latentstudio boundaries train … --keep-images      # caches the 256² renders it scores
    python bench/fit_encoder.py [--n 15000] [--ridge 10] [--size 32]

Faces: seeds 0 … n−1, ψ 0.7, the 256² renders cached by ``boundaries train --keep-images``
(rendered here when the cache lacks them: ~0.17 s a face on a 2-core CPU); their w come from the
mapping network. The last 500 are held out and only scored. ``--scan`` prints the held-out error
for several ridge strengths and sizes instead of writing the file.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from latentstudio.encoder import ASSET, fit_encoder, save_encoder
from latentstudio.models.generator import Generator, to_uint8


def faces(g: Generator, n: int, psi: float = 0.7, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(n,256,256,3) uint8 renders of seeds 0 … n−1 (from the score cache when present) and their w."""
    from latentstudio.edit.train import CHUNK, _read_images, default_cache_dir, sample_w

    seeds = np.arange(n, dtype=np.int64)
    w = sample_w(g, seeds, psi)
    folder = default_cache_dir() / "images" / f"psi{psi:g}_size{size}"
    out, rendered = [], 0
    for start in range(0, n, CHUNK):
        block = seeds[start:start + CHUNK]
        cached = _read_images(folder, block, size)
        if cached is None:
            with torch.no_grad():
                cached = np.concatenate([to_uint8(g.synthesize(torch.from_numpy(w[i:i + 4]), size=size))
                                         for i in range(start, start + len(block), 4)])
            rendered += len(block)
        out.append(cached)
    print(f"{n} faces, {n - rendered} from the render cache, {rendered} rendered")
    return np.concatenate(out), w


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=15000)
    ap.add_argument("--ridge", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--scan", action="store_true")
    args = ap.parse_args()
    g = Generator.load("cpu")
    images, w = faces(g, args.n)
    if args.scan:
        for size in (16, 24, 32):
            for ridge in (1.0, 10.0, 100.0):
                enc = fit_encoder(images, w, ridge=ridge, size=size)
                print(f"size {size} ridge {ridge:g}: held-out relative error {enc.info['relative_error']}")
        return
    enc = fit_encoder(images, w, ridge=args.ridge, size=args.size)
    save_encoder(enc, ASSET, psi="0.7", seeds=f"0-{args.n - 1}",
                 command=f"python bench/fit_encoder.py --n {args.n} --ridge {args.ridge:g} --size {args.size}")
    print(f"wrote {ASSET} ({ASSET.stat().st_size / 1e6:.1f} MB): {enc.info}")


if __name__ == "__main__":
    main()
