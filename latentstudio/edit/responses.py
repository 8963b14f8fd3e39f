"""Measured conditional editing: hold the kept attributes where the predictors see them.

InterFaceGAN's conditioning (:mod:`latentstudio.edit.conditional`) assumes every attribute is a
linear function of the code whose gradient is its boundary normal. Our predictors show it is not
(bench/RESULTS.md, "Conditional editing"): removing the kept normals over-corrects some attributes
(a gender edit flips the smile score's drift) and under-corrects others (a smile edit still raises
the age and eyeglasses scores by half as much as without --keep), because the normals separate the
extremes of the data but are not where the scores change, and the scores saturate.

This module measures instead, in two parts.

* A **response table** (:class:`Responses`, ``boundaries/responses.npz``, written by
  ``latentstudio boundaries calibrate``): for each boundary, on held-out generated faces, the mean
  change of every predictor when the code steps ``t`` along the normal on the boundary's default
  slot range, at the steps :data:`STEPS`, in standard deviations of each score over those faces.
* A **closed loop** per code (:func:`hold_kept`): start from InterFaceGAN's projection edit, then
  render, score, and take damped (Levenberg–Marquardt, trust-region) steps along the edited
  and kept normals, with the Jacobian read from the table's curves (smooth population slopes; a
  per-face finite-difference Jacobian is too noisy to invert), so that every kept score returns to
  its value on the unedited code while every edited score moves at least as far as under the plain
  edit. The best code scored is kept, so the loop never ends worse than the projection it starts
  from (by the predictors).

>>> table = Responses.load(folder)            # None when the folder has no responses.npz
>>> held = hold_kept(w_plus, {"smile": 2.0}, boundaries, ["age", "gender"], table, predictor_scorer(g, full=True))
>>> held.w_plus, held.steps, held.residual

The CLI scores the loop on the full 1024² render (``full=True``, area-reduced to the predictors'
256²), the face the user exports: scored on the 256² preview route, the loop held the kept scores
of the preview, and on five real photos the full render's kept scores still moved by 0.18 of a
standard deviation on average (0.09 scored on the full render; bench/RESULTS.md). The table is
calibrated on the preview route (it only needs the slopes).

One edit costs 2 + ``iterations`` + 1 renders and scorings (≈ 0.3 s each on a 2-core CPU). The
loop holds the *scores*: where a predictor is confounded by the edited attribute (smiling raises
the age and eyeglasses scores), holding it needs steps that a linear condition cannot give
(bench/RESULTS.md, "Measured --keep").
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentstudio.edit.apply import apply_edits, edit_delta
from latentstudio.edit.boundaries import NUM_SLOTS, W_DIM, Boundary, BoundaryError
from latentstudio.progress import CancelFn, Progress, ProgressFn, check, report

FILE = "responses.npz"
#: steps along a unit normal at which the responses are measured (0 → 0 is implied)
STEPS = (-3.0, -1.5, -0.5, 0.5, 1.5, 3.0)
#: the loop's step along any normal stays within this (the curves are extrapolated linearly)
MAX_STEP = 6.0
#: closed loop: steps (renders) after the start, largest first move along a normal, and the
#: Levenberg–Marquardt damping of the normal equations (in squared table stds)
ITERATIONS = 6
RADIUS = 1.0
LM_DAMPING = 0.05

Scorer = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def normal_digest(normal: np.ndarray) -> str:
    """A short fingerprint of a normal: a curve measured on another vector is not used."""
    return hashlib.sha1(np.round(np.asarray(normal, np.float64), 4).astype(np.float32).tobytes()).hexdigest()[:10]


@dataclass(frozen=True)
class Responses:
    """Mean predictor responses to steps along boundary normals.

    names: (m,) directions; layers: (m,2) the slot range each was stepped on; digests: (m,)
    :func:`normal_digest` of each normal; predictors: (p,) score names; std: (p,) each score's std
    over the faces (the unit of ``mean``); steps: (T,) ascending, including 0; mean: (m,T,p) mean
    score change in those stds (0 at step 0); faces: how many faces the means are over.
    """

    names: tuple[str, ...]
    layers: np.ndarray
    digests: tuple[str, ...]
    predictors: tuple[str, ...]
    std: np.ndarray
    steps: np.ndarray
    mean: np.ndarray
    faces: int

    # ------------------------------------------------------------------------------ files
    @staticmethod
    def load(folder: str | Path) -> Responses | None:
        """The table in ``folder/responses.npz``; None if absent. A damaged file raises BoundaryError."""
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as d:
                t = Responses(tuple(str(s) for s in d["names"]), d["layers"].astype(np.int64),
                              tuple(str(s) for s in d["digests"]), tuple(str(s) for s in d["predictors"]),
                              d["std"].astype(np.float64), d["steps"].astype(np.float64), d["mean"].astype(np.float64), int(d["faces"]))
        except (OSError, ValueError, KeyError) as exc:
            raise BoundaryError(f"cannot read response table {path}: {exc}") from exc
        m, p, n = len(t.names), len(t.predictors), len(t.steps)
        if t.mean.shape != (m, n, p) or t.layers.shape != (m, 2) or len(t.digests) != m or t.std.shape != (p,) \
                or not np.all(np.isfinite(t.mean)) or not np.all(t.std > 0) or n < 2 or not np.all(np.diff(t.steps) > 0):
            raise BoundaryError(f"response table {path} is inconsistent (shapes {t.mean.shape}, {t.layers.shape})")
        return t

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FILE
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, names=np.array(self.names), layers=self.layers, digests=np.array(self.digests),
                 predictors=np.array(self.predictors), std=self.std, steps=self.steps, mean=self.mean,
                 faces=np.array(self.faces))
        os.replace(tmp, path)
        return path

    # ------------------------------------------------------------------------------ queries
    def covers(self, boundaries: Mapping[str, Boundary], names: Iterable[str]) -> bool:
        """True when every name has curves measured on its current normal and default slot
        range, and is also a predictor (so that "does not move" can be measured)."""
        for name in names:
            if name not in self.names or name not in self.predictors or name not in boundaries:
                return False
            i, b = self.names.index(name), boundaries[name]
            if self.digests[i] != normal_digest(b.normal) or tuple(int(x) for x in self.layers[i]) != tuple(b.layers):
                return False
        return True

    def response(self, name: str, predictor: str, t: float) -> float:
        """Mean change of ``predictor`` (in the table's stds) for a step ``t`` along ``name``:
        piecewise linear through the measured steps, linear beyond the last segment."""
        y = self.mean[self.names.index(name), :, self.predictors.index(predictor)]
        return float(_interp(t, self.steps, y))

    def jacobian(self, names: Sequence[str], x: np.ndarray, h: float = 0.25) -> np.ndarray:
        """(k,k): d(score of names[i]) / d(step along names[j]) at steps ``x`` (k,), from the curves
        (central difference over ±h; additive across directions, so it only depends on x[j])."""
        return np.array([[(self.response(d, p, x[j] + h) - self.response(d, p, x[j] - h)) / (2 * h)
                          for j, d in enumerate(names)] for p in names])


def _interp(t: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """Piecewise linear through (xs, ys), extended linearly beyond both ends."""
    if t < xs[0]:
        return float(ys[0] + (t - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0]))
    if t > xs[-1]:
        return float(ys[-1] + (t - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]))
    return float(np.interp(t, xs, ys))


def measure(score: Scorer, boundaries: Mapping[str, Boundary], names: Sequence[str], codes: np.ndarray, *,
            steps: Sequence[float] = STEPS, progress: ProgressFn | None = None,
            cancelled: CancelFn | None = None) -> Responses:
    """Score ``codes`` (N,23,512), then the codes stepped along each boundary in ``names`` (on its
    default slot range) by each of ``steps``: the :class:`Responses` table, over every predictor
    ``score`` returns. ``score`` maps codes to {predictor: (N,) float}, NaN where a face was not
    found (:func:`predictor_scorer`); such faces are left out of that mean. Progress counts
    batches of N codes (1 + len(names)·len(steps)); ``cancelled`` is asked before each."""
    unknown = [n for n in names if n not in boundaries]
    if unknown:
        raise BoundaryError(f"unknown boundary {', '.join(unknown)}")
    codes = np.asarray(codes, np.float32).reshape(-1, NUM_SLOTS, W_DIM)
    grid = np.array(sorted(set(steps) | {0.0}), np.float64)
    total, done = 1 + len(names) * (len(grid) - 1), 0
    predictors: tuple[str, ...] = ()

    def scored(batch: np.ndarray) -> np.ndarray:  # (N,p)
        nonlocal done, predictors
        check(cancelled, "calibration cancelled")
        s = score(batch)
        predictors = predictors or tuple(s)
        done += 1
        report(progress, Progress("calibrate", done, total))
        return np.stack([np.asarray(s[k], np.float64) for k in predictors], axis=1)

    base = scored(codes)
    std = np.nanstd(base, axis=0)
    std[~(std > 0)] = 1.0
    mean = np.zeros((len(names), len(grid), len(predictors)))
    for i, name in enumerate(names):
        for j, t in enumerate(grid):
            if t != 0.0:
                moved = scored(apply_edits(codes, {name: float(t)}, boundaries))
                with np.errstate(invalid="ignore"):
                    mean[i, j] = np.nanmean(moved - base, axis=0) / std
    return Responses(tuple(names), np.array([boundaries[n].layers for n in names], np.int64).reshape(-1, 2),
                     tuple(normal_digest(boundaries[n].normal) for n in names), predictors,
                     std, grid, np.nan_to_num(mean), len(codes))


# ------------------------------------------------------------------------------ closed loop

def split_names(alphas: Mapping[str, float], keep: Iterable[str]) -> tuple[list[str], list[str]]:
    """(edited: names with a non-zero α, kept: the ``keep`` names not edited, without repeats):
    the directions :func:`hold_kept` steps along, in its order."""
    return ([n for n, a in alphas.items() if float(a) != 0.0],
            [k for k in dict.fromkeys(keep) if k not in alphas])


@dataclass
class Held:
    """A measured conditional edit: the code, the steps along each plain normal it amounts to
    (the projection start read as such steps, plus the loop's corrections), and how far each
    attribute ended from its target (in the table's stds; NaN where a face was not scored)."""

    w_plus: np.ndarray  # (23,512) float32
    steps: dict[str, float]
    residual: dict[str, float]


def hold_kept(w_plus: np.ndarray, alphas: Mapping[str, float], boundaries: Mapping[str, Boundary],
              keep: Sequence[str], table: Responses, score: Scorer, *, iterations: int = ITERATIONS,
              radius: float = RADIUS) -> Held:
    """Edit ``w_plus`` (23,512) by ``alphas`` holding the ``keep`` scores (see module doc).

    Starts from InterFaceGAN's projection edit; each iteration renders and scores the current code
    and takes a Levenberg–Marquardt step along the plain normals (Jacobian from the table, each
    step at most ``radius`` along any normal). The residual is the kept scores' distance from their
    unedited values and, one-sided, how far each edited score falls short of the plain edit's. A
    step that does not lower the residual is retried from the best code at half the radius; the
    best code scored is returned. Raises BoundaryError when the table does not cover every name on
    its current normal and default slot range. A face the predictors cannot score keeps the
    projection edit.
    """
    w0 = np.asarray(w_plus, np.float32).reshape(NUM_SLOTS, W_DIM)
    edited, keep = split_names(alphas, keep)
    names = edited + keep
    if not table.covers(boundaries, names):
        raise BoundaryError("no measured responses for " + ", ".join(names) + " on their default slot "
                            "ranges (run `latentstudio boundaries calibrate`)")
    wanted = {n: float(alphas[n]) for n in edited}
    if not keep or not edited:
        return Held(apply_edits(w0, wanted, boundaries), wanted, {})
    std = np.array([table.std[table.predictors.index(n)] for n in names])
    sign = np.sign([wanted[n] for n in edited])
    start, x0 = _projection_start(w0, wanted, keep, boundaries)

    def code(x: np.ndarray) -> np.ndarray:  # the projection edit plus steps along the plain normals
        return start + edit_delta(dict(zip(names, (x - x0).tolist())), boundaries)

    def scores(codes: np.ndarray) -> np.ndarray:  # (N,k) in the table's stds
        s = score(codes)
        return np.stack([np.asarray(s[n], np.float64) for n in names], axis=1) / std

    first = scores(np.stack([w0, apply_edits(w0, wanted, boundaries)]))
    target = np.concatenate([first[1, :len(edited)], first[0, len(edited):]])
    best_x, best_r, best_norm = x0, np.full(len(names), np.nan), np.inf
    x = x0
    for it in range(iterations + 1):
        r = scores(code(x)[None])[0] - target
        if not np.all(np.isfinite(r)):
            break
        r[:len(edited)] = sign * np.minimum(0.0, sign * r[:len(edited)])  # further than the plain edit is fine
        if float(np.linalg.norm(r)) < best_norm:
            best_x, best_r, best_norm = x, r, float(np.linalg.norm(r))
        else:
            radius /= 2
        if it == iterations:
            break
        jac = table.jacobian(names, best_x)
        step = np.linalg.solve(jac.T @ jac + LM_DAMPING * np.eye(len(names)), -jac.T @ best_r)
        step *= min(1.0, radius / max(float(np.max(np.abs(step))), 1e-12))
        x = np.clip(best_x + step, -MAX_STEP, MAX_STEP)
    return Held(code(best_x), dict(zip(names, best_x.tolist())), dict(zip(names, best_r.tolist())))


def _projection_start(w0: np.ndarray, alphas: Mapping[str, float], keep: Sequence[str],
                      boundaries: Mapping[str, Boundary]) -> tuple[np.ndarray, np.ndarray]:
    """InterFaceGAN's projection edit of ``w0``, and the steps along the plain normals (edited,
    then kept) that it amounts to (exact where the slot ranges agree): where the loop's Jacobian
    is read first."""
    kept = np.stack([boundaries[k].normal for k in keep]).astype(np.float64)  # (k,512)
    x = np.zeros(len(alphas) + len(keep))
    for i, (name, alpha) in enumerate(alphas.items()):
        n = boundaries[name].normal.astype(np.float64)
        coef, *_ = np.linalg.lstsq(kept.T, n, rcond=None)
        scale = alpha / max(float(np.linalg.norm(n - kept.T @ coef)), 1e-12)  # the edit renormalises
        x[i] = scale
        x[len(alphas):] -= scale * coef
    return apply_edits(w0, alphas, boundaries, keep=keep), x


def predictor_scorer(generator, full: bool = False) -> Scorer:  # noqa: ANN001 - Generator
    """Render codes (N,23,512) on the 256² preview route, or with the full 1024² network
    area-reduced to 256² (``full``), and score them with ``predict_all``; NaN where no face."""
    from latentstudio.edit.predictors import predict_all

    def score(codes: np.ndarray) -> dict[str, np.ndarray]:
        images = generator.predictor_images(codes, full)
        s = predict_all(images)
        valid = np.asarray(s["valid"], bool)
        return {k: np.where(valid, np.asarray(v, np.float64), np.nan) for k, v in s.items()
                if k not in ("valid", "landmarks")}

    return score
