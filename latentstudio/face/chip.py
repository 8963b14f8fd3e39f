"""Face chips for dlib's face-recognition ResNet, and the identity network built on them.

Three pieces:

* ``face_chip(rgb, shape5)``: a numpy re-implementation of ``dlib.get_face_chip(img, shape5,
  size=150, padding=0.25)``. dlib fits a similarity transform from its 5-point template to the
  landmarks, turns it into a rotated rectangle, and, when the chip is much smaller than that
  rectangle, first shrinks the photo with its ``pyramid_down<2>`` (5-tap [1 4 6 4 1] Gaussian,
  keep every other pixel, integer arithmetic, truncating division) until the rectangle is at
  most twice the chip size, then samples the chip bilinearly. dlib's coordinate mapping for one
  pyramid level is ``p / 2 - (1.25, 0.75)``, although the filter it applies is centred on
  ``p / 2 - (1, 1)``: the chip is therefore offset by a fraction of a pixel per level. Both the
  filter and that mapping are reproduced here: the chips are bit-identical to dlib's.
* ``aligned_chip(images)``: a fixed, differentiable torch crop from FFHQ-aligned generator output
  ([-1, 1], 256/512/1024) to the chip layout, for identity losses: the chip dlib would cut for
  the average FFHQ-aligned face (``FFHQ_SHAPE5``), with the same crop, pyramid steps and bilinear
  positions (``chip_plan``), computed in float with ``conv2d`` and ``grid_sample``.
* ``IdentityNet``: the ResNet with both entry points, plus ``identity_distance``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentstudio.face.dlib_resnet import CHIP_SIZE, DlibResNet, load_dlib_resnet

CHIP_PADDING = 0.25

# dlib's 5-point template (get_face_chip_details), unit face box: right eye outer and inner
# corner, left eye outer and inner corner (the photo's right, then left), base of the nose.
DLIB_SHAPE5_TEMPLATE = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])

# Mean positions of dlib's 5 landmarks on FFHQ-aligned faces, as fractions of the image side
# (pixel-centre convention: pixel x of an S-wide image sits at (x + 0.5) / S). Measured with
# ``shape5_fractions`` (dlib's detector + 5-point shape predictor) on generator samples, seeds
# 0..99, psi 0.7, 1024²: std across faces 0.003-0.006 for the eye corners, 0.02 for the nose
# (head pose); the same measurement on 256² renders agrees within 0.001.
FFHQ_SHAPE5 = np.array([
    [0.6709, 0.4765],
    [0.5739, 0.4817],
    [0.3274, 0.4767],
    [0.4258, 0.4815],
    [0.5025, 0.6647],
])


class ChipError(ValueError):
    """Bad input to chip extraction (wrong image type, landmarks, size)."""


# --------------------------------------------------------------------------- geometry


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama) taking (K, 2) ``src`` onto ``dst``: (A (2, 2), t (2,)),
    ``dst ≈ src @ A.T + t``. Reflections are excluded, as in dlib's find_similarity_transform."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    cov = d0.T @ s0 / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(cov) < 0 or (np.linalg.det(cov) == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = 1.0 if var_s == 0 else float(np.trace(np.diag(d) @ sign)) / var_s
    a = scale * rot
    return a, mu_d - a @ mu_s


@dataclass(frozen=True)
class ChipDetails:
    """dlib's chip_details: a rectangle (l, t, r, b; r and b inclusive) rotated by ``angle``."""

    rect: tuple[float, float, float, float]
    angle: float
    size: int


def chip_details(shape5: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> ChipDetails:
    """dlib's get_face_chip_details for 5-point landmarks (photo pixel coordinates)."""
    pts = _check_shape5(shape5)
    chip_pts = (padding + DLIB_SHAPE5_TEMPLATE) / (2 * padding + 1) * size
    a, t = similarity_transform(chip_pts, pts)
    p = a @ np.array([1.0, 0.0])
    angle = math.atan2(p[1], p[0])
    scale = math.hypot(p[0], p[1])
    cx, cy = a @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * scale - 1) / 2  # dlib's centered_drect shrinks the side by one pixel
    return ChipDetails((cx - half, cy - half, cx + half, cy + half), angle, size)


def _check_shape5(shape5: np.ndarray) -> np.ndarray:
    pts = np.asarray(shape5, dtype=np.float64)
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise ChipError(f"expected (5, 2) finite landmarks from dlib's 5-point model, got {pts.shape}")
    return pts


def _area(rect: tuple[float, float, float, float]) -> float:
    l, t, r, b = rect
    if t > b or l > r:
        return 0.0
    return (r - l + 1) * (b - t + 1)


def _rect_down(rect: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """dlib's pyramid_down<2>::rect_down (note the asymmetric offset)."""
    l, t, r, b = rect
    return (l / 2 - 1.25, t / 2 - 0.75, r / 2 - 1.25, b / 2 - 0.75)


def _rotate(center: np.ndarray, p: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    d = p - center
    return center + np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]])


def _round_rect(rect: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    return tuple(int(math.floor(v + 0.5)) for v in rect)  # type: ignore[return-value]


# --------------------------------------------------------------------------- numpy chip


def pyramid_down(img: np.ndarray) -> np.ndarray:
    """dlib's pyramid_down<2> on an (H, W, 3) uint8 image -> ((H-3)//2, (W-3)//2, 3) uint8."""
    h, w = img.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0, 3), np.uint8)
    nr, nc = (h - 3) // 2, (w - 3) // 2
    x = img.astype(np.int32)
    taps = (1, 4, 6, 4, 1)
    rows = sum(k * x[:, i:i + 2 * nc:2] for i, k in enumerate(taps))  # column c <- 2c .. 2c+4
    out = sum(k * rows[i:i + 2 * nr:2] for i, k in enumerate(taps))  # row r <- 2r .. 2r+4
    return (out // 256).astype(np.uint8)


def _bilinear(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """dlib's interpolate_bilinear at float points (any shape) -> uint8 (..., 3); black outside."""
    h, w = img.shape[:2]
    left, top = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    ok = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    lc, tc = np.where(ok, left, 0), np.where(ok, top, 0)
    fx, fy = (xs - left)[..., None], (ys - top)[..., None]
    im = img.astype(np.float64)
    val = ((1 - fy) * ((1 - fx) * im[tc, lc] + fx * im[tc, lc + 1])
           + fy * ((1 - fx) * im[tc + 1, lc] + fx * im[tc + 1, lc + 1]))
    out = np.clip(val, 0, 255).astype(np.uint8)  # dlib's assign_pixel truncates
    out[~ok] = 0
    return out


@dataclass(frozen=True)
class ChipPlan:
    """How dlib samples a chip: crop ``box`` (l, t, r, b inclusive) out of the photo, shrink it
    ``levels`` times with ``pyramid_down``, then read the chip pixels bilinearly at ``xs``, ``ys``
    ((size, size) positions in the shrunk crop's pixel coordinates)."""

    box: tuple[int, int, int, int]
    levels: int
    xs: np.ndarray
    ys: np.ndarray


def chip_plan(details: ChipDetails, height: int, width: int) -> ChipPlan | None:
    """dlib's extract_image_chips geometry for one chip of a ``height`` x ``width`` photo.

    ``None`` when the chip lies entirely outside the photo (the chip is black).
    """
    size, rect, angle = details.size, details.rect, details.angle
    # pyramid depth and the part of the photo it needs (dlib's bounding box)
    grow = 2.0
    down = _rect_down(rect)
    while _area(down) > size * size:
        down = _rect_down(down)
        grow = grow * 2 + 2
    center = np.array([(rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2])
    corners = [np.array(c) for c in ((rect[0], rect[1]), (rect[2], rect[1]),
                                     (rect[0], rect[3]), (rect[2], rect[3]))]
    rot = np.array([_rotate(center, c, angle) for c in corners])
    box = _round_rect((max(rot[:, 0].min() - grow, 0), max(rot[:, 1].min() - grow, 0),
                       min(rot[:, 0].max() + grow, width - 1), min(rot[:, 1].max() + grow, height - 1)))
    if box[0] > box[2] or box[1] > box[3]:
        return None
    # the pyramid level to read from, and the chip's corners on it
    local = (rect[0] - box[0], rect[1] - box[1], rect[2] - box[0], rect[3] - box[1])
    level = -1
    while _area(_rect_down(local)) > size * size:
        level += 1
        local = _rect_down(local)
    c = np.array([(local[0] + local[2]) / 2, (local[1] + local[3]) / 2])
    tl = _rotate(c, np.array([local[0], local[1]]), angle)
    ex = (_rotate(c, np.array([local[2], local[1]]), angle) - tl) / (size - 1)
    ey = (_rotate(c, np.array([local[0], local[3]]), angle) - tl) / (size - 1)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    xs = tl[0] + cols * ex[0] + rows * ey[0]
    ys = tl[1] + cols * ex[1] + rows * ey[1]
    return ChipPlan(box, level + 1, xs, ys)


def extract_chip(rgb: np.ndarray, details: ChipDetails) -> np.ndarray:
    """dlib's extract_image_chip (bilinear) for a square chip -> (size, size, 3) uint8."""
    img = _check_rgb(rgb)
    size, rect = details.size, details.rect
    l, t, r, b = _round_rect(rect)
    if details.angle == 0 and size == r - l + 1 == b - t + 1 and np.allclose(rect, (l, t, r, b)):
        return _plain_crop(img, (l, t, r, b))
    plan = chip_plan(details, *img.shape[:2])
    if plan is None:
        return np.zeros((size, size, 3), np.uint8)
    l, t, r, b = plan.box
    level_img = img[t:b + 1, l:r + 1]
    for _ in range(plan.levels):
        level_img = pyramid_down(level_img)
    if level_img.size == 0:
        return np.zeros((size, size, 3), np.uint8)
    return _bilinear(level_img, plan.xs, plan.ys)


def _plain_crop(img: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    l, t, r, b = rect
    out = np.zeros((b - t + 1, r - l + 1, 3), np.uint8)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(l, 0), max(t, 0), min(r, w - 1), min(b, h - 1)
    if x0 <= x1 and y0 <= y1:
        out[y0 - t:y1 - t + 1, x0 - l:x1 - l + 1] = img[y0:y1 + 1, x0:x1 + 1]
    return out


def face_chip(rgb: np.ndarray, shape5: np.ndarray, size: int = CHIP_SIZE,
              padding: float = CHIP_PADDING) -> np.ndarray:
    """Equivalent of ``dlib.get_face_chip(rgb, shape5, size, padding)`` -> (size, size, 3) uint8.

    ``shape5``: (5, 2) landmarks of dlib's 5-point shape predictor, in photo pixel coordinates.
    """
    if size < 2 or padding < 0:
        raise ChipError(f"bad chip size {size} / padding {padding}")
    return extract_chip(rgb, chip_details(shape5, size, padding))


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise ChipError(f"expected an (H, W, 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    return arr


# --------------------------------------------------------------------------- 5-point landmarks

SHAPE5_MODEL = "shape_predictor_5_face_landmarks.dat"
_shape5_lock = threading.Lock()
_shape5_predictor: object | None = None


def landmarks5(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """dlib's 5-point landmarks (5, 2) inside a face box (x0, y0, x1, y1), e.g. ``Face.box``.

    Points are integer pixel positions, as dlib reports them: the photo's right eye (outer,
    inner corner), left eye (outer, inner), base of the nose.
    """
    global _shape5_predictor
    import dlib

    img = np.ascontiguousarray(_check_rgb(rgb))
    with _shape5_lock:
        if _shape5_predictor is None:
            from latentstudio.models.fetch import require

            _shape5_predictor = dlib.shape_predictor(str(require("dlib_landmarks") / SHAPE5_MODEL))
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = _shape5_predictor(img, rect)  # type: ignore[operator]
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def shape5_fractions(images: np.ndarray) -> np.ndarray:
    """dlib's 5 landmarks of the largest detected face in each image (N, S, S, 3) uint8, as
    fractions of the side (pixel-centre convention) -> (N, 5, 2); NaN where no face is found.

    ``np.nanmean`` of this over FFHQ-aligned generator samples gives ``FFHQ_SHAPE5``.
    """
    import dlib

    detector = dlib.get_frontal_face_detector()
    out = np.full((len(images), 5, 2), np.nan)
    for i, img in enumerate(images):
        img = np.ascontiguousarray(_check_rgb(img))
        rects = detector(img, 1)
        if len(rects) == 0:
            continue
        r = max(rects, key=lambda r: r.area())
        pts = landmarks5(img, (r.left(), r.top(), r.right(), r.bottom()))
        out[i] = (pts + 0.5) / np.array([img.shape[1], img.shape[0]])
    return out


# --------------------------------------------------------------------------- torch chip


@dataclass(frozen=True)
class GridPlan:
    """A ``ChipPlan`` for torch: crop ``box``, ``levels`` pyramid steps, then ``grid``."""

    box: tuple[int, int, int, int]
    levels: int
    grid: Tensor  # [1, 150, 150, 2], grid_sample coordinates (align_corners=False)


_CACHE: dict[tuple[object, ...], object] = {}  # fixed plans and on-device constants
_CACHE_LOCK = threading.Lock()


def ffhq_plan(size: int, shape5: np.ndarray = FFHQ_SHAPE5) -> GridPlan:
    """dlib's chip plan for a ``size``² aligned image whose face has landmarks ``shape5``
    (fractions of the side), as a grid_sample grid over the shrunk crop."""
    pts = np.asarray(shape5, np.float64) * size - 0.5
    plan = chip_plan(chip_details(pts), size, size)
    if plan is None:
        raise ChipError("the chip lies outside the image")
    l, t, r, b = plan.box
    h, w = b - t + 1, r - l + 1
    for _ in range(plan.levels):
        h, w = (h - 3) // 2, (w - 3) // 2
    if min(h, w) < 2:
        raise ChipError(f"aligned image of side {size} is too small for a face chip")
    grid = np.stack([(plan.xs + 0.5) / w * 2 - 1, (plan.ys + 0.5) / h * 2 - 1], axis=-1)
    return GridPlan(plan.box, plan.levels, torch.from_numpy(grid[None].astype(np.float32)))


def _cached(key: tuple[object, ...], make: Callable[[], object]) -> object:
    """Build ``make()`` once per key (no host-to-device copies inside a training loop)."""
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = make()
        return _CACHE[key]


_TAPS = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
_KERNEL = (_TAPS[:, None] * _TAPS[None, :] / 256.0)[None, None]  # [1, 1, 5, 5]


def pyramid_down_torch(x: Tensor) -> Tensor:
    """``pyramid_down`` in float, differentiable: [N, C, H, W] -> [N, C, (H-3)//2, (W-3)//2]."""
    kernel = _cached(("kernel", x.device, x.dtype), lambda: _KERNEL.to(x.device, x.dtype))
    kernel = kernel.expand(x.shape[1], 1, 5, 5)  # type: ignore[attr-defined]
    return F.conv2d(x, kernel, stride=2, groups=x.shape[1])


def sample_chip(images: Tensor, plan: GridPlan) -> Tensor:
    """Run a chip plan on [N, C, S, S] images -> [N, C, 150, 150] (crop, pyramid, bilinear)."""
    l, t, r, b = plan.box
    x = images[:, :, t:b + 1, l:r + 1]
    for _ in range(plan.levels):
        x = pyramid_down_torch(x)
    grid = plan.grid.to(x.device, x.dtype).expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def aligned_chip(images: Tensor) -> Tensor:
    """FFHQ-aligned images [N, 3, S, S] in [-1, 1] (S = 256, 512, 1024, ...) -> dlib-style face
    chips [N, 3, 150, 150] in [-1, 1]. Differentiable; a fixed layout for every image.

    The chip is the one ``dlib.get_face_chip`` would cut for the average FFHQ-aligned face
    (``FFHQ_SHAPE5``), sampled the way dlib samples it: the same crop, the same number of
    ``pyramid_down`` steps (none at 256², two at 1024²; Gaussian [1 4 6 4 1], which is also the
    anti-aliasing) and bilinear reads at dlib's positions, in float instead of uint8.
    """
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ChipError(f"expected [N, 3, S, S] aligned images, got {tuple(images.shape)}")
    if images.shape[-1] < 64:
        raise ChipError(f"aligned images must be at least 64 px wide, got {images.shape[-1]}")
    size, device, dtype = int(images.shape[-1]), images.device, images.dtype

    def make() -> GridPlan:
        plan = ffhq_plan(size)
        return GridPlan(plan.box, plan.levels, plan.grid.to(device, dtype))

    return sample_chip(images, _cached(("plan", size, device, dtype), make))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- identity network


def identity_distance(a: Tensor, b: Tensor) -> Tensor:
    """L2 distance between descriptors [..., 128] -> [...]; < 0.6 means "same person" for dlib."""
    return torch.linalg.vector_norm(a - b, dim=-1)


class IdentityNet(nn.Module):
    """dlib's face-recognition ResNet behind two entry points: photos and aligned images.

    Frozen (no parameter gradients) but differentiable with respect to its inputs.
    """

    def __init__(self, net: DlibResNet) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    @classmethod
    def load(cls, device: str | torch.device = "cpu", weights: Path | None = None) -> "IdentityNet":
        return cls(load_dlib_resnet(device, weights))

    @property
    def device(self) -> torch.device:
        return self.net.mean_rgb.device

    def embed_chips(self, chips: np.ndarray) -> Tensor:
        """Face chips (N, 150, 150, 3) or (150, 150, 3) uint8 -> [N, 128] (no grad)."""
        arr = np.asarray(chips)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype != np.uint8 or arr.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ChipError(f"expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) uint8 chips, "
                            f"got {arr.dtype} {arr.shape}")
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            return self.net(x)

    def embed_photo(self, rgb: np.ndarray, shape5: np.ndarray) -> Tensor:
        """A photo (H, W, 3) uint8 and dlib 5-point landmarks (5, 2) -> [128] descriptor.

        Same chip as ``dlib.get_face_chip(rgb, shape5, 150, 0.25)``, so the same result as
        ``dlib.face_recognition_model_v1.compute_face_descriptor(rgb, shape5)``.
        """
        return self.embed_chips(face_chip(rgb, shape5))[0]

    def embed_aligned(self, images: Tensor) -> Tensor:
        """FFHQ-aligned images [N, 3, S, S] in [-1, 1] -> [N, 128], differentiable."""
        chips = aligned_chip(images.to(self.device))
        return self.net((chips + 1.0) * 127.5)

    def forward(self, images: Tensor) -> Tensor:
        """Same as ``embed_aligned``."""
        return self.embed_aligned(images)
