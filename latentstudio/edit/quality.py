"""How clean a generated (or aligned) face looks: one score per image, higher = cleaner.

Built from signals that were measured to separate broken psi = 1 samples (melted faces, double
faces, objects through the face) from clean ones. Reference: 400 samples (seeds 1000-1399,
psi 1, 256x256), 14 of them judged broken by eye; ROC AUC of each signal alone for "broken":

=========================================================  =====  ==========================
signal                                                      AUC    used
=========================================================  =====  ==========================
``detector``: dlib HOG detector score at the face position   0.81   yes (higher = cleaner)
``identity_norm``: length of dlib's ResNet embedding         0.79   yes (higher = cleaner)
``identity_mirror``: embedding distance face <-> its mirror  0.77   yes (lower = cleaner)
``code_distance``: ``|w - w_avg|`` of the code               0.89   yes, when codes are given
Mahalanobis distance of w (cov of 8192 mapped z)             0.85   no: plain distance does better
68-landmark residual after a similarity fit to the mean      0.69   no: mostly measures head pose
``solvePnP`` reprojection error of the landmarks             0.37   no: broken faces fit *better*
left/right lightness asymmetry in the canonical frame        0.56   no: mostly measures lighting
high-frequency energy in the face                            0.54   no
=========================================================  =====  ==========================

Each used signal becomes a robust z-score against :data:`REFERENCE` (median and 1.4826 * MAD on
the reference set, signed so that + = cleaner); the score is their mean. Equal weights, nothing
fitted to the labels. AUC of the score: 0.91 from the images alone, 0.94 with the codes.
``bench/contact_sheets.py --quality`` re-measures the reference and draws the best and worst.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from latentstudio.edit.predictors import FALLBACK_BOX, WORK_SIZE, load_models, working_images

if TYPE_CHECKING:
    from latentstudio.face.chip import IdentityNet


class QualityError(ValueError):
    """Bad input to the quality scorer."""


@dataclass(frozen=True)
class Reference:
    """Median and scale (1.4826 * MAD) of a signal on the reference set; sign +1: higher = cleaner."""

    median: float
    scale: float
    sign: float


#: Measured on 400 psi = 1 samples (seeds 1000-1399, 256x256) by ``bench/contact_sheets.py --quality``.
REFERENCE: dict[str, Reference] = {
    "detector": Reference(1.832, 0.617, +1.0),
    "identity_norm": Reference(1.488, 0.0793, +1.0),
    "identity_mirror": Reference(0.209, 0.0402, -1.0),
    "code_distance": Reference(9.618, 1.759, -1.0),
}
IMAGE_SIGNALS = ("detector", "identity_norm", "identity_mirror")
#: Detector score given when the detector finds nothing near the face position, even at a
#: threshold of DETECTOR_THRESHOLD (the lowest score seen on 400 psi = 1 samples was -0.73).
NO_DETECTION = -1.5
DETECTOR_THRESHOLD = -1.0
BATCH = 32


@functools.lru_cache(maxsize=1)
def _identity_net() -> IdentityNet:
    """dlib's face-recognition ResNet from the model cache (loaded once per process)."""
    from latentstudio.face.chip import IdentityNet

    return IdentityNet.load("cpu")


@functools.lru_cache(maxsize=1)
def _w_avg() -> np.ndarray:
    """The generator's average w (512,) from the model cache."""
    from safetensors.numpy import load_file

    from latentstudio.models.fetch import require

    return load_file(str(require("mobilestylegan") / "w_avg.safetensors"))["w_avg"].astype(np.float64)


def detector_scores(work: np.ndarray) -> np.ndarray:
    """(N, 256, 256, 3) uint8 -> (N,) best dlib detector score of a box centred near the FFHQ
    face position (within 0.2 of the side), NO_DETECTION if there is none."""
    detector = load_models().detector
    fx0, fy0, fx1, fy1 = (v * WORK_SIZE for v in FALLBACK_BOX)
    centre = np.array([(fx0 + fx1) / 2, (fy0 + fy1) / 2])
    out = []
    for image in work:
        rects, scores, _ = detector.run(image, 0, DETECTOR_THRESHOLD)
        best = NO_DETECTION
        for rect, score in zip(rects, scores):
            c = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
            if np.linalg.norm(c - centre) < 0.2 * WORK_SIZE:
                best = max(best, float(score))
        out.append(best)
    return np.asarray(out, np.float64)


def identity_signals(work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 256, 256, 3) uint8 -> embedding norm (N,), distance to the mirror image's embedding (N,)."""
    net = _identity_net()
    norms, mirror = [], []
    for start in range(0, len(work), BATCH):
        x = torch.from_numpy(work[start:start + BATCH]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        with torch.no_grad():
            e = net.embed_aligned(x)
            em = net.embed_aligned(torch.flip(x, dims=[3]))
        norms.append(e.norm(dim=1))
        mirror.append((e - em).norm(dim=1))
    return torch.cat(norms).double().numpy(), torch.cat(mirror).double().numpy()


def code_distance(codes: np.ndarray | torch.Tensor, w_avg: np.ndarray | None = None) -> np.ndarray:
    """W codes (N, 512) or W+ codes (N, 23, 512) -> (N,) distance from w_avg (RMS over W+ slots)."""
    c = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if c.ndim == 2:
        c = c[:, None]
    if c.ndim != 3 or c.shape[-1] != 512 or not np.issubdtype(c.dtype, np.floating):
        raise QualityError(f"codes must be float (N, 512) or (N, 23, 512), got {c.dtype} {c.shape}")
    if not np.isfinite(c).all():
        raise QualityError("codes contain NaN or infinity")
    ref = _w_avg() if w_avg is None else np.asarray(w_avg, np.float64).reshape(512)
    return np.sqrt(np.square(c.astype(np.float64) - ref).sum(-1).mean(-1))


def quality_signals(images: np.ndarray, codes: np.ndarray | torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Raw signals (each (N,) float64) of FFHQ-aligned images (N, H, W, 3) uint8 [and their codes]."""
    try:
        work = working_images(np.asarray(images))
    except ValueError as exc:
        raise QualityError(str(exc)) from exc
    distance = None if codes is None else code_distance(codes)
    if distance is not None and len(distance) != len(work):
        raise QualityError(f"{len(distance)} codes for {len(work)} images")
    out = {"detector": detector_scores(work)}
    out["identity_norm"], out["identity_mirror"] = identity_signals(work)
    if distance is not None:
        out["code_distance"] = distance
    return out


#: dlib 68-point index of each landmark's mirror partner
MIRROR_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


def landmark_mirror(landmarks: np.ndarray, mirrored: np.ndarray, size: int) -> np.ndarray:
    """How much dlib's 68-point fit of a face disagrees with its fit of the mirror image, mapped
    back (mean point distance / inter-ocular distance) → (N,). A clean face's fit agrees with
    itself under a mirror at any pose; a melted one does not. Inputs: (N, 68, 2) pixels of the
    (N, size, size) images and of their left–right mirror images."""
    pb = mirrored[:, MIRROR_68].copy()
    pb[..., 0] = size - 1 - pb[..., 0]
    iod = np.linalg.norm(landmarks[:, 36:42].mean(1) - landmarks[:, 42:48].mean(1), axis=1)
    return np.linalg.norm(landmarks - pb, axis=-1).mean(1) / np.maximum(iod, 1.0)


def combine(signals: dict[str, np.ndarray]) -> np.ndarray:
    """Signals -> (N,) mean robust z-score against REFERENCE (+ = cleaner)."""
    z = [REFERENCE[k].sign * (v - REFERENCE[k].median) / REFERENCE[k].scale for k, v in signals.items()]
    return np.mean(z, axis=0)


def quality_scores(images: np.ndarray, codes: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
    """Cleanliness of FFHQ-aligned faces: images (N, H, W, 3) uint8 (square, any size; scored
    at 256x256), codes (N, 512) W or (N, 23, 512) W+ of the same faces, or None -> (N,) float64,
    higher = cleaner. About 0 for a typical psi = 1 sample, about -2 or below for broken ones.
    """
    return combine(quality_signals(images, codes))
