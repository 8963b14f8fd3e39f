"""FFHQ alignment: the square crop every StyleGAN-FFHQ generator expects, plus its exact transform.

Recipe (FFHQ dataset tool, re-derived here): from the 68 landmarks take the eye centres
(means of 36..41 and 42..47) and the mouth corners (48, 54); the crop is a square "quad" whose
x axis blends the eye line with the perpendicular of the eye-to-mouth line, whose half side is
max(2 |eye_to_eye|, 1.8 |eye_to_mouth|), centred 0.1 eye_to_mouth below the eyes. The photo is
shrunk by an integer factor when the quad is over twice the output size, cropped with a border,
reflect-padded where the quad leaves the photo (the padding blurred and faded to the median
colour so the generator sees no hard mirror seams), and warped to 4x the output size with
bilinear sampling, then box-filtered down to the output size.

Coordinates: pixel centres sit at integers in both the photo and the aligned image. The aligned
image's outer corners (-0.5, -0.5), (-0.5, S-0.5), (S-0.5, S-0.5), (S-0.5, -0.5) map onto
``quad[0..3]`` (the recipe's order: top-left, bottom-left, bottom-right, top-right of the face),
which is what the recipe's ``PIL.Image.transform(QUAD, quad + 0.5)`` does. Every intermediate
step (crop, shrink, pad, supersampling) is folded into one matrix, so ``aligned_to_photo_matrix``
is the exact transform and paste-back can invert it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from latentstudio.face.detect import Face

OUTPUT_SIZE = 1024
SUPERSAMPLE = 4  # the recipe warps to 4096 for a 1024 output, then filters down


@dataclass(frozen=True)
class Alignment:
    """An aligned face crop and where it came from."""

    image: np.ndarray  # (size, size, 3) uint8 RGB
    quad: np.ndarray  # (4, 2) float64, corners in ORIGINAL photo pixel coordinates
    size: int
    source_size: tuple[int, int]  # (width, height) of the photo

    def aligned_to_photo(self) -> np.ndarray:
        return aligned_to_photo_matrix(self.quad, self.size)

    def photo_to_aligned(self) -> np.ndarray:
        return photo_to_aligned_matrix(self.quad, self.size)


# ----------------------------------------------------------------------------------------------
# geometry


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square (4, 2) from 68 landmarks, in the landmarks' coordinates."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - _rot90(eye_to_mouth)
    norm = np.hypot(*x)
    if norm == 0.0:
        raise ValueError("degenerate landmarks: eyes and mouth coincide")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = _rot90(x)
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _rot90(v: np.ndarray) -> np.ndarray:
    """(vx, vy) -> (-vy, vx): a quarter turn from +x towards +y (image y points down)."""
    return np.array([-v[1], v[0]], dtype=np.float64)


def _aligned_corners(size: int) -> np.ndarray:
    e = size - 0.5
    return np.array([[-0.5, -0.5], [-0.5, e], [e, e], [e, -0.5]], dtype=np.float64)


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 projective matrix taking 4 src points onto 4 dst points (float64 throughout)."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((sx, sy), (dx, dy)) in enumerate(zip(src, dst)):
        a[2 * i] = [sx, sy, 1, 0, 0, 0, -dx * sx, -dx * sy]
        a[2 * i + 1] = [0, 0, 0, sx, sy, 1, -dy * sx, -dy * sy]
        b[2 * i], b[2 * i + 1] = dx, dy
    h = np.linalg.solve(a, b)
    return np.append(h, 1.0).reshape(3, 3)


def aligned_to_photo_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """3x3 matrix taking aligned pixel coordinates (of a ``size``² crop) to photo coordinates.

    For the recipe's square quads this is a similarity transform (last row 0, 0, 1).
    """
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    m = _homography(_aligned_corners(size), q)
    if np.allclose(m[2, :2], 0.0, atol=1e-12):
        m[2] = (0.0, 0.0, 1.0)
    return m


def photo_to_aligned_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """Inverse of ``aligned_to_photo_matrix``: photo coordinates -> aligned pixel coordinates."""
    m = np.linalg.inv(aligned_to_photo_matrix(quad, size))
    return m / m[2, 2]


def apply_matrix(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 (projective) matrix to (N, 2) points."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    h = np.c_[p, np.ones(len(p))] @ np.asarray(m, dtype=np.float64).T
    return h[:, :2] / h[:, 2:3]


CANONICAL_RATIO = 1.0 / 0.9  # |eye_to_mouth| / |eye_to_eye| at which both scale terms agree


def template_points(size: int = OUTPUT_SIZE,
                    eye_to_mouth_ratio: float = CANONICAL_RATIO) -> dict[str, np.ndarray]:
    """Where the recipe puts the eye centres and the mouth centre in a ``size``² crop.

    Derived from the recipe for a face whose eye line is perpendicular to its eye-to-mouth line,
    with r = |eye_to_mouth| / |eye_to_eye| (d = |eye_to_eye| = 1). The quad half side is
    s = max(2, 1.8 r) and the centre sits 0.1 r below the eyes, so in units of the crop side the
    eyes sit 1 / (4 s) either side of the middle and 0.1 r / (2 s) above it, the mouth centre
    0.9 r / (2 s) below it. The default r = 1/0.9, where both scale terms agree, gives the
    canonical template: eyes at (0.375, 0.4722) and (0.625, 0.4722), mouth at (0.5, 0.75).
    A face with a longer eye-to-mouth distance keeps those heights and brings the eyes closer;
    a shorter one keeps the eyes' x and moves the eyes down and the mouth up.
    Pixel-centre coordinates, as everywhere here.
    """
    r = float(eye_to_mouth_ratio)
    half = max(2.0, 1.8 * r)
    s = float(size)

    def at(u: float, v: float) -> np.ndarray:
        return np.array([s * (0.5 + u) - 0.5, s * (0.5 + v) - 0.5])

    return {
        "eye_left": at(-1.0 / (4 * half), -0.1 * r / (2 * half)),
        "eye_right": at(1.0 / (4 * half), -0.1 * r / (2 * half)),
        "mouth": at(0.0, 0.9 * r / (2 * half)),
    }


def eye_to_mouth_ratio(landmarks: np.ndarray) -> float:
    """|eye_to_mouth| / |eye_to_eye| of a face, the shape parameter of ``template_points``."""
    p = face_points(landmarks)
    eye_avg = (p["eye_left"] + p["eye_right"]) * 0.5
    return float(np.hypot(*(p["mouth"] - eye_avg)) / np.hypot(*(p["eye_right"] - p["eye_left"])))


def face_points(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The recipe's eye centres and mouth centre from 68 landmarks (same keys as the template)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return {
        "eye_left": lm[36:42].mean(axis=0),
        "eye_right": lm[42:48].mean(axis=0),
        "mouth": (lm[48] + lm[54]) * 0.5,
    }


# ----------------------------------------------------------------------------------------------
# the warp


def align_face(rgb: np.ndarray, face: Face | np.ndarray, size: int = OUTPUT_SIZE) -> Alignment:
    """FFHQ-align ``face`` (a ``Face`` or its (68, 2) landmarks) from the RGB photo."""
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    landmarks = face if isinstance(face, np.ndarray) else face.landmarks
    quad = ffhq_quad(landmarks)
    work, photo_to_work = _working_image(img, quad, size)
    a2w = photo_to_work @ aligned_to_photo_matrix(quad, size)
    big = size * SUPERSAMPLE
    # supersampled pixel t covers aligned coordinate (t + 0.5) / SUPERSAMPLE - 0.5
    t2a = np.array([[1 / SUPERSAMPLE, 0, 0.5 / SUPERSAMPLE - 0.5],
                    [0, 1 / SUPERSAMPLE, 0.5 / SUPERSAMPLE - 0.5], [0, 0, 1]])
    m = a2w @ t2a
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    if np.array_equal(m[2], (0.0, 0.0, 1.0)):
        warped = cv2.warpAffine(work, m[:2], (big, big), flags=flags,
                                borderMode=cv2.BORDER_REFLECT_101)
    else:
        warped = cv2.warpPerspective(work, m, (big, big), flags=flags,
                                     borderMode=cv2.BORDER_REFLECT_101)
    out = cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    return Alignment(image=np.ascontiguousarray(out), quad=quad, size=size, source_size=(w, h))


def _working_image(img: np.ndarray, quad: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop (with border), shrink and pad the photo as the recipe does.

    Returns the working image and the 3x3 matrix from photo to working coordinates. Cropping
    before shrinking gives the recipe's result without resampling the whole photo.
    """
    h, w = img.shape[:2]
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    shrink = int(np.floor(qsize / size * 0.5))
    shrink = shrink if shrink > 1 else 1
    border = max(int(np.rint(qsize / shrink * 0.1)), 3) * shrink

    x0 = max(int(np.floor(quad[:, 0].min())) - border, 0)
    y0 = max(int(np.floor(quad[:, 1].min())) - border, 0)
    x1 = min(int(np.ceil(quad[:, 0].max())) + border, w)
    y1 = min(int(np.ceil(quad[:, 1].max())) + border, h)
    if x1 <= x0 or y1 <= y0:
        raise ValueError("the face quad lies outside the photo")
    crop = img[y0:y1, x0:x1]
    m = np.array([[1.0, 0, -x0], [0, 1.0, -y0], [0, 0, 1]])
    if shrink > 1:
        cw, ch = x1 - x0, y1 - y0
        rw, rh = max(1, int(np.rint(cw / shrink))), max(1, int(np.rint(ch / shrink)))
        crop = cv2.resize(crop, (rw, rh), interpolation=cv2.INTER_AREA)
        sx, sy = rw / cw, rh / ch  # pixel-centre aware: p' = (p + 0.5) * s - 0.5
        m = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]]) @ m
    quad_w = apply_matrix(m, quad)
    work, offset = _pad(np.ascontiguousarray(crop), quad_w, qsize / shrink)
    m = np.array([[1.0, 0, offset[0]], [0, 1.0, offset[1]], [0, 0, 1]]) @ m
    return work, m


def _pad(img: np.ndarray, quad: np.ndarray, qsize: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad where the quad leaves the image; blur the padding and fade it to the median.

    Returns the (possibly) padded image and the (left, top) offset added to coordinates.
    """
    h, w = img.shape[:2]
    border = max(int(np.rint(qsize * 0.1)), 3)
    left = max(border - int(np.floor(quad[:, 0].min())), 0)
    top = max(border - int(np.floor(quad[:, 1].min())), 0)
    right = max(int(np.ceil(quad[:, 0].max())) - w + border, 0)
    bottom = max(int(np.ceil(quad[:, 1].max())) - h + border, 0)
    if max(left, top, right, bottom) <= border - 4:
        return img, (0, 0)
    least = max(int(np.rint(qsize * 0.3)), 1)
    left, top, right, bottom = (max(v, least) for v in (left, top, right, bottom))

    x = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_REFLECT_101)  # = np "reflect"
    ph, pw = x.shape[:2]
    xs = np.arange(pw, dtype=np.float32)
    ys = np.arange(ph, dtype=np.float32)[:, None]
    mask_x = 1.0 - np.minimum(xs / left, (pw - 1 - xs) / right)
    mask_y = 1.0 - np.minimum(ys / top, (ph - 1 - ys) / bottom)
    mask = np.maximum(mask_x[None, :], mask_y)  # (ph, pw): > 0 in the padding, < 0 inside

    # The recipe's two float blends, done per pixel by OpenCV on uint8 (each rounds once, so the
    # result is within a grey level of the float version at a fraction of the memory and time):
    # blur the padding and a band inside the edge, then fade the padding to the median colour.
    w_blur = np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    x = cv2.blendLinear(x, _gaussian(x, qsize * 0.02), 1.0 - w_blur, w_blur)
    w_fade = np.clip(mask, 0.0, 1.0)
    median = np.empty_like(x)
    median[:] = np.rint(_median_colour(x)).astype(np.uint8)
    x = cv2.blendLinear(x, median, 1.0 - w_fade, w_fade)
    return x, (left, top)


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an (H, W, C) image; wide blurs run on a reduced copy.

    Shrinking by f (box filter, variance f²/12), blurring and enlarging again (bilinear, variance
    f²/6) matches the full-size Gaussian to within ~1 % in sigma for f <= sigma / 4, at a cost
    that no longer grows with sigma.
    """
    if sigma <= 0.0:
        return x.copy()
    f = int(sigma // 4)
    if f < 2:
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    h, w = x.shape[:2]
    small = cv2.resize(x, (max(1, round(w / f)), max(1, round(h / f))),
                       interpolation=cv2.INTER_AREA)
    rest = np.sqrt(max(sigma**2 - f**2 / 4.0, (0.5 * f) ** 2)) / f
    small = cv2.GaussianBlur(small, (0, 0), rest, borderType=cv2.BORDER_REFLECT_101)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(x.shape)


def _median_colour(x: np.ndarray) -> np.ndarray:
    """Per-channel median (on at most ~1 M samples: a stride that leaves the median unchanged
    to well under one grey level)."""
    step = max(1, int(np.sqrt(x.shape[0] * x.shape[1] / 1e6)))
    return np.median(x[::step, ::step].reshape(-1, x.shape[2]), axis=0)
