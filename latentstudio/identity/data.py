"""Training faces for the identity mapper and the landmark net: generated W+ codes, measured.

Each chunk of ``CHUNK`` faces (seeded, so a build is reproducible and resumable) holds codes that
look like inversions rather than only broadcast w: half are one w on all 23 slots, half are
style-mixed (slots < ``cross`` from w1, the rest from w2, cross in 1…13), all ψ 0.7. Each face
is rendered at 256² and measured there: dlib's 68 landmarks and the head pose from them
(``latentstudio.edit.predictors``; 256² is their working size), and the dlib identity descriptor of the render. The chunk
keeps a 128² copy of the render (the landmark net's input).

Files: ``chunkNNN.npz`` (atomic) with w1, w2 (C,512) f32, cross (C,) int, landmarks (C,68,2) f32
in 256² pixels, valid (C,) bool, yaw/pitch/roll (C,) f64, emb (C,128) f32, img128 (C,128,128,3)
uint8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentstudio.atomic import save_npz
from latentstudio.latent import NUM_SLOTS
from latentstudio.progress import CancelFn, Cancelled, Progress, ProgressFn

CHUNK = 200
PSI = 0.7
SIZE = 256


class DataError(ValueError):
    """No usable training data."""




def default_folder() -> Path:
    from latentstudio import paths

    return paths.home() / "cache" / "identity_data"


def chunk_codes(chunk: int, generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """(w1, w2 (C,512) f32, cross (C,) int) of a chunk: cross = 23 means one w on every slot."""
    rng = np.random.default_rng(10_000 + chunk)
    z = torch.from_numpy(rng.standard_normal((2 * CHUNK, 512)).astype(np.float32))
    with torch.no_grad():
        w = generator.map(z.to(generator.device), PSI).cpu().numpy()
    cross = np.where(rng.random(CHUNK) < 0.5, NUM_SLOTS, rng.integers(1, 14, CHUNK))
    return w[:CHUNK], w[CHUNK:], cross


def mixed_codes(w1: np.ndarray, w2: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """W+ codes (N,23,512): slot s is w1 where s < cross, else w2."""
    take_first = np.arange(NUM_SLOTS)[None, :, None] < cross[:, None, None]
    return np.where(take_first, w1[:, None], w2[:, None]).astype(np.float32)


def build(chunks: int, *, generator, identity_net, folder: Path | None = None,  # noqa: ANN001
          progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> Path:
    """Render and measure ``chunks`` chunks (those already on disk are kept) → the folder."""
    from latentstudio.edit.predictors import find_landmarks, head_pose, load_models
    from latentstudio.models.generator import from_uint8, to_uint8

    folder = folder or default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    pred = load_models()
    for c in range(chunks):
        path = folder / f"chunk{c:03d}.npz"
        if progress:
            progress(Progress("faces", c, chunks, f"chunk {c + 1}/{chunks}"))
        if path.is_file():
            continue
        if cancelled and cancelled():
            raise Cancelled(f"data build cancelled after {c} of {chunks} chunks (kept; run again)")
        w1, w2, cross = chunk_codes(c, generator)
        codes = mixed_codes(w1, w2, cross)
        images, embs = [], []
        with torch.no_grad():
            for i in range(0, CHUNK, 8):
                u8 = to_uint8(generator.synthesize(torch.from_numpy(codes[i:i + 8]), size=SIZE))
                images.append(u8)
                embs.append(identity_net.embed_aligned(from_uint8(u8)).cpu().numpy())
        imgs = np.concatenate(images)
        lm = find_landmarks(imgs, pred)  # the images are at the predictors' working size (256²)
        yaw, pitch, roll = head_pose(lm.points)
        small = imgs.reshape(CHUNK, 128, 2, 128, 2, 3).mean((2, 4)).round().astype(np.uint8)
        save_npz(path, w1=w1, w2=w2, cross=cross, landmarks=lm.points.astype(np.float32),
                 valid=lm.detected & np.isfinite(yaw), yaw=yaw, pitch=pitch, roll=roll,
                 emb=np.concatenate(embs).astype(np.float32), img128=small)
    if progress:
        progress(Progress("faces", chunks, chunks, "done"))
    return folder


def load_chunks(folder: str | Path | None = None) -> dict[str, np.ndarray]:
    """All chunks of a folder concatenated (DataError when there are none)."""
    root = Path(folder) if folder else default_folder()
    files = sorted(root.glob("chunk*.npz"))
    if not files:
        raise DataError(f"{root}: no training chunks (build them with `latentstudio identity data`)")
    parts = []
    for f in files:
        with np.load(f, allow_pickle=False) as d:
            parts.append({k: d[k] for k in d.files})
    keys = set.intersection(*(set(p) for p in parts))
    return {k: np.concatenate([p[k] for p in parts]) for k in sorted(keys)}
