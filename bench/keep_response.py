"""Does conditioning on slot-range response directions make `--keep` cleaner? (issue 4 experiment)

    python bench/keep_response.py [--samples 3000] [--faces 50]

The shipped normals are fitted in W (a code broadcast to all 23 slots), but smile is edited on
slots 0–6 only. This estimates, for the smile edit's range, the direction in which each kept
predictor actually responds: style-mixed samples (slots 0–6 from w₁, the rest from an independent
w₂, seeds 5 000 000…), a ridge regression of each score on w₁. The smile edit (α ±3 on slots 0–6,
the 50 bench faces, seeds 1 000 000…) is then conditioned on the normals (shipped), on these
response directions, or on both, and the kept predictors' movement compared as in bench/edit.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from edit import population_std
from latentstudio.edit.boundaries import SHIPPED_DIR, load_index
from latentstudio.edit.conditional import condition
from latentstudio.edit.predictors import predict_all
from latentstudio.models.generator import Generator, to_uint8

KEPT = ("yaw", "gender", "age", "eyeglasses")
EDIT, SLOTS = "smile", (0, 6)
NAMES = KEPT + (EDIT,)


def render_scores(g: Generator, codes: torch.Tensor) -> dict[str, np.ndarray]:
    """(N,23,512) → predictor scores (N,) for NAMES, 256² previews in batches of 10."""
    parts = [predict_all(to_uint8(g.synthesize(codes[i:i + 10], size=256))) for i in range(0, len(codes), 10)]
    return {k: np.concatenate([p[k] for p in parts]) for k in NAMES}


def mixed_samples(g: Generator, n: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """w₁ (n,512) on SLOTS and the scores (n, len(NAMES)) of the mixed renders (cached)."""
    if cache.is_file():
        with np.load(cache) as d:
            return d["w1"], d["scores"]
    seeds = np.arange(5_000_000, 5_000_000 + n)
    w1 = g.map(g.sample_z(int(seeds[0]), n), 0.7)
    w2 = g.map(g.sample_z(int(seeds[0]) + 10_000_000, n), 0.7)
    codes = w2[:, None].repeat(1, 23, 1)
    codes[:, SLOTS[0]:SLOTS[1] + 1] = w1[:, None]
    s = render_scores(g, codes)
    scores = np.stack([s[k] for k in NAMES], 1)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, w1=w1.numpy(), scores=scores)
    return w1.numpy(), scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--faces", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(2)
    g = Generator.load("cpu")
    bs = load_index(SHIPPED_DIR)
    x, y = mixed_samples(g, args.samples, Path("bench/out/keep_response") / f"mixed{args.samples}.npz")
    ok = np.isfinite(y).all(1)
    normal = {k: bs[k].normal / np.linalg.norm(bs[k].normal) for k in NAMES}
    response = {}
    for j, k in enumerate(KEPT):
        fit = RidgeCV(alphas=np.logspace(-1, 4, 12)).fit(x[ok], y[ok, j])
        response[k] = fit.coef_ / np.linalg.norm(fit.coef_)
        print(f"{k:<11} R² {fit.score(x[ok], y[ok, j]):.2f}  cos(response, normal) {response[k] @ normal[k]:+.3f}")
    codes = torch.stack([g.seed_w(1_000_000 + i, 0.7) for i in range(args.faces)])[:, None].repeat(1, 23, 1)
    std = population_std(render_scores(g, codes))
    variants = {"plain": normal[EDIT],
                "keep normals (shipped)": condition(normal[EDIT], [normal[k] for k in KEPT]),
                "keep range responses": condition(normal[EDIT], [response[k] for k in KEPT]),
                "keep both": condition(normal[EDIT], [normal[k] for k in KEPT] + [response[k] for k in KEPT])}
    effects = {}
    for name, v in variants.items():
        moved = []
        for alpha in (3.0, -3.0):
            edited = codes.clone()
            edited[:, SLOTS[0]:SLOTS[1] + 1] += alpha * torch.from_numpy(np.asarray(v, np.float32))
            moved.append(render_scores(g, edited))
        effects[name] = {k: float(np.mean(moved[0][k] - moved[1][k]) / std[k]) for k in NAMES}
    plain = sum(abs(effects["plain"][k]) for k in KEPT)
    print(f"\n| {EDIT} edit, slots {SLOTS[0]}–{SLOTS[1]} | " + " | ".join(NAMES) + " | kept/without | own kept |")
    print("|---|" + "---|" * (len(NAMES) + 2))
    for name, e in effects.items():
        ratio = sum(abs(e[k]) for k in KEPT) / plain
        print(f"| {name} | " + " | ".join(f"{e[k]:+.2f}" for k in NAMES)
              + f" | {ratio:.2f} | {e[EDIT] / effects['plain'][EDIT]:.2f} |")


if __name__ == "__main__":
    main()
