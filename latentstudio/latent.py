"""The shape of the generator's latent codes, and the check every code passes, in one place.

A W code is one style vector (W_DIM,); a W+ code (NUM_SLOTS, W_DIM) gives each of the synthesis
network's 23 styled layers its own (``latentstudio.models.mobilestylegan`` lists the slots).
"""

from __future__ import annotations

import numpy as np

NUM_SLOTS = 23
W_DIM = 512
W_PLUS = (NUM_SLOTS, W_DIM)


def as_code(value: object, what: str = "code", error: type[Exception] = ValueError, *,
            w_ok: bool = True) -> np.ndarray:
    """A finite W+ code (23, 512) float32, always a new array, from a W+ code, a batch of one
    (1, 23, 512) or (``w_ok``) a w code (512,) given to every slot; ``error(message)`` naming
    ``what`` for any other shape, a non-number or NaN / infinity."""
    try:
        arr = np.array(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise error(f"{what} must be a W+ code {W_PLUS}, got {type(value).__name__}") from exc
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if w_ok and arr.shape == (W_DIM,):
        arr = np.repeat(arr[None], NUM_SLOTS, 0)
    if arr.shape != W_PLUS:
        shapes = f"a W+ code {W_PLUS}" + (f" or a w code ({W_DIM},)" if w_ok else "")
        raise error(f"{what} must be {shapes}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise error(f"{what} contains NaN or infinite values")
    return arr


__all__ = ["NUM_SLOTS", "W_DIM", "W_PLUS", "as_code"]
