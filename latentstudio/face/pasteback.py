"""Put an edited aligned face back into the original photo.

The edited crop is warped into the photo with the exact inverse of the alignment transform
(bicubic; a crop larger than the face's size in the photo is first box-filtered down to it so the
warp never aliases), colour-matched to the photo in the seam band (per-channel mean and a gently
clamped contrast gain), and blended with a feathered mask: the convex hull of the 68 landmarks
plus the forehead (the brows lifted by a fraction of the face height), grown a little and
feathered by a distance ramp. Everything is done in the mask's bounding box; the photo outside
the mask's support is copied, so those pixels are bit-identical to the input.

Another person's face (identity transfer, de-identification: ``other_landmarks``) is pasted only
where both faces are and is colour-matched over the whole face, so it takes the photo's skin tone;
above the brows only where both the pasted face and the photo show skin, so neither person's fringe
is cut into a band across the other's forehead.

Mask geometry is defined in a 1024² aligned frame (face-relative units), so it does not depend on
the photo's resolution or on the edited crop's size (256, 512 or 1024 all work).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from latentstudio.face.align import aligned_to_photo_matrix, apply_matrix, photo_to_aligned_matrix

FRAME = 1024  # the aligned frame the mask parameters below are expressed in
FOREHEAD = 0.35  # brows are lifted by this fraction of the brow-to-chin height
#: the same when the face is another person's (identity transfer, de-identification): just above
#: the brows, so the photo keeps its own hairline; with 0.35 the other person's fringe came along
#: and sat on the photo's hair as a band (bench/RESULTS.md, "The hairline of a pasted identity")
IDENTITY_FOREHEAD = 0.15
GROW = 0.03 * FRAME  # the hull is grown by this much (aligned px) ...
FEATHER = 0.07 * FRAME  # ... and fades to zero over this width, inwards from the grown edge
MARGIN = 4.0  # keep the mask this far inside the aligned crop (aligned px)
GAIN_LIMITS = (0.85, 1.18)  # contrast correction allowed per channel
#: the same for another person's face, matched to the photo's skin over the whole face: two people's
#: skin differs far more than an edit changes one person's
FACE_GAIN_LIMITS = (0.7, 1.4)
#: above the brows another person's face shows where both faces' pixels are within SKIN_NEAR robust
#: spreads of their own skin colour (YCrCb distance; the spreads floored at SKIN_SPREAD_FLOOR), not
#: beyond SKIN_FAR, and fading between
SKIN_NEAR, SKIN_FAR = 2.0, 3.0
SKIN_SPREAD_FLOOR = (6.0, 3.0, 3.0)
SKIN_RAMP = 0.04 * FRAME  # the test fades in over this height above the brow line
SKIN_BLUR = 0.02 * FRAME  # and is smoothed over this size, so it never cuts a hard edge

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), photo pixels


ColourMatch = tuple[np.ndarray, np.ndarray, np.ndarray]  # (edit mean, photo mean, gain), per channel


def paste_back(photo: np.ndarray, aligned_edited: np.ndarray, quad: np.ndarray,
               landmarks_photo: np.ndarray, *, match_colour: bool = True,
               colour_filter: Callable[[ColourMatch], ColourMatch] | None = None,
               forehead: float = FOREHEAD, other_landmarks: np.ndarray | None = None) -> np.ndarray:
    """The photo with the edited face blended in, at the photo's resolution (uint8, H x W x 3).

    ``quad`` is ``Alignment.quad`` (photo coordinates), ``landmarks_photo`` the face's 68
    landmarks in the photo. ``aligned_edited`` is a square uint8 RGB crop of any size.
    ``colour_filter`` sees the colour match measured in the seam band and returns the one to
    apply (a video smooths it over time so the face does not flicker). ``forehead``: how far above
    the brows the pasted region reaches, as a fraction of the brow-to-chin height (``FOREHEAD``;
    ``IDENTITY_FOREHEAD`` when the face is another person's).

    ``other_landmarks``: when the edited face is another person's (identity transfer,
    de-identification), its 68 landmarks in ``aligned_edited``'s pixels. Its outline differs from
    the photo's, so only the region inside both faces is pasted (else the strip between the two
    jaw lines shows the other render's neck as a band), and its colour is matched to the photo's
    face over the whole face instead of the seam band (the two people's skin tones differ; the
    photo's neck and ears stay).
    """
    img = _check_rgb(photo, "photo")
    edit = _check_rgb(aligned_edited, "aligned_edited")
    if edit.shape[0] != edit.shape[1]:
        raise ValueError(f"aligned_edited must be square, got {edit.shape[1]}x{edit.shape[0]}")
    other = None
    if other_landmarks is not None:
        other = apply_matrix(aligned_to_photo_matrix(quad, edit.shape[0]), np.asarray(other_landmarks, np.float64))
    alpha, box = paste_mask(img.shape, quad, landmarks_photo, forehead, other)
    out = img.copy()
    if alpha.size == 0:
        return out
    x0, y0, x1, y1 = box
    warped = warp_to_photo(edit, quad, box)
    region = img[y0:y1, x0:x1].astype(np.float32)
    if match_colour:
        match = measure_colour(warped, region, alpha) if other is None else measure_face_colour(warped, region, alpha)
        if match is not None and colour_filter is not None:
            match = colour_filter(match)
        if match is not None:
            mu_e, mu_p, gain = match
            warped = (warped - mu_e) * gain + mu_p
    if other is not None:
        alpha = alpha * forehead_skin(warped, region, alpha, quad, landmarks_photo, box)
    a = alpha[..., None]
    blended = region + a * (warped - region)  # exactly `region` where alpha == 0
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def warp_to_photo(edit: np.ndarray, quad: np.ndarray, box: Box) -> np.ndarray:
    """The aligned crop resampled onto the photo pixels of ``box`` (float32, h x w x 3)."""
    x0, y0, x1, y1 = box
    size = edit.shape[0]
    face_px = float(np.hypot(*(np.asarray(quad[3]) - np.asarray(quad[0]))))
    if face_px < size:  # downscaling: pre-filter so the warp samples without aliasing
        size = max(8, int(np.ceil(face_px)))
        edit = cv2.resize(edit, (size, size), interpolation=cv2.INTER_AREA)
    shift = np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1]])
    m = photo_to_aligned_matrix(quad, size) @ shift  # box pixel -> aligned pixel
    src = edit.astype(np.float32)
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    if np.allclose(m[2], (0.0, 0.0, 1.0)):
        return cv2.warpAffine(src, m[:2], (x1 - x0, y1 - y0), flags=flags,
                              borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpPerspective(src, m, (x1 - x0, y1 - y0), flags=flags,
                               borderMode=cv2.BORDER_REPLICATE)


def paste_mask(photo_shape: tuple[int, ...], quad: np.ndarray, landmarks_photo: np.ndarray,
               forehead: float = FOREHEAD, other_photo: np.ndarray | None = None) -> tuple[np.ndarray, Box]:
    """The feathered blend mask (float32 in [0, 1]) over its bounding box in the photo.

    Outside the returned box the mask is zero; inside it, zero outside the grown polygon (and,
    with ``other_photo``, the pasted face's own landmarks in photo coordinates, outside its polygon
    too: the smaller of the two masks).
    """
    h, w = photo_shape[:2]
    polygon = _face_polygon(quad, landmarks_photo, forehead)
    x0 = max(int(np.floor(polygon[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(polygon[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(polygon[:, 0].max())) + 2, w)
    y1 = min(int(np.ceil(polygon[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), np.float32), (0, 0, 0, 0)
    box = (x0, y0, x1, y1)
    alpha = _feathered(polygon, box, quad)
    if other_photo is not None:
        alpha = np.minimum(alpha, _feathered(_face_polygon(quad, other_photo, forehead), box, quad))
    return alpha, box


def _feathered(polygon: np.ndarray, box: Box, quad: np.ndarray) -> np.ndarray:
    """1 inside ``polygon`` (photo coordinates) fading to 0 at its edge over ``FEATHER``, over ``box``."""
    x0, y0, x1, y1 = box
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shift_bits = 4
    pts = np.rint((polygon - (x0, y0)) * (1 << shift_bits)).astype(np.int32)
    cv2.fillConvexPoly(inside, pts, 1, lineType=cv2.LINE_8, shift=shift_bits)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    feather_px = FEATHER * _photo_px_per_frame_px(quad)
    t = np.clip(dist / max(feather_px, 1.0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)  # smoothstep


def _photo_px_per_frame_px(quad: np.ndarray) -> float:
    return float(np.hypot(*(np.asarray(quad[3]) - np.asarray(quad[0])))) / FRAME


def aligned_face_mask(landmarks: np.ndarray, size: int, forehead: float, grow: float) -> np.ndarray:
    """The feathered face mask (size, size) float32 of an aligned ``size``² crop whose 68
    ``landmarks`` are given in its pixels: the landmark hull plus the forehead (``forehead`` as in
    ``paste_back``), grown by ``grow`` of the frame and fading inwards over ``FEATHER``."""
    quad = np.array([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5], [size - 0.5, -0.5]])
    return _feathered(_face_polygon(quad, landmarks, forehead, grow * FRAME), (0, 0, size, size), quad)


def _face_polygon(quad: np.ndarray, landmarks_photo: np.ndarray, lift: float, grow: float = GROW) -> np.ndarray:
    """Convex polygon (photo coordinates) of the landmark hull + forehead, grown by ``grow``
    (aligned-frame pixels)."""
    lm = apply_matrix(photo_to_aligned_matrix(quad, FRAME), landmarks_photo)
    brows = lm[17:27]
    height = max(lm[8, 1] - brows[:, 1].mean(), 1.0)  # brow line to chin, aligned frame
    forehead = brows - (0.0, lift * height)  # "up" is -y in the aligned frame
    pts = np.vstack([lm, forehead])
    lo, hi = grow + MARGIN - 0.5, FRAME - 0.5 - grow - MARGIN
    pts = np.clip(pts, lo, hi)
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    angles = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)
    disk = grow * np.c_[np.cos(angles), np.sin(angles)]
    grown = (hull[:, None, :] + disk[None]).reshape(-1, 2)
    grown = cv2.convexHull(grown.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    return apply_matrix(aligned_to_photo_matrix(quad, FRAME), grown)


def forehead_skin(warped: np.ndarray, region: np.ndarray, alpha: np.ndarray, quad: np.ndarray,
                  landmarks_photo: np.ndarray, box: Box) -> np.ndarray:
    """How much of another person's face may show at each pixel of ``box`` (float32 in [0, 1]):
    1 up to the brow line; above it (fading in over ``SKIN_RAMP``) only as much as both the pasted
    face and the photo look like their own skin there, each judged against its own skin between
    the eyes and the nose tip. A fringe of the pasted person that reaches below the mask's top
    came out as a dark band across the photo's bare forehead (and a bare forehead as a band cut
    into the photo's fringe); now the photo shows there (bench/RESULTS.md)."""
    x0, y0, x1, y1 = box
    to_frame = photo_to_aligned_matrix(quad, FRAME)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    frame_y = apply_matrix(to_frame, np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float64))[:, 1]
    frame_y = frame_y.reshape(alpha.shape)
    lm = apply_matrix(to_frame, np.asarray(landmarks_photo, np.float64))
    brow_y = float(lm[17:27, 1].mean())
    eyes_y, nose_y = float(lm[[40, 41, 46, 47], 1].max()), float(lm[33, 1])  # cheeks and nose: skin
    above = np.clip((brow_y - frame_y) / SKIN_RAMP, 0.0, 1.0).astype(np.float32)
    inner = (alpha > 0.9) & (frame_y > eyes_y) & (frame_y < nose_y)
    if int(inner.sum()) < 64:
        return np.ones_like(alpha)
    skin = np.minimum(_skin_likeness(warped, inner), _skin_likeness(region, inner))
    k = max(3, int(SKIN_BLUR * _photo_px_per_frame_px(quad)) | 1)
    skin = cv2.GaussianBlur(skin, (k, k), 0)
    return (1.0 - above + above * skin).astype(np.float32)


def _skin_likeness(image: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """1 where a pixel's YCrCb distance from the median over ``inner`` is within ``SKIN_NEAR``
    robust spreads, 0 beyond ``SKIN_FAR``, linear between → (h, w) float32."""
    ycc = cv2.cvtColor(np.clip(np.rint(image), 0, 255).astype(np.uint8), cv2.COLOR_RGB2YCrCb).astype(np.float32)
    ref = ycc[inner]
    med = np.median(ref, axis=0)
    spread = 1.4826 * np.median(np.abs(ref - med), axis=0) + np.asarray(SKIN_SPREAD_FLOOR, np.float32)
    r = np.sqrt((((ycc - med) / spread) ** 2).sum(-1))
    return np.clip((SKIN_FAR - r) / (SKIN_FAR - SKIN_NEAR), 0.0, 1.0).astype(np.float32)


def measure_colour(warped: np.ndarray, region: np.ndarray, alpha: np.ndarray) -> ColourMatch | None:
    """The per-channel shift and gain that make the edit match the photo in the seam band
    (None when the band is too small to measure)."""
    band = (alpha > 0.0) & (alpha < 1.0)
    if int(band.sum()) < 16:
        return None
    e, p = warped[band], region[band]
    mu_e, mu_p = e.mean(axis=0), p.mean(axis=0)
    gain = np.clip(p.std(axis=0) / np.maximum(e.std(axis=0), 1e-3), *GAIN_LIMITS)
    return mu_e, mu_p, gain


def measure_face_colour(warped: np.ndarray, region: np.ndarray, alpha: np.ndarray) -> ColourMatch | None:
    """The per-channel shift and gain that give another person's face the photo face's colour:
    means and spreads over the whole pasted face, weighted by alpha² (its inside counts most)."""
    wgt = (alpha * alpha)[..., None]
    total = float(wgt.sum())
    if total < 16.0:
        return None
    mu_e, mu_p = (warped * wgt).sum((0, 1)) / total, (region * wgt).sum((0, 1)) / total
    sd_e = np.sqrt((((warped - mu_e) ** 2) * wgt).sum((0, 1)) / total)
    sd_p = np.sqrt((((region - mu_p) ** 2) * wgt).sum((0, 1)) / total)
    return mu_e, mu_p, np.clip(sd_p / np.maximum(sd_e, 1e-3), *FACE_GAIN_LIMITS)


def _check_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {a.dtype} {a.shape}")
    return a
