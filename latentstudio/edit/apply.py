"""Apply slider values to a W+ code: w⁺' = w⁺ + Σ αᵢ·nᵢ on each boundary's slot range.

>>> edited = apply_edits(w_plus, {"smile": 1.5, "age": -1.0}, boundaries, keep=["gender"])

``w_plus`` is (23,512) (numpy or torch; the result has the same type, dtype and device).
``keep`` names directions the edit must not move: every edited direction is first made
orthogonal to all kept ones (:func:`latentstudio.edit.conditional.condition`).
``layers``: None → each boundary's default slot range (``Boundary.layers``); ``(a, b)`` →
that inclusive range for every edit; a mapping name → (a, b) overrides single boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

from latentstudio.edit.boundaries import NUM_SLOTS, W_DIM, Boundary, BoundaryError, check_layers
from latentstudio.edit.conditional import condition

LayerSpec = tuple[int, int] | Mapping[str, tuple[int, int]] | None
T = TypeVar("T")


def _lookup(names: Iterable[str], boundaries: Mapping[str, Boundary], what: str) -> list[Boundary]:
    out = []
    for name in names:
        if name not in boundaries:
            known = ", ".join(sorted(boundaries)) or "none"
            raise BoundaryError(f"unknown {what} {name!r}; available: {known}")
        out.append(boundaries[name])
    return out


def edit_directions(alphas: Mapping[str, float], boundaries: Mapping[str, Boundary],
                    keep: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """name → the (512,) float32 unit direction actually used for it (conditioned on ``keep``)."""
    keep = list(dict.fromkeys(keep))
    both = sorted(set(keep) & set(alphas))
    if both:
        raise BoundaryError(f"cannot edit and keep the same direction: {', '.join(both)}")
    kept = np.stack([b.normal for b in _lookup(keep, boundaries, "kept direction")]) if keep else None
    out = {}
    for b in _lookup(alphas, boundaries, "direction"):
        out[b.name] = b.normal if kept is None else condition(b.normal, kept)
    return out


def slot_range(name: str, boundary: Boundary, layers: LayerSpec) -> tuple[int, int]:
    """The inclusive W+ slot range an edit along ``boundary`` touches (see module doc)."""
    if layers is None:
        return boundary.layers
    if isinstance(layers, Mapping):
        return check_layers(layers[name], f"layers for {name}") if name in layers else boundary.layers
    return check_layers(layers)


def edit_delta(alphas: Mapping[str, float], boundaries: Mapping[str, Boundary], *,
               keep: Iterable[str] = (), layers: LayerSpec = None) -> np.ndarray:
    """The offset Σ αᵢ·nᵢ spread over the slot ranges: (23,512) float32 (zeros outside ranges)."""
    for name, alpha in alphas.items():
        if not isinstance(alpha, (int, float, np.floating, np.integer)) or not math.isfinite(float(alpha)):
            raise BoundaryError(f"edit strength for {name!r} must be a finite number, got {alpha!r}")
    dirs = edit_directions(alphas, boundaries, keep)
    delta = np.zeros((NUM_SLOTS, W_DIM), np.float64)
    for name, direction in dirs.items():
        alpha = float(alphas[name])
        if alpha == 0.0:
            continue
        a, b = slot_range(name, boundaries[name], layers)
        delta[a:b + 1] += alpha * direction.astype(np.float64)
    return delta.astype(np.float32)


def apply_edits(w_plus: T, alphas: Mapping[str, float], boundaries: Mapping[str, Boundary], *,
                keep: Iterable[str] = (), layers: LayerSpec = None) -> T:
    """w_plus (23,512) (or (N,23,512)) + :func:`edit_delta`; same array type as the input."""
    shape = tuple(getattr(w_plus, "shape", ()))
    if shape[-2:] != (NUM_SLOTS, W_DIM):
        raise BoundaryError(f"W+ code must have shape (23,512) or (N,23,512), got {shape}")
    delta = edit_delta(alphas, boundaries, keep=keep, layers=layers)
    return _add(w_plus, delta)


def _add(w_plus: Any, delta: np.ndarray) -> Any:
    if isinstance(w_plus, np.ndarray):
        return (w_plus + delta.astype(w_plus.dtype if w_plus.dtype.kind == "f" else np.float32))
    import torch

    if isinstance(w_plus, torch.Tensor):
        return w_plus + torch.from_numpy(delta).to(device=w_plus.device, dtype=w_plus.dtype)
    raise BoundaryError(f"W+ code must be a numpy array or torch tensor, got {type(w_plus).__name__}")
