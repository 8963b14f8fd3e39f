"""Face detection and 68-point landmarks with dlib.

dlib's HOG frontal detector is run as ``detector.run(img, 1, 0)`` (one upsampling step, threshold
0, so it also reports weak detections with their scores). It fires on non-faces now and then (a
badge, a logo), always with a low score, so faces are ranked: confident ones first, largest first,
then the weak ones by score. Big photos are detected on a downscaled copy (detection cost grows
with the pixel count; a face needs only ~40 px at the detector's scale) and the boxes are mapped
back; landmarks are always fitted on the full-resolution photo.

The dlib models are loaded once per process, lazily, behind a lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from latentstudio.safety import InputError

# Long side of the copy the detector sees. With one upsampling step dlib finds faces down to about
# 40 px there, i.e. faces of >= 40 * (long side / 1024) px in the photo (312 px in an 8000 px
# photo); detecting at 1024 costs ~0.4 s on a 2-core CPU.
DETECT_MAX_SIDE = 1024

# Detector score from which a detection counts as a confident face. Real frontal faces score
# about 0.5-3; the false positives we have seen (the astronaut's badge: 0.12) stay well below.
CONFIDENT_SCORE = 0.5

# Minimum distance between the eye centres, in photo pixels. The FFHQ crop is 4x the inter-ocular
# distance wide, so 20 px means an 80 px crop stretched 12.8x to 1024 (3.2x even for a 256
# preview); and dlib's landmarks are good to about a pixel, i.e. 5 % of the eye distance at 20 px,
# which already tilts and scales the crop visibly. Below that an edit is mostly hallucination.
MIN_EYE_DISTANCE = 20.0

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"


class FaceError(InputError):
    """No usable face in the photo; the message says why and what to try."""

    title = "No usable face"  # the heading of its error dialog


class NoFaceError(FaceError):
    """The detector found no face (or the requested face index does not exist)."""


class FaceTooSmallError(FaceError):
    """A face was found but is too small to align and edit faithfully."""


@dataclass(frozen=True, eq=False)  # eq=False: compared by identity (it holds an array)
class Face:
    """One detected face in photo pixel coordinates (pixel centres at integers)."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float  # dlib detector confidence (higher is surer)
    landmarks: np.ndarray  # (68, 2) float32, iBUG 300-W order

    @property
    def confident(self) -> bool:
        return self.score >= CONFIDENT_SCORE

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    @property
    def eye_distance(self) -> float:
        """Distance between the eye centres (means of points 36..41 and 42..47)."""
        left = self.landmarks[36:42].mean(axis=0)
        right = self.landmarks[42:48].mean(axis=0)
        return float(np.hypot(*(right - left)))


# ----------------------------------------------------------------------------------------------
# lazily loaded dlib models


class _Models:
    """The dlib detector and shape predictor, loaded on first use and shared (calls locked)."""

    _lock = threading.Lock()
    _detector: object | None = None
    _predictor: object | None = None

    @classmethod
    def get(cls) -> tuple[object, object]:
        with cls._lock:
            if cls._detector is None or cls._predictor is None:
                import dlib

                from latentstudio.models.fetch import require

                path: Path = require("dlib_landmarks") / LANDMARKS_68
                cls._predictor = dlib.shape_predictor(str(path))
                cls._detector = dlib.get_frontal_face_detector()
            return cls._detector, cls._predictor


_call_lock = threading.Lock()  # dlib's objects are not documented as re-entrant


# ----------------------------------------------------------------------------------------------
# detection


def detect_faces(rgb: np.ndarray) -> list[Face]:
    """All faces in an ``(H, W, 3) uint8`` RGB photo, ranked (see ``rank_faces``)."""
    img = _check_rgb(rgb)
    detector, predictor = _Models.get()
    small, scale = _detection_copy(img)
    import dlib

    with _call_lock:
        rects, scores, _ = detector.run(small, 1, 0)  # type: ignore[attr-defined]
    faces = []
    for rect, score in zip(rects, scores):
        box = _map_box(rect, scale)
        drect = dlib.rectangle(*(int(round(v)) for v in box))
        with _call_lock:
            shape = predictor(img, drect)  # type: ignore[operator]
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        faces.append(Face(box=box, score=float(score), landmarks=pts))
    return rank_faces(faces)


#: dlib's median box on FFHQ-aligned faces, as fractions of the side (left, top, right, bottom)
ALIGNED_BOX = (0.176, 0.305, 0.758, 0.891)
ALIGNED_WORK = 256  # side at which the face of an aligned crop is detected and fitted


def aligned_detection(detector: object, image: np.ndarray, threshold: float = 0.0) -> tuple[object | None, float]:
    """dlib's best detection whose centre is within 0.2 of the side of the FFHQ face position in
    an aligned crop ``image`` (square), and its score; (None, -inf) when there is none."""
    image = _check_rgb(image)  # C order: dlib misreads a strided view
    side = image.shape[0]
    fx0, fy0, fx1, fy1 = (v * side for v in ALIGNED_BOX)
    centre = np.array([(fx0 + fx1) / 2, (fy0 + fy1) / 2])
    rects, scores, _ = detector.run(image, 0, threshold)  # type: ignore[attr-defined]
    best, best_score = None, -np.inf
    for rect, score in zip(rects, scores):
        c = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
        if np.linalg.norm(c - centre) < 0.2 * side and score > best_score:
            best, best_score = rect, float(score)
    return best, best_score


def aligned_rect(detector: object, image: np.ndarray) -> tuple[object, bool]:
    """The box to fit landmarks in, in an aligned crop: ``aligned_detection``'s, else
    ``ALIGNED_BOX`` (the face is where alignment put it); and whether it was detected."""
    import dlib

    rect, _ = aligned_detection(detector, image)
    if rect is not None:
        return rect, True
    side = image.shape[0]
    return dlib.rectangle(*(int(v * side) for v in ALIGNED_BOX)), False


def aligned_landmarks(aligned_rgb: np.ndarray) -> np.ndarray:
    """The 68 landmarks (68, 2) float32, in the crop's pixels, of the face of an FFHQ-aligned
    square crop (any size; fitted on a ``ALIGNED_WORK``² copy)."""
    img = _check_rgb(aligned_rgb)
    scale = ALIGNED_WORK / img.shape[0]
    work = np.ascontiguousarray(cv2.resize(img, (ALIGNED_WORK, ALIGNED_WORK), interpolation=cv2.INTER_AREA))
    detector, predictor = _Models.get()
    with _call_lock:
        rect, _ = aligned_rect(detector, work)
        shape = predictor(work, rect)  # type: ignore[operator]
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    return (pts + 0.5) / scale - 0.5


def rank_faces(faces: list[Face]) -> list[Face]:
    """Confident faces first, largest first; then weak detections, highest score first."""
    sure = sorted((f for f in faces if f.confident), key=lambda f: -f.area)
    weak = sorted((f for f in faces if not f.confident), key=lambda f: -f.score)
    return sure + weak


def pick_face(faces: list[Face], index: int | None = None) -> Face:
    """The face to edit: ``faces[index]``, or by default the first (largest confident) one.

    Raises ``NoFaceError`` when there is none (or ``index`` is out of range) and
    ``FaceTooSmallError`` when its eyes are closer than ``MIN_EYE_DISTANCE`` pixels.
    """
    if not faces:
        raise NoFaceError(
            "no face found in the photo; use a photo with a clearly visible, roughly frontal "
            "face (the detector needs the face at least ~40 px wide)")
    i = 0 if index is None else index
    if not -len(faces) <= i < len(faces):
        raise NoFaceError(f"there is no face #{index}: only {len(faces)} found")
    face = faces[i]
    if face.eye_distance < MIN_EYE_DISTANCE:
        raise FaceTooSmallError(
            f"the face is too small to edit: its eyes are {face.eye_distance:.1f} px apart, "
            f"at least {MIN_EYE_DISTANCE:.0f} px are needed; use a larger or closer photo")
    return face


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` as dlib needs it: (H, W, 3) uint8, in C order (a strided view is misread)."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def _detection_copy(img: np.ndarray) -> tuple[np.ndarray, float]:
    """The image the detector runs on and its scale (detection px per photo px)."""
    h, w = img.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    if scale >= 1.0:
        return img, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small), size[0] / w


def _map_box(rect: object, scale: float) -> tuple[float, float, float, float]:
    """A dlib rectangle on the detection copy -> (x0, y0, x1, y1) in photo pixels.

    Not clipped: a face cut by the photo edge keeps its full box, which the shape predictor needs.
    """
    l, t, r, b = rect.left(), rect.top(), rect.right(), rect.bottom()  # type: ignore[attr-defined]
    # dlib's right/bottom are inclusive pixel indices; map pixel centres across the resize.
    return ((l + 0.5) / scale - 0.5, (t + 0.5) / scale - 0.5,
            (r + 0.5) / scale - 0.5, (b + 0.5) / scale - 0.5)
