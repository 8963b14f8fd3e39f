"""Conditional editing: make an edit direction orthogonal to directions that must stay put.

InterFaceGAN (Shen et al.): to change attribute n without moving attributes c₁ … c_k, edit along
the component of n orthogonal to span(c₁ … c_k), renormalised to unit length. Closed forms:

* k = 1: n − (n·c)c / |c|²
* k = 2: n − a·c₁ − b·c₂ with, for unit c₁, c₂ and ρ = c₁·c₂,
  a = (n·c₁ − ρ n·c₂) / (1 − ρ²), b = (n·c₂ − ρ n·c₁) / (1 − ρ²)
* any k: least squares, x = argmin |Cᵀx − n| (i.e. (CCᵀ)x = Cn), result n − Cᵀx; this also
  handles linearly dependent conditions (rank-deficient C).

All functions take and return numpy float arrays; directions are (512,) (any length D works).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latentstudio.edit.boundaries import BoundaryError

#: a projected direction shorter than this (relative to |n|) lies in the span of the conditions
DEGENERATE = 1e-4
#: two unit conditions with |c₁·c₂| above this are treated as parallel by the k = 2 closed form
PARALLEL = 1.0 - 1e-9


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n == 0:
        raise BoundaryError("direction is zero or not finite")
    return v / n


def orthogonal_component(n: np.ndarray, conditions: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """The part of n (D,) orthogonal to span(conditions) (k, D), not renormalised: (D,) float64.

    Uses the k = 1 and k = 2 closed forms when they apply and least squares otherwise.
    """
    n = np.asarray(n, np.float64)
    c = np.asarray(conditions, np.float64).reshape(-1, n.shape[-1]) if len(conditions) else np.zeros((0, n.shape[-1]))
    if not np.all(np.isfinite(c)):
        raise BoundaryError("condition directions must be finite")
    c = c[np.linalg.norm(c, axis=1) > 0]
    if len(c) == 0:
        return n.copy()
    if len(c) == 1:
        c1 = c[0]
        return n - (n @ c1) / (c1 @ c1) * c1
    if len(c) == 2:
        c1, c2 = _unit(c[0]), _unit(c[1])
        rho = float(c1 @ c2)
        if abs(rho) < PARALLEL:
            a = (n @ c1 - rho * (n @ c2)) / (1.0 - rho * rho)
            b = (n @ c2 - rho * (n @ c1)) / (1.0 - rho * rho)
            return n - a * c1 - b * c2
    x, *_ = np.linalg.lstsq(c.T, n, rcond=None)
    return n - c.T @ x


def condition(n: np.ndarray, conditions: np.ndarray | Sequence[np.ndarray], *, normalize: bool = True) -> np.ndarray:
    """Direction n (D,) made orthogonal to every condition (k, D): unit (D,) float32 by default.

    Raises BoundaryError when n lies (almost) in the span of the conditions: nothing would be
    left to edit.
    """
    n = np.asarray(n, np.float64)
    norm_n = float(np.linalg.norm(n))
    if not np.isfinite(norm_n) or norm_n == 0:
        raise BoundaryError("edit direction is zero or not finite")
    out = orthogonal_component(n, conditions)
    norm = float(np.linalg.norm(out))
    if norm < DEGENERATE * norm_n:
        raise BoundaryError("the edit direction lies in the span of the kept directions: "
                            "keeping them leaves nothing to edit")
    return (out / norm if normalize else out).astype(np.float32)
