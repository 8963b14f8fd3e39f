"""Fit the distilled preview heads (assets/preview_heads.safetensors) on generated codes.

Run: python bench/fit_preview_heads.py [--samples 160]   (≈ 3 min on 2 CPU cores)
Codes: half plain W samples (ψ uniform in [0.5, 1]), half W+ codes with style mixing at a random
slot plus per-slot jitter, so the heads also see the off-manifold codes inversion produces.
"""

from __future__ import annotations

import argparse

import torch

from latentstudio.models.generator import Generator
from latentstudio.models.preview import fit_preview_heads, save_preview_heads


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=160)
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    g = Generator.load("cpu")
    rng = torch.Generator().manual_seed(args.seed)

    def codes(i: int) -> torch.Tensor:
        psi = 0.5 + 0.5 * torch.rand((), generator=rng).item()
        w = g.map(g.sample_z(args.seed + 2 * i), psi)
        wp = w[:, None].repeat(1, 23, 1)
        if i % 2:
            w2 = g.map(g.sample_z(args.seed + 2 * i + 1), psi)
            cut = int(torch.randint(1, 23, (), generator=rng))
            wp[:, cut:] = w2[:, None]
            wp = wp + 0.3 * torch.randn(wp.shape, generator=rng)
        return wp

    heads = fit_preview_heads(g.synthesis, codes, args.samples)
    save_preview_heads(heads, meta={"samples": str(args.samples), "seed": str(args.seed),
                                    "script": "bench/fit_preview_heads.py"})
    print("saved assets/preview_heads.safetensors")


if __name__ == "__main__":
    main()
