"""InterFaceGAN boundary training: sample, render, score, keep the extremes, fit a linear SVM.

Pipeline (Shen et al., InterFaceGAN):

1. :func:`score_samples` — seeds ``seed … seed+n-1`` → z (N,512) → w = map(z, ψ) (N,512) →
   render at ``size``² → :func:`latentstudio.edit.predictors.predict_all` → scores (N,) per
   attribute. Scores are cached per chunk of ``CHUNK`` seeds in ``cache_dir`` (atomic ``.npz``
   files), so an interrupted run resumes where it stopped and later runs reuse the scores.
   On a GPU the renders are batched and the (CPU-bound, dlib) predictors run in a pool of
   ``workers`` processes.
2. :func:`fit_boundary` — keep the top and bottom ``ratio`` of the valid samples by score as
   positives / negatives, split them ``1 - val_fraction`` / ``val_fraction`` (stratified,
   seeded), fit a linear SVM (``sklearn.svm.LinearSVC``, hinge loss) on the training part, and
   return the unit normal (the boundary, pointing towards higher scores) and the validation
   accuracy. For some attributes (``AttributeInfo.whiten``) the SVM works on *whitened* codes
   (:func:`whitening`): W's covariance spans three orders of magnitude, and in raw W a
   regularised SVM returns roughly the difference of the class means, which carries every
   attribute that is correlated with the labelled one in the population (glasses and age with a
   smile, hair and age with gender). In whitened coordinates it finds the discriminant direction
   instead (Σ⁻¹-weighted, as in LDA), which moves gender, age and smile with less of the rest and
   monotonically on more faces (bench/RESULTS.md, "Whitened boundaries"). It does not help
   everywhere: the whitened yaw normal turns the head half as far per unit step.
3. :func:`fit_labelled` — the same SVM on codes the user labelled (two folders).

Both steps take ``progress(Progress)`` and ``cancelled() -> bool`` callbacks (polled per
batch); a cancelled run raises :class:`Cancelled` and keeps the finished chunks.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentstudio.atomic import save_npy, save_npz
from latentstudio.codes import CODE_SUFFIXES
from latentstudio.edit.boundaries import Boundary, BoundaryError, check_name, read_vector, unit_vector

from latentstudio.latent import W_DIM
from latentstudio.progress import CancelFn, Cancelled, Progress, ProgressFn

CHUNK = 100  # seeds per cache file
PIECE = 16  # images per predictor task when scoring in worker processes


@dataclass(frozen=True)
class AttributeInfo:
    """UI metadata of a predictor-trained boundary: label, what + means, default slot range."""

    label: str
    sign: str
    layers: tuple[int, int] = (0, 22)
    range: tuple[float, float] = (-3.0, 3.0)
    whiten: bool = False  # fit on whitened codes (module doc) under ``--whiten auto``


#: W+ slots: 0 = 4², 1-3 = 8², 4-6 = 16², 7-9 = 32², 10-12 = 64², 13-15 = 128², 16-18 = 256²,
#: 19-21 = 512², 22 = to-image. Default slot ranges were measured (``bench/edit.py --layer-scan``:
#: 8 generated faces, α = ±3, ranges 0-22, 0-6, 0-12, 4-12, 7-22): the range with the best ratio
#: of own effect to summed off-target effect among those keeping ≥ 75 % of the full-range effect.
#: Gender then moved from 0-6 to 0-12 (30 held-out faces, N = 200 000 set): per-face Spearman
#: 0.90 → 0.96 at the same off-target share of its effect, and facial hair follows the edit.
#: ``whiten`` (per attribute, measured on 100 held-out faces, N = 200 000): on where it raised the
#: per-face Spearman and kept ≥ 85 % of the raw fit's effect (gender 0.958 → 0.981, age 0.985 →
#: 0.997, smile 0.951 → 0.955, eyes open 0.986 → 0.993); off where it lost effect or
#: monotonicity (yaw and pitch move half / four fifths as far per unit, eyeglasses 0.97 → 0.91,
#: beard, hair colour, surprise and mouth open a little lower) and for roll, whose gain there
#: (0.934 → 0.943) was within the noise and turned into a loss on the 50 bench faces (0.946 → 0.918).
ATTRIBUTES: dict[str, AttributeInfo] = {
    "yaw": AttributeInfo("Head turn (yaw)", "+ = nose turns towards the image's right", (0, 6)),
    "pitch": AttributeInfo("Head tilt (pitch)", "+ = face looks up", (0, 12)),
    "roll": AttributeInfo("Head roll", "+ = top of the head leans towards the image's right"),
    "smile": AttributeInfo("Smile", "+ = more smiling", (0, 6), whiten=True),
    "surprise": AttributeInfo("Surprise", "+ = more surprised", (4, 12)),
    "age": AttributeInfo("Age", "+ = older", (0, 12), whiten=True),
    "gender": AttributeInfo("Gender", "+ = more masculine", (0, 12), whiten=True),
    "mouth_open": AttributeInfo("Mouth open", "+ = mouth more open", (4, 12)),
    "eyes_open": AttributeInfo("Eyes open", "+ = eyes more open", (7, 22), whiten=True),
    "eyeglasses": AttributeInfo("Eyeglasses", "+ = glasses"),
    "hair_color": AttributeInfo("Hair colour", "+ = lighter / blonder hair", (7, 22)),
    "beard": AttributeInfo("Beard", "+ = more beard"),
    "lighting": AttributeInfo("Lighting", "+ = light from the image's right"),
}


@dataclass(frozen=True)
class SampleSpec:
    """Which samples to score: seeds ``seed … seed+n-1``, truncation ψ, render size."""

    n: int
    seed: int = 0
    psi: float = 0.7
    size: int = 256

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.size not in (256, 512, 1024):
            raise ValueError(f"render size must be 256, 512 or 1024, got {self.size}")
        if not 0.0 < self.psi <= 1.0:
            raise ValueError(f"psi must be in (0, 1], got {self.psi}")


@dataclass
class Scores:
    """Predictor scores of seeded samples: seeds (N,) int64, scores name → (N,) float64, valid (N,)."""

    seeds: np.ndarray
    scores: dict[str, np.ndarray]
    valid: np.ndarray


@dataclass(frozen=True)
class FitResult:
    """A fitted boundary: unit normal (512,) float32 and how well it separates held-out samples."""

    normal: np.ndarray
    val_accuracy: float
    train_accuracy: float
    n_pos: int
    n_neg: int
    n_val: int
    c: float = 1.0  # SVM regularisation used


# ------------------------------------------------------------------------------------ scoring
def predictor_version() -> str:
    """Short hash of the predictor code: cached scores are only reused for the same predictors."""
    from latentstudio.edit import nets, predictors

    h = hashlib.sha256()
    for mod in (predictors, nets):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:10]


def default_cache_dir() -> Path:
    from latentstudio import paths

    return paths.home() / "cache" / "boundary_scores"


def _chunk_dir(cache_dir: Path, spec: SampleSpec) -> Path:
    return cache_dir / f"psi{spec.psi:g}_size{spec.size}_pred{predictor_version()}"


def _chunk_path(folder: Path, start: int) -> Path:
    return folder / f"seeds_{start:09d}.npz"


def _read_chunk(path: Path, seeds: np.ndarray) -> Scores | None:
    """A cached chunk if it exists, is readable and holds exactly ``seeds``; else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if not np.array_equal(data["seeds"], seeds):
                return None
            names = [k for k in data.files if k not in ("seeds", "valid")]
            return Scores(data["seeds"], {k: data[k] for k in names}, data["valid"])
    except (OSError, ValueError, KeyError, EOFError):
        return None  # a broken cache file is recomputed


def _write_chunk(path: Path, s: Scores) -> None:
    save_npz(path, seeds=s.seeds, valid=s.valid, **s.scores)


def _read_images(folder: Path, seeds: np.ndarray, size: int) -> np.ndarray | None:
    """Cached renders (len(seeds), size, size, 3) uint8 of a chunk, or None."""
    path = _chunk_path(folder, int(seeds[0])).with_suffix(".npy")
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None
    if arr.shape != (len(seeds), size, size, 3) or arr.dtype != np.uint8:
        return None
    return np.asarray(arr)


def _write_images(folder: Path, seeds: np.ndarray, images: np.ndarray) -> None:
    save_npy(_chunk_path(folder, int(seeds[0])).with_suffix(".npy"), images)


def _init_worker() -> None:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _score_images(images: np.ndarray) -> dict[str, np.ndarray]:
    """(B,S,S,3) uint8 → predictor scores (B,) per name plus ``valid``; landmarks dropped."""
    from latentstudio.edit.predictors import predict_all

    out = predict_all(images)
    out.pop("landmarks", None)
    return out


def _merge(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def sample_w(generator, seeds: np.ndarray, psi: float) -> np.ndarray:  # noqa: ANN001 - Generator
    """w (N,512) float32 of the given seeds (mapping network, truncation ψ)."""
    out = []
    for start in range(0, len(seeds), 4096):
        block = seeds[start:start + 4096]
        z = _z_of_seeds(generator, block)
        out.append(generator.map(z, psi).cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, W_DIM), np.float32)


def _z_of_seeds(generator, seeds: np.ndarray):  # noqa: ANN001, ANN202 - Generator → Tensor
    import torch

    if len(seeds) and np.all(np.diff(seeds) == 1):
        return generator.sample_z(int(seeds[0]), len(seeds))
    return torch.cat([generator.sample_z(int(s), 1) for s in seeds])


class _RayScorer:
    """A Ray actor for ``score_samples(ray=…)``: its own generator and predictors, one chunk of
    seeds rendered and scored at a time."""

    def __init__(self, device: str, psi: float, size: int, batch: int) -> None:
        from latentstudio.models.generator import Generator

        _init_worker()
        self.g = Generator.load(device)  # this actor's own, loaded once
        self.psi, self.size, self.batch = psi, size, batch

    def score(self, seeds: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from latentstudio.models.generator import to_uint8

        parts = []
        for sub in _batches(seeds, self.batch):
            w = self.g.map(_z_of_seeds(self.g, sub), self.psi)
            parts.append(_score_images(to_uint8(self.g.synthesize(w, size=self.size))))
        return seeds, _merge(parts)


def score_samples(spec: SampleSpec, *, generator,  # noqa: ANN001 - Generator
                  batch: int | None = None, workers: int = 0, cache_dir: Path | None = None,
                  keep_images: bool = False, progress: ProgressFn | None = None,
                  cancelled: CancelFn | None = None, ray: str | bool = False) -> Scores:
    """Render and score seeds ``spec.seed … spec.seed+spec.n-1`` (see module doc), resumably.

    ``batch``: renders per synthesis call (default 4 on CPU, 128 on CUDA). ``workers`` > 0 scores
    in that many processes (the predictors are CPU-bound; use it on a many-core GPU machine):
    rendered images go to the pool in pieces of ``PIECE`` while the GPU renders the next chunks.
    ``keep_images`` also caches the renders (uint8, ``size``² × 3 bytes each) next to the scores,
    so that scoring again with changed predictors skips the expensive rendering; cached renders
    are reused whenever present. ``ray`` (an address, or True for a local cluster): the chunks
    still to do are rendered and scored by Ray actors (``latentstudio.cluster``; GPUs where the
    cluster has them), each chunk cached as it arrives.
    """
    from latentstudio.models.generator import to_uint8

    g = generator
    batch = batch or (128 if g.device.type == "cuda" else 4)
    folder = _chunk_dir(cache_dir or default_cache_dir(), spec)
    image_dir = (cache_dir or default_cache_dir()) / "images" / f"psi{spec.psi:g}_size{spec.size}"
    starts = list(range(spec.seed, spec.seed + spec.n, CHUNK))
    results: dict[int, Scores] = {}
    todo = []
    for start in starts:
        seeds = np.arange(start, min(start + CHUNK, spec.seed + spec.n), dtype=np.int64)
        cached = _read_chunk(_chunk_path(folder, start), seeds)
        if cached is None:
            todo.append(seeds)
        else:
            results[start] = cached
    done = sum(len(r.seeds) for r in results.values())
    if progress:
        progress(Progress("score", done, spec.n, f"{done} cached, {spec.n - done} to render"))

    def finish(seeds: np.ndarray, parts: list) -> None:  # noqa: ANN001 - list of dicts / Futures
        nonlocal done
        merged = _merge([p.result() if isinstance(p, Future) else p for p in parts])
        valid = merged.pop("valid").astype(bool)
        chunk = Scores(seeds, merged, valid)
        _write_chunk(_chunk_path(folder, int(seeds[0])), chunk)
        results[int(seeds[0])] = chunk
        done += len(seeds)
        if progress:
            progress(Progress("score", done, spec.n, f"{done}/{spec.n} samples scored"))

    if ray is not False and todo:
        from latentstudio import cluster

        device = "cuda" if g.device.type == "cuda" else "cpu"
        with cluster.session(ray if isinstance(ray, str) else None) as r:
            for seeds, merged in cluster.map_unordered(r, _RayScorer, (device, spec.psi, spec.size, batch), "score",
                                                       todo, actors=workers, num_gpus=1 if device == "cuda" else 0):
                finish(seeds, [merged])
                if cancelled and cancelled():
                    raise Cancelled(f"scoring cancelled after {done}/{spec.n} samples")
        todo = []
    # a CUDA parent must not fork (its driver state and threads do not survive it): spawn there
    context = multiprocessing.get_context("spawn" if g.device.type == "cuda" else None)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) if workers > 0 else None
    pending: list[tuple[np.ndarray, list]] = []  # chunks whose scores are still being computed
    try:
        for seeds in todo:
            parts: list = []
            stored = _read_images(image_dir, seeds, spec.size)
            rendered = []
            for sub in _batches(seeds, batch):
                if cancelled and cancelled():
                    raise Cancelled(f"scoring cancelled after {done}/{spec.n} samples")
                if stored is not None:
                    images = stored[sub - seeds[0]]
                else:
                    w = g.map(_z_of_seeds(g, sub), spec.psi)
                    images = to_uint8(g.synthesize(w, size=spec.size))
                    rendered.append(images)
                if pool is None:
                    parts.append(_score_images(images))
                else:
                    parts.extend(pool.submit(_score_images, images[i:i + PIECE])
                                 for i in range(0, len(images), PIECE))
            if keep_images and stored is None:
                _write_images(image_dir, seeds, np.concatenate(rendered))
            pending.append((seeds, parts))
            while pending and (pool is None or len(pending) > 2 * workers):
                finish(*pending.pop(0))
        while pending:
            finish(*pending.pop(0))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    ordered = [results[s] for s in starts]
    return Scores(np.concatenate([r.seeds for r in ordered]),
                  _merge([r.scores for r in ordered]),
                  np.concatenate([r.valid for r in ordered]))


def _batches(seeds: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(seeds), size):
        yield seeds[i:i + size]


# ------------------------------------------------------------------------------------ fitting
def select_extremes(scores: np.ndarray, valid: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the top and bottom ``ratio`` of the valid, finite samples: (pos, neg)."""
    if not 0.0 < ratio <= 0.5:
        raise ValueError(f"ratio must be in (0, 0.5], got {ratio}")
    ok = np.flatnonzero(valid & np.isfinite(scores))
    k = int(len(ok) * ratio)
    if k < 2:
        raise BoundaryError(f"too few samples: {len(ok)} valid × ratio {ratio} gives {k} per side "
                            "(need at least 2); sample more or raise the ratio")
    order = ok[np.argsort(scores[ok], kind="stable")]
    return order[-k:], order[:k]


#: candidate SVM regularisation strengths; "auto" picks one by cross-validation on the training part
C_GRID = (0.1, 0.01, 0.001)


def _svm(c: float):  # noqa: ANN202 - sklearn estimator
    from sklearn.svm import LinearSVC

    return LinearSVC(C=c, loss="hinge", dual=True, max_iter=50_000, tol=1e-5, random_state=0)


def choose_c(x: np.ndarray, y: np.ndarray, grid: Sequence[float] = C_GRID, folds: int = 3,
             seed: int = 0) -> float:
    """The C of ``grid`` with the best ``folds``-fold accuracy; near-ties (within 0.5 %) go to the
    smaller C, whose normal is more stable (small samples in 512-d are separable at any C, and a
    hard margin then chases noise along low-variance directions of W)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    if min(int((y == 0).sum()), int((y == 1).sum())) < folds:
        return min(grid)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    acc = {c: float(cross_val_score(_svm(c), x, y, cv=cv).mean()) for c in grid}
    best = max(acc.values())
    return min(c for c in grid if acc[c] >= best - 0.005)


def whitening(w: np.ndarray) -> np.ndarray:
    """Σ^(-1/2) (512,512) of codes w (N,512): the symmetric inverse square root of their covariance.

    The covariance is the Ledoit–Wolf estimate, which shrinks towards a multiple of the identity
    as far as N is too small to pin it down (N = 200 000: no shrinkage to speak of; N ≪ 512: close
    to no whitening at all), so the result is well-conditioned for any N ≥ 2.
    """
    from sklearn.covariance import ledoit_wolf

    w = np.asarray(w, np.float64)
    if w.ndim != 2 or w.shape[1] != W_DIM or len(w) < 2:
        raise BoundaryError(f"whitening needs codes (N≥2,512), got {w.shape}")
    cov, _ = ledoit_wolf(w)
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, vals.max() * 1e-9)
    return (vecs / np.sqrt(vals)) @ vecs.T


def fit_svm(x: np.ndarray, y: np.ndarray, *, val_fraction: float = 0.3, seed: int = 0,
            c: float | str = "auto", whiten: np.ndarray | None = None) -> FitResult:
    """Linear SVM on x (M,512), labels y (M,) in {0,1}; unit normal pointing towards class 1.

    A stratified ``val_fraction`` of the samples is held out for the validation accuracy
    (with fewer than 2 held-out samples per class the accuracy is NaN). ``c="auto"`` picks the
    regularisation by cross-validation on the training part (:func:`choose_c`). ``whiten``
    (512,512), symmetric (:func:`whitening`): the SVM separates ``x @ whiten`` and its normal
    ``v`` is mapped back to the code space as ``whiten @ v`` (the same decision function of x).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y).astype(int)
    if x.ndim != 2 or x.shape[1] != W_DIM or len(x) != len(y):
        raise BoundaryError(f"expected codes (M,512) and labels (M,), got {x.shape} and {y.shape}")
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos < 1 or n_neg < 1:
        raise BoundaryError(f"need both classes: {n_pos} positive, {n_neg} negative samples")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_val = int(round(len(idx) * val_fraction)) if len(idx) >= 4 else 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    tr, va = np.concatenate(train), np.concatenate(val)
    if whiten is not None:
        x = x @ whiten
    centre = x[tr].mean(0)  # centring only helps the solver; the normal is unchanged
    c_used = choose_c(x[tr] - centre, y[tr], seed=seed) if c == "auto" else float(c)
    svm = _svm(c_used).fit(x[tr] - centre, y[tr])
    normal = svm.coef_.reshape(-1)
    if whiten is not None:
        normal = whiten @ normal
    norm = float(np.linalg.norm(normal))
    if not np.isfinite(norm) or norm == 0:
        raise BoundaryError("the SVM found no separating direction (degenerate samples)")
    enough_val = all(len(v) >= 2 for v in val)
    val_acc = float(svm.score(x[va] - centre, y[va])) if enough_val else float("nan")
    return FitResult((normal / norm).astype(np.float32), val_acc,
                     float(svm.score(x[tr] - centre, y[tr])), n_pos, n_neg, len(va), c_used)


def fit_boundary(w: np.ndarray, scores: np.ndarray, valid: np.ndarray, *, ratio: float = 0.02,
                 val_fraction: float = 0.3, seed: int = 0, whiten: np.ndarray | None = None) -> FitResult:
    """InterFaceGAN fit: w (N,512), scores (N,), valid (N,) → boundary towards higher scores.
    ``whiten``: see :func:`fit_svm` (:func:`train_attributes` passes the whitening of all N codes)."""
    pos, neg = select_extremes(np.asarray(scores, np.float64), np.asarray(valid, bool), ratio)
    x = np.concatenate([w[pos], w[neg]])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    return fit_svm(x, y, val_fraction=val_fraction, seed=seed, whiten=whiten)


WHITEN_CHOICES = ("auto", "all", "none")


def whitened(name: str, whiten: str = "auto") -> bool:
    """Whether ``train_attributes(..., whiten=whiten)`` fits ``name`` on whitened codes."""
    if whiten == "auto":
        info = ATTRIBUTES.get(name)
        return bool(info and info.whiten)
    return whiten == "all"


def train_attributes(names: Sequence[str], spec: SampleSpec, *, ratio: float = 0.02,
                     val_fraction: float = 0.3, generator,  # noqa: ANN001 - Generator
                     batch: int | None = None, workers: int = 0, cache_dir: Path | None = None,
                     keep_images: bool = False, whiten: str = "auto", progress: ProgressFn | None = None,
                     cancelled: CancelFn | None = None, ray: str | bool = False) -> dict[str, FitResult]:
    """Score once, then fit one boundary per predictor name (see ``predictors.SCORE_NAMES``).
    ``whiten``: which fits work in the coordinates that whiten the N sampled codes (module doc):
    ``"auto"`` (each attribute's ``AttributeInfo.whiten``), ``"all"`` or ``"none"``."""
    from latentstudio.edit.predictors import SCORE_NAMES

    if whiten not in WHITEN_CHOICES:
        raise BoundaryError(f"whiten must be one of {', '.join(WHITEN_CHOICES)}, got {whiten!r}")
    unknown = [n for n in names if n not in SCORE_NAMES]
    if unknown:
        raise BoundaryError(f"unknown attribute(s) {', '.join(unknown)}; "
                            f"predictors: {', '.join(SCORE_NAMES)}")
    g = generator
    s = score_samples(spec, generator=g, batch=batch, workers=workers, cache_dir=cache_dir,
                      keep_images=keep_images, progress=progress, cancelled=cancelled, ray=ray)
    w = sample_w(g, s.seeds, spec.psi)
    ok = np.asarray(s.valid, bool)
    use = [n for n in names if whitened(n, whiten)]
    whitener = whitening(w[ok]) if use and ok.sum() >= 2 else None  # < 2: select_extremes says why
    out = {}
    for i, name in enumerate(names):
        if cancelled and cancelled():
            raise Cancelled("fitting cancelled")
        out[name] = fit_boundary(w, s.scores[name], s.valid, ratio=ratio,
                                 val_fraction=val_fraction, seed=spec.seed,
                                 whiten=whitener if name in use else None)
        if progress:
            progress(Progress("fit", i + 1, len(names),
                                   f"{name}: validation accuracy {out[name].val_accuracy:.3f}"))
    return out


# ------------------------------------------------------------------------------ user labels
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _folder_items(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise BoundaryError(f"{folder}: not a folder")
    items = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in CODE_SUFFIXES + IMAGE_SUFFIXES)
    if not items:
        raise BoundaryError(f"{folder}: no codes (.npy/.npz) or images found")
    return items


def code_to_w(w_plus: np.ndarray) -> np.ndarray:
    """W+ (23,512) → one w (512,): the mean over slots (boundaries live in W)."""
    return np.asarray(w_plus, np.float32).reshape(-1, W_DIM).mean(0)


def labelled_codes(folder: Path, *, generator: Callable[[], Any], invert_preset: str = "fast",
                   progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> np.ndarray:
    """Every code or photo in ``folder`` → w (M,512). Photos are inverted (``invert_photo``) with
    ``generator()`` (asked for only when there is a photo)."""
    from latentstudio.codes import LatentError, load_code

    items = _folder_items(Path(folder))
    out = []
    for i, p in enumerate(items):
        if cancelled and cancelled():
            raise Cancelled("cancelled while reading labelled samples")
        if p.suffix.lower() in CODE_SUFFIXES:
            try:
                out.append(code_to_w(load_code(p)))
            except LatentError as exc:
                raise BoundaryError(str(exc)) from exc
        else:
            from latentstudio.photo import invert_photo

            out.append(code_to_w(invert_photo(p, preset=invert_preset, generator=generator()).w_plus))
        if progress:
            progress(Progress("codes", i + 1, len(items), f"{folder}: {p.name}"))
    return np.stack(out)


def fit_labelled(positive: Path, negative: Path, *, generator: Callable[[], Any], val_fraction: float = 0.3,
                 seed: int = 0, progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> FitResult:
    """Boundary from two folders of codes or photos: positive (+ side) and negative examples
    (photos are inverted with ``generator()``)."""
    pos = labelled_codes(positive, generator=generator, progress=progress, cancelled=cancelled)
    neg = labelled_codes(negative, generator=generator, progress=progress, cancelled=cancelled)
    x = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    return fit_svm(x, y, val_fraction=val_fraction, seed=seed)


# ----------------------------------------------------------------------------------- import
def z_to_w(normal_z: np.ndarray, generator, *, samples: int = 20000, ratio: float = 0.1,  # noqa: ANN001
           seed: int = 0, val_fraction: float = 0.3) -> FitResult:
    """A Z boundary → W boundary: label sampled z by n_z·z, keep the top/bottom ``ratio``,
    fit the linear SVM on w = map(z) (ψ = 1). """
    import torch

    n = unit_vector(normal_z, "Z boundary")
    g = generator
    z = torch.randn(samples, W_DIM, generator=torch.Generator().manual_seed(seed))
    w = np.concatenate([g.map(z[i:i + 4096], 1.0).cpu().numpy() for i in range(0, samples, 4096)])
    score = z.numpy().astype(np.float64) @ n.astype(np.float64)
    return fit_boundary(w, score, np.ones(samples, bool), ratio=ratio, val_fraction=val_fraction, seed=seed)


def import_boundary(path: str | Path, name: str, space: str, *, label: str | None = None,
                    generator=None, samples: int = 20000, seed: int = 0,  # noqa: ANN001
                    command: str | None = None) -> Boundary:
    """Read a published boundary (.npy/.pt) in ``space`` "z" or "w" and return it as a W Boundary."""
    check_name(name)
    if space not in ("z", "w"):
        raise BoundaryError(f"space must be 'z' or 'w', got {space!r}")
    vec = read_vector(path)
    details: dict[str, Any] = {"imported_from": Path(path).name, "original_space": space}
    acc = None
    if space == "z":
        if generator is None:
            raise BoundaryError("importing a Z-space boundary needs the generator (its mapping network)")
        fit = z_to_w(vec, generator, samples=samples, seed=seed)
        details.update({"z_to_w_samples": samples, "z_to_w_ratio": 0.1,
                        "cosine_to_z_vector": round(float(np.dot(fit.normal, vec)), 4)})
        vec, acc = fit.normal, fit.val_accuracy
    return Boundary(name=name, normal=vec, label=label or name.replace("_", " ").capitalize(),
                    sign=f"+ = as the imported file's + direction ({Path(path).name})",
                    val_accuracy=acc, n=samples if space == "z" else None, predictor=None,
                    command=command, source="imported", details=details)
