"""Which pixels of a generated face are the face itself, read from the generator's own features.

The synthesis network's 128² features (after 5 blocks, 256 channels) fall into a few directions
that mean the same part on every face: skin, hair, eyes, mouth, background, clothes (the k-means
parsing of Collins et al. 2020, "Editing in Style"). We cluster them once (spherical k-means over
generated faces, ``fit``) and call a cluster *face* when most of its pixels lie inside dlib's
landmark hull (plus the forehead just above the brows) on those faces. A landmark hull cannot tell a fringe from a forehead; these clusters
stop at the hairline (bench/RESULTS.md, "The attribute face's surroundings at render time").

Shipped in ``assets/face_parsing.safetensors`` (a few KB), made by ``bench/fit_face_parsing.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

ASSET = Path(__file__).resolve().parents[2] / "assets" / "face_parsing.safetensors"
BLOCKS = 5  # the features parsed: after this many synthesis blocks (256 channels at 128²)
#: a cluster is face when at least this share of its pixels is inside the landmark hull plus the
#: forehead just above the brows, on the generated faces it is fitted on (the shipped fit: four
#: clusters of skin in its tones and shading, eyes and mouth, 0.62–0.79; hair, background, clothes
#: ≤ 0.21)
FACE_SHARE = 0.55


@dataclass(frozen=True)
class FaceParsing:
    """centres: (K, C) unit vectors; face: (K,) bool, the clusters that are the face."""

    centres: Tensor
    face: Tensor

    @classmethod
    def load(cls, path: Path = ASSET) -> "FaceParsing | None":
        if not path.is_file():
            return None
        state = load_file(str(path))
        return cls(state["centres"].float(), state["face"].bool())

    def save(self, path: Path, meta: dict[str, str]) -> None:
        save_file({"centres": self.centres.contiguous(), "face": self.face.to(torch.uint8)}, str(path), meta)

    def labels(self, features: Tensor) -> Tensor:
        """features (N,C,S,S) → the nearest centre of each pixel by cosine, (N,S,S) int64 (a
        pixel's length does not change which centre is nearest: no need to normalise it)."""
        centres = self.centres.to(features.device, features.dtype)
        return F.conv2d(features, centres[:, :, None, None]).argmax(1)

    def reordered(self, order: Tensor) -> "FaceParsing":
        """The same parsing for features whose channel j is this one's channel ``order[j]`` (the
        fast twin's, ``models.fast``)."""
        return FaceParsing(self.centres[:, order], self.face)

    def face_cells(self, features: Tensor) -> np.ndarray:
        """features (N,C,S,S) → (N,S,S) uint8, 1 on the face: its clusters' pixels, the largest
        connected region only, with its holes (eyes, open mouths read as other parts) filled."""
        face = self.face.to(features.device)[self.labels(features)].cpu().numpy().astype(np.uint8)
        return np.stack([_solid(m) for m in face])


def _solid(mask: np.ndarray) -> np.ndarray:
    m = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    count, lab, stats, _ = cv2.connectedComponentsWithStats(m)
    if count <= 1:
        return m
    m = (lab == 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())).astype(np.uint8)
    outside = m.copy()
    cv2.floodFill(outside, np.zeros((m.shape[0] + 2, m.shape[1] + 2), np.uint8), (0, 0), 1)
    return m | (1 - outside)


def fit(features: Tensor, inside: np.ndarray, clusters: int, seed: int = 0,
        pixels: int = 60_000) -> tuple[FaceParsing, np.ndarray]:
    """K-means of ``features`` (N,C,S,S) on the unit sphere (``pixels`` drawn at random), each
    cluster called face when ≥ ``FACE_SHARE`` of its pixels are ``inside`` (N,S,S) bool, the
    landmark hulls (the caller leaves out faces without landmarks). Also returns each cluster's share."""
    from sklearn.cluster import KMeans

    unit = F.normalize(features.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, features.shape[1]).numpy()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(unit), min(pixels, len(unit)), replace=False)
    km = KMeans(clusters, n_init=3, random_state=seed).fit(unit[pick])
    centres = F.normalize(torch.from_numpy(km.cluster_centers_).float(), dim=1)
    lab = FaceParsing(centres, torch.zeros(clusters, dtype=torch.bool)).labels(features).numpy()
    share = np.array([inside[lab == k].mean() if (lab == k).any() else 0.0 for k in range(clusters)])
    return FaceParsing(centres, torch.from_numpy(share >= FACE_SHARE)), share
