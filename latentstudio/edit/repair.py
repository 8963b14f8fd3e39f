"""Artifact repair (InterFaceGAN's quality correction): move a code off the "broken" side,
and nothing else.

**What counts as broken** (``QualityModel``): four image signals (dlib's detector score near the
face position, the length of dlib's identity embedding, the embedding's change under a mirror,
and how much dlib's 68-landmark fit disagrees with its fit of the mirror image), each measured
*relative to the pose*: a least-squares fit of the signal on |yaw|, yaw², |pitch|, pitch², |roll|
and the eyeglasses score (and its square) over 20 000 ψ = 1 samples is subtracted, and the residual is a robust
z-score (+ = cleaner). The score is their mean. A profile face or a face with glasses is therefore
judged against faces like it, so "cleaner" never means "more frontal" or "without glasses", and
nothing in it rewards an average face (the distance to w_avg is not used).

**The direction** (per face): on W+ slots 4–22 only (texture and detail, where ψ = 1 artifacts
live; slots 0–3 hold the pose, the face outline, the hair's shape and hats, and stay), each slot's
unit way towards w_avg, made orthogonal to the pose (yaw, pitch, roll), eyeglasses and the
identity-bearing attributes (gender, age, hair colour, beard). The InterFaceGAN boundary of the
score (the shipped ``quality`` normal, fitted on the 5 % ends of the same samples; the
"Quality" slider) was measured as part of the direction and repaired less (250 held-out faces:
10.4 % left broken against 8.4 %), so the direction does not use it. The previous repair moved
every slot the same way towards w_avg, which turned faces to the camera and took hats off.

**The walk** (``repair``): in steps of ``step`` up to ``max_strength`` (the strength control),
each step scored on the 256² preview render (the score's own domain: the model was fitted on
such renders); it stops as soon as the face scores as clean as 99 % of ψ = 0.7 faces; a step
whose head is turned by more than ``POSE_GUARD`` degrees from the original's, or whose
eyeglasses score moved by more than ``GLASSES_GUARD`` of its spread, is not kept. The guards are
read on the full 1024² render, the face the user exports: read on the preview, as before, they
let a repaired face's pitch move 6.4° and its glasses score by 99 % of the spread on the full
render (bench/RESULTS.md). They are measured, not assumed from the direction's orthogonality, and the walk
goes on: dlib's fit of a damaged face is noisy, its readings jump by degrees between neighbouring
codes, and a later step is often within the guards again (ending the walk at the first jump left
8.4 % of 250 held-out faces broken, going on 7.2 %; bench/RESULTS.md). The result is the
best-scoring step within the guards; a face that is already clean is returned unchanged.

**Shown inside the face only** (``scene``): the app, the CLI and video show a repaired code in
the unrepaired code's surroundings (``identity.surroundings``: the repaired code inside the face,
the unrepaired one's hair, headwear, clothes and background around it), and the walk scores and
guards what is shown. Headwear and hair cannot change, whatever the direction does to the slots
that draw them (bench/RESULTS.md, "Artifact repair").

Trained by ``python bench/repair.py --train`` (``train_quality_boundary``), shipped as ``quality``
in ``boundaries/`` with the model in its details (``details.quality_model``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentstudio.edit.boundaries import Boundary, BoundaryError
from latentstudio.edit.conditional import condition
from latentstudio.latent import NUM_SLOTS, W_DIM, as_code
from latentstudio.progress import CancelFn, Progress, ProgressFn, check, report

QUALITY = "quality"
#: the repair direction is made orthogonal to these boundaries (those present)
KEEP = ("yaw", "pitch", "roll", "eyeglasses", "gender", "age", "hair_color", "beard")
#: signal → sign (+1: higher = cleaner)
SIGNALS = {"detector": 1.0, "identity_norm": 1.0, "identity_mirror": -1.0, "landmark_mirror": -1.0}
INVALID_SCORE = -5.0  # the score of a render in which no face is found
REPAIR_SLOTS = (4, 22)  # the slots the repair moves; 0–3 (pose, face outline, hair shape, hats) stay
DEFAULT_MAX = 3.0
STEP = 0.25
POSE_GUARD = 1.5  # degrees of yaw or pitch a repair step may turn the head …
GLASSES_GUARD = 0.1  # … and the share of the eyeglasses score's spread it may change it by
CLEAN_PERCENTILE = 1  # clean = at least the score of this percentile of ψ = 0.7 faces
#: how a candidate code is shown: the code itself or a ``render.Scene`` (the repaired face in the
#: unrepaired code's surroundings)
SceneFn = Callable[[np.ndarray], object]


def pose_design(m: Mapping[str, np.ndarray]) -> np.ndarray:
    """What the signals are normalised against → (N, 8): 1, |yaw|, yaw², |pitch|, pitch², |roll|,
    eyeglasses, eyeglasses² (degrees scaled by 30 / 20 / 10, the eyeglasses score by 10; NaN read
    as 0). The square lets dark glasses, which the detector dislikes most, weigh more."""
    y, p, r = (np.nan_to_num(np.asarray(m[k], np.float64)) / s for k, s in (("yaw", 30), ("pitch", 20), ("roll", 10)))
    glasses = np.nan_to_num(np.asarray(m["eyeglasses"], np.float64)) / 10
    return np.stack([np.ones_like(y), np.abs(y), y * y, np.abs(p), p * p, np.abs(r), glasses, glasses * glasses], 1)


def _signal(m: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    v = np.asarray(m[name], np.float64)
    return np.log(v + 0.005) if name == "landmark_mirror" else v  # a long tail: compare its log


@dataclass(frozen=True)
class QualityModel:
    """Pose-relative quality score (module docstring): per signal the pose fit's coefficients (8,)
    and the residual's robust scale; ``threshold``: the clean score."""

    coef: dict[str, list[float]]
    scale: dict[str, float]
    threshold: float
    glasses_std: float = 1.0  # the eyeglasses score's spread over the samples (the walk's guard)

    def signals(self, m: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each signal's pose-relative z-score (N,), + = cleaner."""
        x = pose_design(m)
        return {k: sign * (_signal(m, k) - x @ np.asarray(self.coef[k])) / self.scale[k] for k, sign in SIGNALS.items()}

    def score(self, m: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N,) mean of the signals' z-scores; ``INVALID_SCORE`` where no face was found."""
        s = np.mean(list(self.signals(m).values()), axis=0)
        return np.where(np.asarray(m["valid"]) > 0.5, s, INVALID_SCORE)

    @classmethod
    def fit(cls, samples: Mapping[str, np.ndarray], clean: Mapping[str, np.ndarray]) -> QualityModel:
        """Fit on ψ = 1 ``samples`` (``measure_samples`` fields); the threshold from ``clean``
        (ψ = 0.7) samples. Each pose fit is refitted once without its 3-σ outliers."""
        ok = np.asarray(samples["valid"]) > 0.5
        x = pose_design(samples)[ok]
        coef, scale = {}, {}
        for k in SIGNALS:
            y = _signal(samples, k)[ok]
            keep = np.ones(len(y), bool)
            for _ in range(2):
                beta = np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]
                r = y - x @ beta
                sigma = 1.4826 * np.median(np.abs(r[keep] - np.median(r[keep])))
                keep = np.abs(r) < 3 * sigma
            coef[k], scale[k] = [float(v) for v in beta], float(sigma)
        model = cls(coef, scale, 0.0)
        threshold = float(np.percentile(model.score(clean)[np.asarray(clean["valid"]) > 0.5], CLEAN_PERCENTILE))
        return cls(coef, scale, threshold, float(np.std(np.asarray(samples["eyeglasses"])[ok])))

    def as_details(self) -> dict[str, object]:
        return {"coef": self.coef, "scale": self.scale, "threshold": self.threshold, "glasses_std": self.glasses_std}

    @classmethod
    def from_details(cls, d: Mapping[str, object]) -> QualityModel:
        try:
            coef = {k: [float(v) for v in d["coef"][k]] for k in SIGNALS}  # type: ignore[index]
            scale = {k: float(d["scale"][k]) for k in SIGNALS}  # type: ignore[index]
            return cls(coef, scale, float(d["threshold"]), float(d["glasses_std"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise BoundaryError(f"the quality boundary's model is damaged ({exc})") from exc


@dataclass(frozen=True)
class RepairResult:
    w_plus: np.ndarray  # (23,512) float32
    alpha: float  # how far the code moved along the (conditioned) quality direction
    score_before: float
    score_after: float
    threshold: float
    direction: np.ndarray | None = None  # (23, 512) the direction walked (unit length per moved slot)

    @property
    def satisfied(self) -> bool:
        return self.score_after >= self.threshold


def quality_boundary(boundaries: Mapping[str, Boundary]) -> Boundary:
    b = boundaries.get(QUALITY)
    if b is None or not b.details.get("quality") or "quality_model" not in b.details:
        raise BoundaryError("no quality boundary of this version installed; train one with "
                            "`python bench/repair.py --train`")
    return b


def quality_model(boundaries: Mapping[str, Boundary]) -> QualityModel:
    return QualityModel.from_details(quality_boundary(boundaries).details["quality_model"])


def repair_direction(boundaries: Mapping[str, Boundary], code: np.ndarray, w_avg: np.ndarray,
                     keep: tuple[str, ...] = KEEP) -> np.ndarray:
    """The W+ repair direction (23, 512) for ``code``: on the slots ``REPAIR_SLOTS``, each slot's
    way towards ``w_avg`` made orthogonal to the ``keep`` boundaries (those present) and scaled to
    unit length; zero on the other slots (and on a slot already at ``w_avg``)."""
    kept = [boundaries[k].normal for k in keep if k in boundaries]
    out = np.zeros((NUM_SLOTS, W_DIM), np.float32)
    lo, hi = REPAIR_SLOTS
    for s in range(lo, hi + 1):
        towards = np.asarray(w_avg, np.float64).reshape(W_DIM) - np.asarray(code[s], np.float64)
        if np.linalg.norm(towards) > 1e-6:
            out[s] = condition(towards, np.stack(kept)) if kept else towards / np.linalg.norm(towards)
    return out


def measure_codes(generator, codes: np.ndarray, full: bool = False,  # noqa: ANN001 - Generator
                  scene: SceneFn | None = None) -> dict[str, np.ndarray]:
    """``measure_samples`` of W+ codes (N, 23, 512) on their ``shown_images``."""
    return measure_samples(shown_images(generator, codes, full, scene))


def shown_images(generator, codes: np.ndarray, full: bool = False,  # noqa: ANN001 - Generator
                 scene: SceneFn | None = None) -> np.ndarray:
    """(N, 256, 256, 3) uint8 images of W+ codes (N, 23, 512): their 256² preview-route renders
    (what the quality model was fitted on), or the full 1024² network's renders area-reduced to
    256² (``full``: what the user gets, where the walk's guards are read). ``scene``: each code
    is rendered as ``scene(code)`` shows it (``render.render_scene``), the same two ways."""
    codes = np.array(codes, np.float32)
    if scene is None:
        with torch.no_grad():
            return generator.predictor_images(codes, full)
    import cv2

    from latentstudio.render import render_scene

    def image(code: np.ndarray) -> np.ndarray:
        if not full:
            return render_scene(generator, scene(code), 256)
        return cv2.resize(render_scene(generator, scene(code), 1024), (256, 256), interpolation=cv2.INTER_AREA)

    return np.stack([image(c) for c in codes])


def repair(w_plus: np.ndarray, boundaries: Mapping[str, Boundary], *, generator,  # noqa: ANN001
           max_strength: float = DEFAULT_MAX, step: float = STEP, threshold: float | None = None,
           scene: SceneFn | None = None, cancelled: CancelFn | None = None,
           progress: ProgressFn | None = None) -> RepairResult:
    """Move ``w_plus`` (23,512) along the repair direction until it looks clean (module docstring).

    ``max_strength`` caps α (the CLI's ``--repair STRENGTH``, the app's strength control);
    ``threshold`` defaults to the model's. ``scene(code)``: how a candidate is shown (a
    ``render.Scene``, e.g. in the unrepaired code's surroundings), which every step's score and
    guards are read on; default the code's own render. ``progress`` gets ``Progress("repair", …)``
    after every scored step; ``cancelled()`` stops the walk with ``Cancelled``.
    """
    code = as_code(w_plus, "repair's code", BoundaryError, w_ok=False)
    if not (np.isfinite(max_strength) and max_strength >= 0 and step > 0):
        raise BoundaryError(f"repair strength must be ≥ 0 and step > 0, got {max_strength}, {step}")
    model = quality_model(boundaries)
    limit = model.threshold if threshold is None else float(threshold)
    g = generator
    direction = repair_direction(boundaries, code, g.w_avg.cpu().numpy())
    total = int(max_strength / step + 1e-9) + 1
    before = float(model.score(measure_codes(g, code[None], scene=scene))[0])
    report(progress, Progress("repair", 1, total))
    best = (before, 0.0, code)
    if before >= limit:
        return RepairResult(code, 0.0, before, before, limit, direction)
    g0 = measure_codes(g, code[None], full=True, scene=scene)  # the guards' reference: the render the user gets
    alpha = 0.0
    while best[0] < limit and alpha + step <= max_strength + 1e-9:
        check(cancelled, f"repair cancelled at strength {alpha:.2f}")
        alpha += step
        candidate = code + alpha * direction
        score = float(model.score(measure_codes(g, candidate[None], scene=scene))[0])
        report(progress, Progress("repair", round(alpha / step) + 1, total))
        if score <= best[0]:
            continue
        m = measure_codes(g, candidate[None], full=True, scene=scene)
        turned = max(abs(float(m[k][0] - g0[k][0])) for k in ("yaw", "pitch"))
        glasses = abs(float(m["eyeglasses"][0] - g0["eyeglasses"][0])) / model.glasses_std
        if turned <= POSE_GUARD and glasses <= GLASSES_GUARD:  # NaN (no face) counts as moved
            best = (score, alpha, candidate)
        # else not kept; a later step may be within the guards again
    after, used, out = best
    return RepairResult(out.astype(np.float32), used, before, after, limit, direction)


# ------------------------------------------------------------------------------ training
def train_quality_boundary(samples: Mapping[str, np.ndarray], clean: Mapping[str, np.ndarray],
                           boundaries: Mapping[str, Boundary], *, ratio: float = 0.05,
                           command: str = "") -> Boundary:
    """The ``quality`` boundary from ψ = 1 ``samples`` and ψ = 0.7 ``clean`` ones (each
    ``measure_samples`` fields plus ``w``): the pose-relative model, then the InterFaceGAN fit of
    its score (the ``ratio`` ends), conditioned on the ``KEEP`` boundaries of ``boundaries``."""
    from latentstudio.edit.train import fit_boundary

    model = QualityModel.fit(samples, clean)
    score = model.score(samples)
    valid = np.asarray(samples["valid"]) > 0.5
    fit = fit_boundary(np.asarray(samples["w"], np.float64), score, valid, ratio=ratio)
    kept = [boundaries[k].normal for k in KEEP if k in boundaries]
    normal = condition(fit.normal, np.stack(kept)) if kept else fit.normal
    n = len(score)
    return Boundary(
        name=QUALITY, normal=np.asarray(normal, np.float32), label="Quality (raw direction)",
        sign="+ = cleaner, fewer artifacts (the Repair button walks it automatically)",
        range=(0.0, 3.0), val_accuracy=fit.val_accuracy, n=n, predictor="quality (pose-relative, image-only)",
        command=command or f"python bench/repair.py --train --n {n} --ratio {ratio}",
        details={"quality": True, "threshold": round(model.threshold, 4), "quality_model": model.as_details(),
                 "psi": 1.0, "ratio": ratio, "kept": [k for k in KEEP if k in boundaries],
                 "train_accuracy": round(fit.train_accuracy, 4),
                 "broken_share_psi1": round(float((score < model.threshold).mean()), 4)})


# ------------------------------------------------------------------------------ samples
def measure_samples(images: np.ndarray) -> dict[str, np.ndarray]:
    """FFHQ-aligned faces (N, 256, 256, 3) uint8 → every quality signal, the pose and the
    attributes the repair must keep, each (N,) float64 (``valid``: a face was found, as 0/1)."""
    from latentstudio.edit.predictors import predict_all
    from latentstudio.edit.quality import landmark_mirror, quality_signals

    a = predict_all(images)
    b = predict_all(np.ascontiguousarray(images[:, :, ::-1]))
    out = {k: np.asarray(v, np.float64) for k, v in quality_signals(images).items()}
    out["landmark_mirror"] = landmark_mirror(a["landmarks"], b["landmarks"], images.shape[2])
    for k in ("yaw", "pitch", "roll", "eyeglasses", "hair_color", "beard", "gender", "age"):
        out[k] = np.asarray(a[k], np.float64)
    both = a["valid"] & b["valid"]
    # the pose as the mean of the face's and its mirror image's (mirrored back): dlib's fit of a
    # damaged face is noisy, and the two fits' errors are partly independent
    for k, sign in (("yaw", -1.0), ("pitch", 1.0), ("roll", -1.0)):
        out[k] = np.where(both, 0.5 * (out[k] + sign * np.asarray(b[k], np.float64)), out[k])
    out["valid"] = both.astype(np.float64)
    return out


def sample_chunk(first: int, count: int, *, psi: float, generator, batch: int = 32,  # noqa: ANN001
                 cancelled: CancelFn | None = None) -> dict[str, np.ndarray]:
    """Seeded samples ``first`` … ``first + count − 1`` at ``psi``: their w (N, 512) float32 and
    ``measure_samples`` of their 256² renders."""
    from latentstudio.models.generator import to_uint8

    g = generator
    parts: list[dict[str, np.ndarray]] = []
    for start in range(first, first + count, batch):
        check(cancelled, "quality sampling cancelled")
        with torch.no_grad():
            w = g.map(g.sample_z(start, min(batch, first + count - start)), psi)
            part = measure_samples(to_uint8(g.synthesize(w, size=256)))
        part["w"] = w.cpu().numpy().astype(np.float32)
        parts.append(part)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def cached_samples(folder: Path, first: int, n: int, *, psi: float, generator, chunk: int = 1000,  # noqa: ANN001
                   progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> dict[str, np.ndarray]:
    """``sample_chunk`` over ``n`` seeds from ``first``, in chunks cached as
    ``folder/psi{psi}_{first}.npz`` (an interrupted run resumes from the chunks it finished)."""
    from latentstudio.atomic import save_npz

    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(first, first + n, chunk):
        f = folder / f"psi{psi:g}_{start}_{min(chunk, first + n - start)}.npz"
        if f.is_file():
            with np.load(f) as z:
                part = {k: z[k] for k in z.files}
        else:
            part = sample_chunk(start, min(chunk, first + n - start), psi=psi, generator=generator, cancelled=cancelled)
            save_npz(f, **part)
        parts.append(part)
        report(progress, Progress("sample", start + len(part["w"]) - first, n, f"ψ {psi:g}"))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
