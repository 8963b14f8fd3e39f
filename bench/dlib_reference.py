"""dlib's own face descriptor (the original .dat kept by `latentstudio models fetch`), for benchmarks.

Benchmarks measure identity with dlib itself, not with our torch port, so a bug in the port cannot
flatter the numbers.
"""

from __future__ import annotations

import numpy as np


class DlibIdentity:
    """dlib's 128-d descriptor of aligned renders, chipped from the given 68 landmarks."""

    def __init__(self) -> None:
        import dlib

        from latentstudio.face.dlib_resnet import DAT_NAME
        from latentstudio.models.fetch import require

        dat = require("dlib_resnet") / DAT_NAME
        if not dat.is_file():
            raise SystemExit(f"{dat} is missing: run `latentstudio models fetch --only dlib_resnet`")
        self.dlib = dlib
        self.net = dlib.face_recognition_model_v1(str(dat))

    def embed(self, images: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(N,S,S,3) uint8 + (N,68,2) → (N,128)."""
        d = self.dlib
        out = []
        for img, lm in zip(images, landmarks):
            pts = [d.point(int(round(x)), int(round(y))) for x, y in lm]
            rect = d.rectangle(int(lm[:, 0].min()), int(lm[:, 1].min()), int(lm[:, 0].max()), int(lm[:, 1].max()))
            shape = d.full_object_detection(rect, pts)
            out.append(np.array(self.net.compute_face_descriptor(np.ascontiguousarray(img), shape)))
        return np.stack(out)
