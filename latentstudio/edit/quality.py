"""How clean a generated (or aligned) face looks: the image signals the quality score is made of.

Each signal was measured to separate broken ψ = 1 samples (melted faces, double faces, objects
through the face) from clean ones (reference: 400 samples, seeds 1000–1399, 14 judged broken by
eye; ROC AUC of each alone: detector 0.81, identity_norm 0.79, identity_mirror 0.77; the
68-landmark residual after a similarity fit (0.69), solvePnP's reprojection error (0.37),
lighting asymmetry (0.56) and high-frequency energy (0.54) were not used):

* ``detector``: dlib's HOG detector score of a box near the FFHQ face position (higher = cleaner);
* ``identity_norm``: the length of dlib's ResNet embedding (higher = cleaner);
* ``identity_mirror``: the embedding's change under a left–right mirror (lower = cleaner);
* ``landmark_mirror``: how much dlib's 68-landmark fit disagrees with its fit of the mirror image
  (lower = cleaner).

All of them also depend on the pose and on glasses (a profile face is detected less surely and is
less symmetric). The score is therefore not a fixed mix of them but
``latentstudio.edit.repair.QualityModel``: each signal relative to the pose and glasses, fitted
on 20 000 ψ = 1 samples and shipped with the ``quality`` boundary.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch

from latentstudio.edit.predictors import load_models, working_images
from latentstudio.face.detect import aligned_detection

if TYPE_CHECKING:
    from latentstudio.face.chip import IdentityNet


class QualityError(ValueError):
    """Bad input to the quality scorer."""


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


def detector_scores(work: np.ndarray) -> np.ndarray:
    """(N, 256, 256, 3) uint8 -> (N,) best dlib detector score of a box centred near the FFHQ
    face position (within 0.2 of the side), NO_DETECTION if there is none."""
    detector = load_models().detector
    out = []
    for image in work:
        rect, score = aligned_detection(detector, image, DETECTOR_THRESHOLD)
        out.append(NO_DETECTION if rect is None else max(NO_DETECTION, score))
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


def quality_signals(images: np.ndarray) -> dict[str, np.ndarray]:
    """``detector``, ``identity_norm``, ``identity_mirror`` (each (N,) float64) of FFHQ-aligned
    images (N, H, W, 3) uint8 (square, any size; measured at 256²). ``landmark_mirror`` needs the
    landmarks of the image and its mirror, which ``repair.measure_samples`` has anyway."""
    try:
        work = working_images(np.asarray(images))
    except ValueError as exc:
        raise QualityError(str(exc)) from exc
    out = {"detector": detector_scores(work)}
    out["identity_norm"], out["identity_mirror"] = identity_signals(work)
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
