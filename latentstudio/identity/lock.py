"""Attribute lock: after an identity change, put the head pose and the mouth back where the
attribute face has them.

The mapper already keeps B's components along our pose and expression boundaries, but A − B moves
the pose and the mouth through other directions too (a different face outline tilts the fitted
head; a different mouth shape reads as another expression). The lock measures what the change did
and undoes it along the boundaries that control those attributes:

    x(c)  = X + Σⱼ cⱼ · Dⱼ                        Dⱼ: boundary j's unit normal on the first or the
                                                  second half of its own W+ slots
    f(x)  = [yaw / 3°, pitch / 3°, mouth points / (2 % of the inter-ocular distance)]
             measured by dlib's 68 landmarks (``edit.predictors``; yaw and pitch by solvePnP,
             ``edit.predictors.head_pose``) on the render the user gets: the full 1024² network,
             the result inside the attribute face's hair and background (``identity.surroundings``,
             as the app and the CLI show it), area-reduced to dlib's 256² working size. Our
             landmark net on 128² previews was tried first: it reads real inversions' pose too
             far off; the code's own render, used before the surroundings, left the shown mouth
             0.3–0.5 % of the inter-ocular distance further off (bench/RESULTS.md)
    c     = argmin ‖f(x(c)) − f(T)‖² + λ‖c‖²      T: the attribute face's code

solved by damped Gauss–Newton. The Jacobian is a finite difference on the cheap 256² preview
route (one batch of 1 + 8 renders per iteration: it only needs the local slope); the values the
fit matches, and every step's acceptance, are read on the full network. Measuring everything on
the preview route, as before, left real photos' transfers 2.2° off in yaw on average (6.3° at
most) where the full render is now 1.1° (2.8°): the distilled preview head and the full network
place a real inversion's landmarks a few pixels apart, and by different amounts for the two faces
(bench/RESULTS.md; those figures were taken while dlib still misread the preview's strided
images, and with that fixed the preview still leaves 1.3° where the full render leaves 0.7°). Each boundary enters the fit twice, on the coarse and on the fine half of its
slots (8 unknowns): another person's mouth differs in shape, not only in how much it smiles or
opens, and one coefficient per boundary could not match it (de-identified real photos, 5 photos
× 6 seeds: yaw over 3° or the mouth over 4 % of the inter-ocular distance on 5 of 30 with whole
boundaries and 3 iterations, on none split with 4; bench/RESULTS.md). Up to 6 iterations (a fit
that stops improving ends sooner): on photos inverted on another machine 4 left one de-identified
photo's mouth at 4.4 %, 6 at 3.4 %. No boundary moves more than ``MAX_TOTAL`` in all (about the
range of an edit slider): a real face turned ~33° comes out of the mapper facing the camera more,
and walking the yaw boundary 5–7 units back melted it (bench/RESULTS.md, held-out photos); capped,
the pose stays some degrees off but the face stays whole (``api.pose_note`` tells the user). No
identity loss is involved and nothing is learned per pair: it is a measurement and an 8-unknown
least-squares fit, computed once per pair of faces: ~2.9 s on 2 CPU cores when it read the code's
own render (median over 14 real pairs), about 1.5× that in the surroundings (bench/RESULTS.md,
nineteenth session: 8.5 s against 5.8 s on a slower 2-core machine).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from latentstudio.latent import W_PLUS

LOCK = ("yaw", "pitch", "smile", "mouth_open")
SIZE = 256  # render the landmarks are measured on (dlib's working size)
STEP = 1.0  # finite-difference step along a boundary (W units)
ITERATIONS = 6
DAMPING = 0.05
MAX_STEP = 4.0  # per boundary and iteration
MAX_TOTAL = 4.0  # per boundary in all: further along one, a face melts (a turned real face, bench/RESULTS.md)
POSE_SCALE = 3.0  # degrees that weigh as much as …
MOUTH_SCALE = 0.02  # … this fraction of the inter-ocular distance per mouth point
POSE_WEIGHT = 20 ** 0.5  # the head pose weighs as much as the 20 mouth points together
MOUTH = slice(48, 68)


@dataclass(frozen=True)
class Direction:
    """One boundary as a W+ direction: unit normal (512,) on slots lo … hi (inclusive)."""

    name: str
    normal: np.ndarray
    lo: int
    hi: int

    def as_w_plus(self) -> np.ndarray:
        d = np.zeros(W_PLUS, np.float32)
        d[self.lo:self.hi + 1] = self.normal
        return d


@functools.lru_cache(maxsize=8)
def directions(names: tuple[str, ...] = LOCK) -> tuple[Direction, ...]:
    """The shipped boundaries ``names`` (those that exist) as W+ directions (read once)."""
    from latentstudio.edit.boundaries import load_all

    found = load_all()
    return tuple(Direction(n, np.asarray(found[n].normal, np.float32), *found[n].layers) for n in names if n in found)


def lock_directions(names: tuple[str, ...] = LOCK) -> tuple[Direction, ...]:
    """What the lock fits: each of the boundaries ``names`` split into the first and the second
    half of its slots (a boundary on slots 0 … 6 gives 0 … 2 and 3 … 6)."""
    out: list[Direction] = []
    for d in directions(names):
        if d.hi == d.lo:  # one slot: nothing to split
            out.append(d)
            continue
        mid = (d.lo + d.hi + 1) // 2
        out += [Direction(f"{d.name}[{d.lo}-{mid - 1}]", d.normal, d.lo, mid - 1),
                Direction(f"{d.name}[{mid}-{d.hi}]", d.normal, mid, d.hi)]
    return tuple(out)


def features(landmarks: np.ndarray, iod: float) -> np.ndarray:
    """Landmarks (N, 68, 2) as fractions of the image → (N, 2 + 40): yaw, pitch and the mouth
    points, each scaled so that one unit is what the lock tolerates."""
    from latentstudio.edit.predictors import head_pose

    yaw, pitch, _ = head_pose(landmarks * SIZE, SIZE)
    mouth = landmarks[:, MOUTH].reshape(len(landmarks), -1) / (MOUTH_SCALE * iod)
    pose = np.stack([yaw, pitch], 1) * (POSE_WEIGHT / POSE_SCALE)
    return np.concatenate([pose, mouth], 1)


def landmarks(models, codes: np.ndarray, full: bool = True,  # noqa: ANN001 - IdentityModels
              outside: np.ndarray | None = None) -> np.ndarray:
    """(N, 23, 512) codes → dlib's 68 landmarks (N, 68, 2), as fractions of the image, on their
    full 1024² renders area-reduced to 256² (``full``), or on the 256² preview route's renders.
    ``outside``: each full render is the code inside ``outside``'s hair and background
    (``identity.surroundings``), the picture the app and the CLI show, where there is a renderer."""
    from latentstudio.edit.predictors import find_landmarks, working_images
    from latentstudio.models.generator import to_uint8

    g = models.generator
    by = models.surroundings if full and outside is not None else None
    x = np.ascontiguousarray(codes, np.float32)
    with g.lock, torch.no_grad():  # type: ignore[attr-defined]
        if by is None:
            img = g.predictor_images(x, full, SIZE)  # type: ignore[attr-defined]
        else:
            img = working_images(np.concatenate([to_uint8(by.render(g, c, outside)) for c in x]))
    return find_landmarks(img, models.predictors).points / SIZE


@dataclass(frozen=True)
class LockFit:
    """What the lock found: the W+ offset (23, 512), and what it left unmatched on the full
    render: ``pose_error`` the larger of the yaw and pitch differences (degrees), ``mouth_error``
    the mean distance of the 20 mouth points (fraction of the target's inter-ocular distance)."""

    offset: np.ndarray
    pose_error: float = 0.0
    mouth_error: float = 0.0


def lock_offset(code: np.ndarray, target: np.ndarray, models,  # noqa: ANN001 - IdentityModels
                dirs: tuple[Direction, ...] | None = None) -> np.ndarray:
    """The W+ offset (23, 512) that gives ``code``'s render the pose and mouth of ``target``'s."""
    return fit_lock(code, target, models, dirs).offset


def fit_lock(code: np.ndarray, target: np.ndarray, models,  # noqa: ANN001 - IdentityModels
             dirs: tuple[Direction, ...] | None = None) -> LockFit:
    """``lock_offset`` with what the fit left unmatched (:class:`LockFit`)."""
    dirs = lock_directions() if dirs is None else dirs
    if not dirs or np.array_equal(code, target):
        return LockFit(np.zeros_like(code))
    from latentstudio.edit.predictors import interocular

    basis = np.stack([d.as_w_plus() for d in dirs])  # (K, 23, 512)
    lm = np.concatenate([landmarks(models, target[None]), landmarks(models, code[None], outside=target)])
    iod = float(interocular(lm[0]))
    f_t, f = features(lm, iod)
    lam = DAMPING * len(f_t)

    def cost(f: np.ndarray, c: np.ndarray) -> float:
        return float(np.sum((f - f_t) ** 2) + lam * np.sum(c ** 2))

    c = np.zeros(len(dirs))
    for _ in range(ITERATIONS):
        x = code + np.tensordot(c, basis, 1)
        cheap = features(landmarks(models, np.concatenate([x[None], x[None] + STEP * basis]), full=False), iod)
        jac = ((cheap[1:] - cheap[0]) / STEP).T  # (F, K): the slope, on the preview route
        delta = np.linalg.solve(jac.T @ jac + lam * np.eye(len(dirs)), -(jac.T @ (f - f_t)) - lam * c)
        delta = np.clip(c + np.clip(delta, -MAX_STEP, MAX_STEP), -MAX_TOTAL, MAX_TOTAL) - c
        for _try in range(2):  # accept the step only if the fit improves; else try half of it
            f_new = features(landmarks(models, (x + np.tensordot(delta, basis, 1))[None], outside=target), iod)[0]
            if cost(f_new, c + delta) < cost(f, c):
                c, f = c + delta, f_new
                break
            delta = delta / 2
        else:
            break
    left = f - f_t
    pose = float(np.abs(left[:2]).max()) * POSE_SCALE / POSE_WEIGHT
    mouth = float(np.linalg.norm(left[2:].reshape(-1, 2), axis=1).mean()) * MOUTH_SCALE
    return LockFit(np.tensordot(c, basis, 1).astype(np.float32), pose, mouth)
