"""Training faces for the identity mapper: seeded generator samples with their measurements.

For every seed: w = map(z(seed), ψ) (512,), the 256² preview render, and three measurements of
that render — the dlib identity descriptor (``IdentityNet.embed_aligned``, 128), dlib's 68
landmarks (in 256² pixels) and the head pose from them (yaw, pitch, roll in degrees), plus a
``detected`` flag (False: dlib's detector missed and the fixed FFHQ box was used).

Faces are cached per chunk of ``CHUNK`` seeds under ``cache_dir`` (atomic ``.npz``), so an
interrupted build resumes and later runs reuse it. Renders already cached by the boundary
trainer (``latentstudio.edit.train``, same seeds, ψ and size) are reused instead of rendering
again; on CPU rendering is by far the most expensive part (~0.5 s per 256² face).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentstudio.atomic import save_npz
import torch

CHUNK = 100
SIZE = 256  # render size of the measurements (the cheap preview route)
W_DIM, EMB_DIM = 512, 128


class TrainingCancelled(Exception):
    """Raised when ``cancelled()`` returns True; finished chunks / checkpoints are kept."""


@dataclass
class Progress:
    """``stage`` ("faces", "surrogates", "latent", "render"), ``step`` of ``total``, a message."""

    stage: str
    step: int
    total: int
    message: str = ""


ProgressFn = Callable[[Progress], None]
CancelFn = Callable[[], bool]


@dataclass
class FaceTable:
    """Seeded faces: seeds (N,) int64, w (N,512) f32, emb (N,128) f32, landmarks (N,68,2) f32 in
    256² pixels, pose (N,3) f32 yaw/pitch/roll degrees, detected (N,) bool."""

    seeds: np.ndarray
    w: np.ndarray
    emb: np.ndarray
    landmarks: np.ndarray
    pose: np.ndarray
    detected: np.ndarray

    def __len__(self) -> int:
        return len(self.seeds)

    def subset(self, idx: np.ndarray) -> FaceTable:
        return FaceTable(self.seeds[idx], self.w[idx], self.emb[idx], self.landmarks[idx],
                         self.pose[idx], self.detected[idx])

    @staticmethod
    def concat(parts: list[FaceTable]) -> FaceTable:
        names = ("seeds", "w", "emb", "landmarks", "pose", "detected")
        return FaceTable(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))


def default_cache_dir() -> Path:
    from latentstudio import paths

    return paths.home() / "cache" / "identity_faces"


def _chunk_path(folder: Path, start: int) -> Path:
    return folder / f"seeds_{start:09d}.npz"


def _read_chunk(path: Path, seeds: np.ndarray) -> FaceTable | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as d:
            n = len(seeds)  # a chunk built for more seeds serves any prefix of them
            if not np.array_equal(d["seeds"][:n], seeds):
                return None
            return FaceTable(d["seeds"][:n], d["w"][:n], d["emb"][:n], d["landmarks"][:n],
                             d["pose"][:n], d["detected"][:n])
    except (OSError, ValueError, KeyError, EOFError):
        return None  # a broken cache file is rebuilt


def _boundary_renders(seeds: np.ndarray, psi: float) -> np.ndarray | None:
    """Renders of exactly these seeds cached by the boundary trainer, or None."""
    try:
        from latentstudio.edit.train import default_cache_dir as boundary_cache
    except ImportError:
        return None
    path = boundary_cache() / "images" / f"psi{psi:g}_size{SIZE}" / f"seeds_{int(seeds[0]):09d}.npy"
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (SIZE, SIZE, 3) or len(arr) < len(seeds):
        return None
    return np.asarray(arr[: len(seeds)])


def measure(images: np.ndarray, identity_net) -> dict[str, np.ndarray]:  # noqa: ANN001 - IdentityNet
    """Measure aligned 256² renders (N,256,256,3) uint8: emb (N,128), landmarks (N,68,2),
    pose (N,3), detected (N,)."""
    from latentstudio.edit import predictors
    from latentstudio.models.generator import from_uint8

    models = predictors.load_models()
    lm = predictors.find_landmarks(predictors.working_images(images), models)
    yaw, pitch, roll = predictors.head_pose(lm.points)
    with torch.no_grad():
        emb = identity_net.embed_aligned(from_uint8(images)).cpu().numpy()
    return {"emb": emb.astype(np.float32),
            "landmarks": (lm.points * (images.shape[1] / predictors.WORK_SIZE)).astype(np.float32),
            "pose": np.stack([yaw, pitch, roll], 1).astype(np.float32),
            "detected": lm.detected & np.isfinite(yaw)}


def _batches(seeds: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(seeds), size):
        yield seeds[i:i + size]


def build_faces(n: int, *, seed: int = 0, psi: float = 0.7, generator=None,  # noqa: ANN001
                identity_net=None, batch: int | None = None, cache_dir: Path | None = None,  # noqa: ANN001
                progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> FaceTable:
    """The face table of seeds ``seed … seed+n-1`` (see module doc), built resumably."""
    if n < 1:
        raise ValueError(f"need at least one face, got n={n}")
    if not 0.0 < psi <= 1.0:
        raise ValueError(f"psi must be in (0, 1], got {psi}")
    from latentstudio.face.chip import IdentityNet
    from latentstudio.models.generator import Generator, to_uint8

    folder = (cache_dir or default_cache_dir()) / f"psi{psi:g}_size{SIZE}"
    if seed % CHUNK:
        raise ValueError(f"the first seed must be a multiple of {CHUNK} (chunks are cached per {CHUNK} seeds), got {seed}")
    starts = list(range(seed, seed + n, CHUNK))
    parts: dict[int, FaceTable] = {}
    todo: list[np.ndarray] = []
    for start in starts:
        seeds = np.arange(start, min(start + CHUNK, seed + n), dtype=np.int64)
        cached = _read_chunk(_chunk_path(folder, start), seeds)
        if cached is None:
            todo.append(seeds)
        else:
            parts[start] = cached
    done = sum(len(p) for p in parts.values())
    if progress:
        progress(Progress("faces", done, n, f"{done} faces cached, {n - done} to build"))
    if todo:
        g = generator or Generator.load(None)
        idn = identity_net or IdentityNet.load(g.device)
        batch = batch or (64 if g.device.type == "cuda" else 4)
    for seeds in todo:
        w_all = g.map(g.sample_z(int(seeds[0]), len(seeds)), psi).cpu().numpy()
        stored = _boundary_renders(seeds, psi)
        meas: list[dict[str, np.ndarray]] = []
        for sub in _batches(seeds, batch):
            if cancelled and cancelled():
                raise TrainingCancelled(f"face building cancelled after {done}/{n} faces")
            if stored is not None:
                images = stored[sub - seeds[0]]
            else:
                w = torch.from_numpy(w_all[sub - seeds[0]]).to(g.device)
                images = to_uint8(g.synthesize(w, size=SIZE))
            meas.append(measure(images, idn))
        m = {k: np.concatenate([x[k] for x in meas]) for k in meas[0]}
        table = FaceTable(seeds, w_all.astype(np.float32), m["emb"], m["landmarks"], m["pose"],
                          m["detected"].astype(bool))
        save_npz(_chunk_path(folder, int(seeds[0])), seeds=table.seeds, w=table.w, emb=table.emb,
                      landmarks=table.landmarks, pose=table.pose, detected=table.detected)
        parts[int(seeds[0])] = table
        done += len(seeds)
        if progress:
            progress(Progress("faces", done, n, f"{done}/{n} faces measured"))
    return FaceTable.concat([parts[s] for s in starts])
