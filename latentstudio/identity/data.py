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


def chunk_codes(chunk: int, generator, n: int = CHUNK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """(w1, w2 (n,512) f32, cross (n,) int) of a chunk: cross = 23 means one w on every slot."""
    rng = np.random.default_rng(10_000 + chunk)
    z = torch.from_numpy(rng.standard_normal((2 * n, 512)).astype(np.float32))
    with torch.no_grad():
        w = generator.map(z.to(generator.device), PSI).cpu().numpy()
    cross = np.where(rng.random(n) < 0.5, NUM_SLOTS, rng.integers(1, 14, n))
    return w[:n], w[n:], cross


def mixed_codes(w1: np.ndarray, w2: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """W+ codes (N,23,512): slot s is w1 where s < cross, else w2."""
    take_first = np.arange(NUM_SLOTS)[None, :, None] < cross[:, None, None]
    return np.where(take_first, w1[:, None], w2[:, None]).astype(np.float32)


def measure_chunk(c: int, generator, identity_net, predictors, n: int = CHUNK) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Chunk ``c`` (``n`` faces): its codes rendered at 256² and measured → the arrays of ``chunkNNN.npz``."""
    from latentstudio.edit.predictors import find_landmarks, head_pose
    from latentstudio.models.generator import from_uint8, to_uint8

    w1, w2, cross = chunk_codes(c, generator, n)
    codes = mixed_codes(w1, w2, cross)
    images, embs = [], []
    with torch.no_grad():
        for i in range(0, n, 8):
            u8 = to_uint8(generator.synthesize(torch.from_numpy(codes[i:i + 8]), size=SIZE))
            images.append(u8)
            embs.append(identity_net.embed_aligned(from_uint8(u8)).cpu().numpy())
    imgs = np.concatenate(images)
    lm = find_landmarks(imgs, predictors)  # the images are at the predictors' working size (256²)
    yaw, pitch, roll = head_pose(lm.points)
    small = imgs.reshape(n, 128, 2, 128, 2, 3).mean((2, 4)).round().astype(np.uint8)
    return {"w1": w1, "w2": w2, "cross": cross, "landmarks": lm.points.astype(np.float32),
            "valid": lm.detected & np.isfinite(yaw), "yaw": yaw, "pitch": pitch, "roll": roll,
            "emb": np.concatenate(embs).astype(np.float32), "img128": small}


class _RayChunks:
    """A Ray actor for ``build(ray=…)``: its own generator, identity net and predictors."""

    def __init__(self, device: str, n: int) -> None:
        from latentstudio.edit.predictors import load_models
        from latentstudio.face.chip import IdentityNet
        from latentstudio.models.generator import Generator

        torch.set_num_threads(1)
        self.g = Generator.load(device)
        self.net, self.pred, self.n = IdentityNet.load(self.g.device), load_models(), n

    def make(self, c: int) -> tuple[int, dict[str, np.ndarray]]:
        return c, measure_chunk(c, self.g, self.net, self.pred, self.n)


def build(chunks: int, *, generator, identity_net, folder: Path | None = None,  # noqa: ANN001
          progress: ProgressFn | None = None, cancelled: CancelFn | None = None,
          ray: str | bool = False, actors: int = 0, chunk_size: int = CHUNK) -> Path:
    """Render and measure ``chunks`` chunks (those already on disk are kept) → the folder.
    ``ray`` (an address, or True for a local cluster): the missing chunks are made by Ray actors
    (``latentstudio.cluster``) and saved as they arrive."""
    from latentstudio.edit.predictors import load_models

    folder = folder or default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    todo = [c for c in range(chunks) if not (folder / f"chunk{c:03d}.npz").is_file()]
    done = chunks - len(todo)
    if progress:
        progress(Progress("faces", done, chunks, f"{done} chunks on disk"))
    if ray is not False and todo:
        from latentstudio import cluster

        device = "cuda" if generator.device.type == "cuda" else "cpu"
        with cluster.session(ray if isinstance(ray, str) else None) as r:
            for c, arrays in cluster.map_unordered(r, _RayChunks, (device, chunk_size), "make", todo, actors=actors,
                                                   num_gpus=1 if device == "cuda" else 0):
                save_npz(folder / f"chunk{c:03d}.npz", **arrays)
                done += 1
                if progress:
                    progress(Progress("faces", done, chunks, f"chunk {c}"))
                if cancelled and cancelled():
                    raise Cancelled(f"data build cancelled after {done} of {chunks} chunks (kept; run again)")
        return folder
    pred = load_models()
    for c in todo:
        if cancelled and cancelled():
            raise Cancelled(f"data build cancelled after {done} of {chunks} chunks (kept; run again)")
        save_npz(folder / f"chunk{c:03d}.npz", **measure_chunk(c, generator, identity_net, pred, chunk_size))
        done += 1
        if progress:
            progress(Progress("faces", done, chunks, f"chunk {c + 1}/{chunks}"))
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
