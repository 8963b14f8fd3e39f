"""GANSpace-style unsupervised directions: principal components of the W distribution.

Härkönen et al. (GANSpace): sample many z, map them to w, run PCA on w; the leading components
are interpretable edit directions (pose, gender, age, background, lighting …), strongest when
applied to a slot range. We compute them ourselves from the mapping network (no images needed)
and ship ``boundaries/pca_w.npz``: ``mean`` (512,), ``components`` (K,512) orthonormal rows in
decreasing variance, ``std`` (K,) the standard deviation of w along each component, plus
``samples`` and ``seed``. Each component's sign is fixed so that its largest-magnitude entry is
positive (PCA signs are otherwise arbitrary).

As sliders they are :class:`~latentstudio.edit.boundaries.Boundary` objects named ``pc00``,
``pc01`` …, with a recommended range of ±2σ (σ = that component's std).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentstudio.edit.boundaries import SHIPPED_DIR, W_DIM, Boundary, BoundaryError

PCA_FILE = SHIPPED_DIR / "pca_w.npz"


@dataclass(frozen=True)
class PCA:
    """mean (512,), components (K,512) orthonormal, std (K,) — all float32."""

    mean: np.ndarray
    components: np.ndarray
    std: np.ndarray
    samples: int
    seed: int


def fit_pca(generator, *, samples: int = 100_000, components: int = 20,  # noqa: ANN001
            seed: int = 0, batch: int = 8192) -> PCA:
    """PCA of w = map(z), z ~ N(0, I) seeded (ψ = 1), via the 512×512 covariance."""
    import torch


    if not 1 <= components <= W_DIM:
        raise ValueError(f"components must be in 1..{W_DIM}, got {components}")
    if samples <= components:
        raise ValueError(f"need more samples than components, got {samples} ≤ {components}")
    g = generator
    rng = torch.Generator().manual_seed(seed)
    total = np.zeros(W_DIM, np.float64)
    outer = np.zeros((W_DIM, W_DIM), np.float64)
    for start in range(0, samples, batch):
        z = torch.randn(min(batch, samples - start), W_DIM, generator=rng)
        w = g.map(z, 1.0).cpu().numpy().astype(np.float64)
        total += w.sum(0)
        outer += w.T @ w
    mean = total / samples
    cov = outer / samples - np.outer(mean, mean)
    var, vec = np.linalg.eigh(cov)  # ascending
    order = np.argsort(var)[::-1][:components]
    comps = vec[:, order].T  # (K,512)
    flip = np.sign(comps[np.arange(components), np.abs(comps).argmax(1)])
    comps = comps * flip[:, None]
    std = np.sqrt(np.maximum(var[order], 0.0))
    return PCA(mean.astype(np.float32), comps.astype(np.float32), std.astype(np.float32), samples, seed)


def save_pca(pca: PCA, path: Path = PCA_FILE) -> None:
    """Write the PCA to an .npz atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pca-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, mean=pca.mean, components=pca.components, std=pca.std,
                     samples=np.int64(pca.samples), seed=np.int64(pca.seed))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_pca(path: Path = PCA_FILE) -> PCA:
    """Read a PCA file written by :func:`save_pca`; BoundaryError when missing or malformed."""
    if not path.is_file():
        raise BoundaryError(f"{path}: no PCA file (make one with `latentstudio boundaries pca`)")
    try:
        with np.load(path, allow_pickle=False) as d:
            mean, comps, std = d["mean"], d["components"], d["std"]
            samples, seed = int(d["samples"]), int(d["seed"])
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise BoundaryError(f"{path}: not a readable PCA file ({exc})") from exc
    k = comps.shape[0] if comps.ndim == 2 else -1
    if mean.shape != (W_DIM,) or comps.shape != (k, W_DIM) or std.shape != (k,) or k < 1:
        raise BoundaryError(f"{path}: expected mean (512,), components (K,512), std (K,); got "
                            f"{mean.shape}, {comps.shape}, {std.shape}")
    if not (np.all(np.isfinite(comps)) and np.all(np.isfinite(std)) and np.all(np.isfinite(mean))):
        raise BoundaryError(f"{path}: PCA contains NaN or infinite values")
    return PCA(mean.astype(np.float32), comps.astype(np.float32), std.astype(np.float32), samples, seed)


def pca_boundaries(pca: PCA, count: int | None = None) -> dict[str, Boundary]:
    """The first ``count`` components as sliders ``pc00`` … (range ±2σ, all slots by default)."""
    k = pca.components.shape[0] if count is None else min(count, pca.components.shape[0])
    out = {}
    for i in range(k):
        s = float(pca.std[i])
        name = f"pc{i:02d}"
        out[name] = Boundary(
            name=name, normal=pca.components[i], label=f"PCA {i}", sign="unsupervised (GANSpace)",
            range=(-2 * s, 2 * s), val_accuracy=None, n=pca.samples, predictor=None,
            command=f"latentstudio boundaries pca --samples {pca.samples} --seed {pca.seed}",
            source="pca", details={"std": round(s, 4)})
    return out


def load_pca_boundaries(count: int | None = None, path: Path = PCA_FILE) -> dict[str, Boundary]:
    """Shipped PCA sliders, or {} when no PCA file is present."""
    if not path.is_file():
        return {}
    return pca_boundaries(load_pca(path), count)
