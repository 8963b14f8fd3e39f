"""Where a photo becomes a code: the one photo pipeline, used by the app, the CLI and the benches.

    find_faces(path)            load (EXIF-rotated, any format ``face.image_io`` reads) and detect
    to_code(photo, face, …)     pick a face, FFHQ-align it (``face.align``), invert it into W+
                                (``invert``) and, in high-fidelity mode, tune the generator
                                around it (``tune``) → ``PhotoCode``
    invert_photo(path, face, …) both at once

A ``PhotoCode`` knows where its face sits in the photo (``placement``), which is what paste-back
needs (``face.placement``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentstudio.face.placement import Placement
from latentstudio.invert import Inversion, Preset
from latentstudio.progress import CancelFn, ProgressFn
from latentstudio.tune import TuneSettings, Tuning, invert_and_tune


@dataclass
class PhotoFaces:
    """A loaded photo (H, W, 3) uint8 and its detected faces (``face.detect.Face``, largest
    confident first)."""

    path: Path
    rgb: np.ndarray
    faces: list[Any]

    @property
    def confident(self) -> list[Any]:
        return [f for f in self.faces if f.confident]

    def align(self, face: int | None = None) -> tuple[Any, Any, int]:
        """(``Alignment``, the chosen face, its index): face ``face``, default the largest
        confident one; FaceError when there is no usable face."""
        from latentstudio.face.align import align_face
        from latentstudio.face.detect import pick_face

        chosen = pick_face(self.faces, face)
        return align_face(self.rgb, chosen), chosen, self.faces.index(chosen)


@dataclass
class PhotoCode:
    """A face of a photo as a W+ code, with its alignment and (high fidelity) tuned weights."""

    path: Path
    alignment: Any  # latentstudio.face.align.Alignment
    face: Any  # latentstudio.face.detect.Face
    face_index: int
    faces_found: int  # confident faces in the photo
    inversion: Inversion
    tuning: Tuning | None = None

    @property
    def w_plus(self) -> np.ndarray:
        return self.inversion.w_plus

    @property
    def placement(self) -> Placement:
        return Placement(self.path, self.alignment.source_size, self.alignment.quad, self.face.landmarks,
                         self.face_index)


def find_faces(path: str | Path, cancelled: CancelFn | None = None) -> PhotoFaces:
    """Load a photo and detect its faces (ImageError for an unreadable or hostile file;
    ``cancelled`` is asked between the two)."""
    from latentstudio.face.detect import detect_faces
    from latentstudio.face.image_io import load_image
    from latentstudio.progress import check

    p = Path(path)
    rgb = load_image(p)
    check(cancelled, "cancelled before face detection")
    return PhotoFaces(p, rgb, detect_faces(rgb))


def align_photo(path: str | Path, face: int | None = None) -> tuple[Any, Any, int]:
    """(``Alignment``, chosen face, number of confident faces) of a photo file."""
    photo = find_faces(path)
    alignment, chosen, _ = photo.align(face)
    return alignment, chosen, len(photo.confident)


def to_code(photo: PhotoFaces, face: int | None = None, *, generator: Any, preset: str | Preset = "fast",
            steps: int | None = None, tune: TuneSettings | None = None, seed: int = 0,
            progress: ProgressFn | None = None, cancelled: CancelFn | None = None,
            init: Any = None, nets: Any = None) -> PhotoCode:
    """Face ``face`` of ``photo`` (default: the largest confident) → aligned → W+ code (→ tuned
    weights when ``tune``). ``progress`` gets the aligned face first (``Progress("align", …)``
    with a preview), then the inversion's and the tuning's steps on one scale. ``init``: where
    the inversion starts (a w (512,) or a W+ code (23,512), e.g. ``first_guess``'s; default the preset's start). ``nets``:
    the loss networks' owner (a ``Runtime``; default loaded once per process)."""
    from latentstudio.progress import Progress, report

    alignment, chosen, index = photo.align(face)
    report(progress, Progress("align", 0, 1, preview=alignment.image))
    inv, tuning = invert_and_tune(alignment.image, preset=preset, steps=steps, tune=tune, generator=generator,
                                  seed=seed, progress=progress, cancelled=cancelled, init=init, nets=nets)
    return PhotoCode(photo.path, alignment, chosen, index, len(photo.confident), inv, tuning)


def first_guess(photo: PhotoFaces, face: int | None = None, *, generator: Any) -> PhotoCode:
    """A code at once (well under a second on a CPU): the face aligned and the encoder's W+
    guess (``latentstudio.encoder``; the average face on every slot when the encoder is unusable).
    ``to_code`` then inverts the face from its preset's start (the ``quick`` preset starts from
    this same guess)."""
    import numpy as np

    from latentstudio.encoder import EncoderError, load_encoder
    from latentstudio.invert import Inversion
    from latentstudio.latent import NUM_SLOTS

    alignment, chosen, index = photo.align(face)
    try:
        code = load_encoder().guess(alignment.image)
    except EncoderError:
        code = np.repeat(generator.w_avg.cpu().numpy().astype(np.float32).reshape(1, -1), NUM_SLOTS, 0)
    return PhotoCode(photo.path, alignment, chosen, index, len(photo.confident), Inversion(code, {}, 0))


def invert_photo(path: str | Path, face: int | None = None, **kwargs: Any) -> PhotoCode:
    """``to_code(find_faces(path), face, **kwargs)``."""
    return to_code(find_faces(path), face, **kwargs)
