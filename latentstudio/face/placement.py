"""Where an aligned face sits in its photo, and the one way of pasting a face back there.

A ``Placement`` is what alignment leaves behind and paste-back needs: the photo's path and size,
the alignment quad and the 68 landmarks (both in photo pixels). A code file written by
``latentstudio invert`` stores it (``arrays()`` / ``from_arrays()``), a document keeps it with
its source, and the CLI, the app's "In photo" view and the exports all paste through ``paste``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from latentstudio.safety import InputError


class PlacementError(InputError):
    """A face cannot be pasted back: no placement stored, or its photo is gone or changed."""

    title = "Cannot paste back"  # the heading of its error dialog


@dataclass(frozen=True, eq=False)
class Placement:
    """An aligned face's place in its photo."""

    photo: Path  # the photo file (resolved)
    size: tuple[int, int]  # (width, height) of the photo the face was aligned in
    quad: np.ndarray  # (4, 2) float64: the alignment quad, photo pixels
    landmarks: np.ndarray  # (68, 2) float64: the face's landmarks, photo pixels
    face_index: int = 0  # which of the photo's faces

    def __post_init__(self) -> None:
        quad = np.asarray(self.quad, np.float64).reshape(4, 2)
        lms = np.asarray(self.landmarks, np.float64).reshape(68, 2)
        if not (np.isfinite(quad).all() and np.isfinite(lms).all()):
            raise PlacementError("the stored face placement holds non-finite numbers")
        w, h = (int(v) for v in self.size)
        if w < 1 or h < 1:
            raise PlacementError(f"the stored photo size {w}x{h} is not a size")
        object.__setattr__(self, "photo", Path(self.photo))
        object.__setattr__(self, "size", (w, h))
        object.__setattr__(self, "quad", quad)
        object.__setattr__(self, "landmarks", lms)

    # -- code files
    def arrays(self) -> dict[str, np.ndarray]:
        """The code-file arrays that tie a code to its photo (for paste-back and reopening)."""
        return {"photo": np.array(str(self.photo.resolve())), "quad": self.quad,
                "landmarks": self.landmarks.astype(np.float32), "source_size": np.array(self.size),
                "face_index": np.array(self.face_index)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], photo: str | Path | None = None, *,
                    find_landmarks: bool = False) -> Placement:
        """The placement stored in a code file's arrays; ``photo`` overrides the stored path (the
        CLI's ``--paste-back PHOTO``). Without a stored size the photo's own is taken; without
        stored landmarks (older code files) ``find_landmarks`` detects the photo's faces and takes
        the one whose alignment quad is closest. PlacementError when it cannot be built."""
        quad = arrays.get("quad")
        if quad is None or np.asarray(quad).shape != (4, 2):
            raise PlacementError("pasting back needs a code from `latentstudio invert` (it stores the "
                                 "photo's alignment quad and landmarks)")
        where = photo if photo is not None else arrays.get("photo")
        if where is None:
            raise PlacementError("pasting back needs the photo the code was inverted from")
        path = Path(str(where))
        size = arrays.get("source_size")
        landmarks = arrays.get("landmarks")
        rgb = None
        if size is None or landmarks is None or np.asarray(landmarks).shape != (68, 2):
            rgb = _load(path)
            size = (rgb.shape[1], rgb.shape[0]) if size is None else size
        if landmarks is None or np.asarray(landmarks).shape != (68, 2):
            if not find_landmarks:
                raise PlacementError("pasting back needs a code from `latentstudio invert` (it stores the "
                                     "photo's alignment quad and landmarks)")
            landmarks = _closest_face(rgb, np.asarray(quad, np.float64), path)  # type: ignore[arg-type]
        index = int(arrays["face_index"]) if "face_index" in arrays else 0
        return cls(path, (int(size[0]), int(size[1])), quad, landmarks, index)

    # -- the photo
    def load_photo(self) -> np.ndarray:
        """The photo (H, W, 3) uint8; PlacementError when it is gone, unreadable or another size."""
        rgb = _load(self.photo)
        self.check(rgb)
        return rgb

    def check(self, rgb: np.ndarray) -> None:
        """PlacementError unless ``rgb`` has the size the face was aligned at."""
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise PlacementError(f"{self.photo} is {rgb.shape[1]}x{rgb.shape[0]} but the face was aligned in "
                                 f"a {self.size[0]}x{self.size[1]} photo; paste back into the photo it came from")

    def scaled(self, sx: float, sy: float) -> Placement:
        """The same placement in a photo resized by (sx, sy) (pixel centres kept)."""
        scale = np.array([sx, sy])
        return replace(self, size=(max(1, round(self.size[0] * sx)), max(1, round(self.size[1] * sy))),
                       quad=(self.quad + 0.5) * scale - 0.5, landmarks=(self.landmarks + 0.5) * scale - 0.5)

    def paste(self, aligned: np.ndarray, photo: np.ndarray | None = None,
              colour_filter: Callable[[Any], Any] | None = None, other_person: bool = False) -> np.ndarray:
        """``aligned`` (S, S, 3) uint8 pasted into ``photo`` (default: the photo file) → (H, W, 3).
        ``colour_filter``: see ``pasteback.paste_back``. ``other_person``: the face is someone
        else's (identity transfer, de-identification): the photo keeps its own hairline, and the
        pasted region and colour follow both faces (``paste_back``'s ``other_landmarks``)."""
        from latentstudio.face.detect import aligned_landmarks
        from latentstudio.face.pasteback import IDENTITY_FOREHEAD, paste_back

        rgb = self.load_photo() if photo is None else photo
        if photo is not None:
            self.check(rgb)
        if not other_person:
            return paste_back(rgb, aligned, self.quad, self.landmarks, colour_filter=colour_filter)
        return paste_back(rgb, aligned, self.quad, self.landmarks, colour_filter=colour_filter,
                          forehead=IDENTITY_FOREHEAD, other_landmarks=aligned_landmarks(aligned))


def _load(path: Path) -> np.ndarray:
    from latentstudio.face.image_io import load_image

    if not path.is_file():
        raise PlacementError(f"{path}: the photo to paste back into is gone")
    return load_image(path)


def _closest_face(rgb: np.ndarray, quad: np.ndarray, path: Path) -> np.ndarray:
    from latentstudio.face.align import ffhq_quad
    from latentstudio.face.detect import detect_faces

    faces = detect_faces(rgb)
    if not faces:
        raise PlacementError(f"{path}: no face found to paste back onto")
    return min((f.landmarks for f in faces), key=lambda lm: float(np.abs(ffhq_quad(lm) - quad).sum()))
