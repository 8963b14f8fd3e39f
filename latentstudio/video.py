"""Edit a face through a video clip, one identity in every frame.

The clip is decoded three times, streamed (never the whole clip in memory): once to track the
face, once to invert every frame with it (codes cached), once to render and write.

1. **Track** (``track``): detect the face in every frame (the chosen one on the first frame
   where it is found, then the face nearest to it), keep its 68 landmarks, and smooth them over
   time (a Gaussian along each landmark's trajectory within each run of frames where the face
   was found) so the aligned crop does not jitter. Cached in ``<out>.frames/track.npz``.
2. **Edit** (``edit_clip``): for every frame, align with the smoothed landmarks; invert (the
   first frame with the preset, each next one warm-started from the code before it with a few
   steps on the 256² route, so the fine slots, which that route never moves, stay the first
   frame's: texture does not flicker; then the first ``SETTLE`` frames once more, backwards, each
   from the next one's code, since the forward chain needs a few frames to converge); put **one identity** into the code through the identity
   mapper (temporal identity coherency, after Nitzan et al. 2020: the clip's own identity, the
   mean of all its frames' codes, by default; another face's for a transfer; a seeded random one for
   de-identification); apply the slider edits; render 1024² and paste back with a colour match
   smoothed over time. Frames without the face pass through unchanged and are reported. Per-frame
   codes are cached in ``<out>.frames/`` so an interrupted export resumes where it stopped.

Decoding and encoding use PyAV (FFmpeg): mp4 / mov / webm / avi / mkv in, H.264 mp4 out at the
clip's own size and timestamps (variable frame rates stay variable), the audio stream copied
as it is; a folder of frames (PNG / JPEG …, sorted by name, 25 fps) works as input, and a folder
as output writes PNG frames. Rotation metadata (phone clips) is applied to the frames.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from latentstudio.atomic import save_npz
from latentstudio.latent import as_code
from latentstudio.progress import CancelFn, Progress, ProgressFn, check, report
from latentstudio.safety import InputError

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".avi", ".mkv", ".m4v"}
FRAME_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
FOLDER_FPS = 25
SMOOTH_SIGMA = 1.5  # frames: the landmarks' temporal Gaussian
WARM_STEPS = 10  # inversion steps of every frame after the first
SETTLE = 24  # the first frames with the face are inverted again, backwards (``_settle``)
COLOUR_MEMORY = 0.8  # the colour match: exponential smoothing over frames
MAX_PIXELS = 4096 * 2304  # 4K frames and below


class VideoError(InputError):
    """The clip cannot be read or written, or has no usable face."""

    title = "Cannot use the video"


@dataclass
class Frame:
    index: int
    time: float  # seconds from the start of the clip
    rgb: np.ndarray  # (H, W, 3) uint8, upright
    pts: int | None = None  # the decoder's timestamp (in ``Clip.time_base``)


@dataclass
class Clip:
    """What the decoder says about a clip."""

    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int  # an estimate for containers that do not store it
    time_base: Fraction | None = None
    has_audio: bool = False
    rotation: int = 0


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - a dependency
        raise VideoError("video needs PyAV (pip install av)") from exc
    return av


def probe(path: str | Path) -> Clip:
    """Size, rate, length and audio of a clip (or a folder of frames); VideoError if unreadable."""
    p = Path(path)
    if p.is_dir():
        files = _frame_files(p)
        from latentstudio.face.image_io import load_image

        first = load_image(files[0])
        return Clip(p, first.shape[1], first.shape[0], Fraction(FOLDER_FPS), len(files))
    if not p.is_file():
        raise VideoError(f"{p}: no such video file or folder of frames")
    av = _av()
    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise VideoError(f"{p}: no video stream in this file")
            s = c.streams.video[0]
            fps = s.average_rate or s.guessed_rate or Fraction(FOLDER_FPS)
            n = s.frames or int(float(c.duration or 0) / 1e6 * float(fps))
            width, height = s.codec_context.width, s.codec_context.height
            return Clip(p, width, height, Fraction(fps), n, s.time_base, bool(c.streams.audio))
    except VideoError:
        raise
    except Exception as exc:  # noqa: BLE001 - FFmpeg's many error types: all mean "not a clip we can read"
        raise VideoError(f"{p}: not a video that can be read ({type(exc).__name__}: {exc})") from exc


def _frame_files(folder: Path) -> list[Path]:
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise VideoError(f"{folder}: no image frames (.png, .jpg …) in this folder")
    return files


def _upright(frame: Any) -> np.ndarray:
    """A decoded frame as upright RGB (the container's rotation applied)."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = int(round(getattr(frame, "rotation", 0) or 0)) // 90 % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def frames(path: str | Path, start: float | None = None, end: float | None = None) -> Iterator[Frame]:
    """The clip's frames between ``start`` and ``end`` seconds, decoded one at a time."""
    p = Path(path)
    lo, hi = start or 0.0, end if end is not None else float("inf")
    if p.is_dir():
        from latentstudio.face.image_io import load_image

        for i, f in enumerate(_frame_files(p)):
            t = i / FOLDER_FPS
            if lo <= t < hi:
                yield Frame(i, t, load_image(f))
        return
    av = _av()
    try:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for i, frame in enumerate(c.decode(s)):
                t = float(frame.time if frame.time is not None else i / float(s.average_rate or FOLDER_FPS))
                if t >= hi:
                    break
                if t >= lo:
                    rgb = _upright(frame)
                    if rgb.shape[0] * rgb.shape[1] > MAX_PIXELS:
                        raise VideoError(f"{p}: frames of {rgb.shape[1]}x{rgb.shape[0]} are larger than 4K")
                    yield Frame(i, t, rgb, frame.pts)
    except VideoError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise VideoError(f"{p}: the video cannot be decoded ({type(exc).__name__}: {exc})") from exc


def frame_at(path: str | Path, k: int) -> Frame:
    """The ``k``-th decoded frame (0-based; VideoError past the end)."""
    for i, fr in enumerate(frames(path)):
        if i == k:
            return fr
    raise VideoError(f"{path}: there is no frame {k}")


# ----------------------------------------------------------------------------- tracking
@dataclass
class Track:
    """The followed face: smoothed landmarks (T, 68, 2) per frame, NaN where it was not found."""

    landmarks: np.ndarray
    times: np.ndarray  # (T,) seconds

    @property
    def found(self) -> np.ndarray:
        return np.isfinite(self.landmarks[:, 0, 0])


def track(path: str | Path, *, face: int | None = None, start: float | None = None, end: float | None = None,
          progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> Track:
    """Follow one face through the clip (``face``: which one on its first frame with faces,
    default the largest confident). VideoError when no frame has a usable face."""
    from latentstudio.face.detect import FaceError, detect_faces, pick_face

    clip = probe(path)
    raw, times, prev = [], [], None
    for fr in frames(path, start, end):
        check(cancelled, f"tracking cancelled at frame {fr.index}")
        faces = detect_faces(fr.rgb)
        lm = None
        if prev is None:
            try:
                lm = np.asarray(pick_face(faces, face).landmarks, np.float64)
            except FaceError:
                lm = None
        elif faces:
            size = np.ptp(prev, axis=0).max()
            best = min(faces, key=lambda f: float(np.linalg.norm(f.landmarks.mean(0) - prev.mean(0))))
            if np.linalg.norm(best.landmarks.mean(0) - prev.mean(0)) < 0.5 * size:  # the same face moved
                lm = np.asarray(best.landmarks, np.float64)
        if lm is not None:
            prev = lm
        raw.append(lm if lm is not None else np.full((68, 2), np.nan))
        times.append(fr.time)
        report(progress, Progress("track", len(raw), max(clip.frames, len(raw)), f"frame {fr.index}"))
    if not raw:
        raise VideoError(f"{path}: no frames between the start and the end")
    lms = np.stack(raw)
    if not np.isfinite(lms[:, 0, 0]).any():
        raise VideoError(f"{path}: no usable face in any frame of the clip")
    return Track(smooth(lms), np.asarray(times))


def smooth(landmarks: np.ndarray, sigma: float = SMOOTH_SIGMA) -> np.ndarray:
    """Smooth (T, 68, 2) trajectories over time, within each run of valid frames: a Gaussian-
    weighted local *linear* fit at every frame (in the middle of a run the same as a Gaussian
    blur; near a run's ends it does not lag behind a moving face, which a truncated blur does:
    the face would sit off-centre in its crop, and the generator re-centres it)."""
    out = landmarks.copy()
    valid = np.isfinite(landmarks[:, 0, 0])
    radius = int(3 * sigma)
    t = 0
    while t < len(valid):
        if not valid[t]:
            t += 1
            continue
        e = t
        while e < len(valid) and valid[e]:
            e += 1
        run = landmarks[t:e]
        for i in range(len(run)):
            lo, hi = max(0, i - radius), min(len(run), i + radius + 1)
            tau = np.arange(lo, hi) - i
            w = np.exp(-0.5 * (tau / sigma) ** 2)
            s0, s1, s2 = w.sum(), (w * tau).sum(), (w * tau * tau).sum()
            det = s0 * s2 - s1 * s1
            k = w * (s2 - s1 * tau) / det if det > 1e-9 else w / s0  # the local fit's value at i
            out[t + i] = np.tensordot(k, run[lo:hi], axes=1)
        t = e
    return out


# ----------------------------------------------------------------------------- editing
@dataclass
class VideoEdit:
    """What every frame gets: slider values, keeps and slot ranges, and the identity stage."""

    alphas: dict[str, float] = field(default_factory=dict)
    keep: tuple[str, ...] = ()
    layers: Any = None
    identity: np.ndarray | None = None  # another face's W+ code: transfer its identity
    id_alpha: float = 1.0
    attr_alpha: float = 0.0  # … and this much of its attributes (the app's identity panel)
    deidentify: float = 0.0  # strength; 0 = off
    deid_seed: int = 0
    coherency: bool = True  # put the clip's own identity (the mean of its frames' codes) into every frame
    state: Any = None  # the app's EditState (no identity part): sliders, locks, slot ranges, repair
    surroundings: bool = True  # another person's face in the frame's own hair and background

    @property
    def other_person(self) -> bool:
        """The frames get another person's face (a transfer or de-identification), not the clip's."""
        return bool(self.deidentify) or self.identity is not None


@dataclass
class VideoReport:
    frames: int = 0
    edited: int = 0
    passed_through: list[int] = field(default_factory=list)  # frame indices without the face
    seconds_first: float = 0.0
    seconds_per_frame: float = 0.0  # the frames after the first, median


class ColourSmoother:
    """The colour match of paste-back, exponentially smoothed over frames."""

    def __init__(self, memory: float = COLOUR_MEMORY) -> None:
        self.memory = memory
        self.state: tuple[np.ndarray, ...] | None = None

    def __call__(self, match: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        if self.state is None:
            self.state = match
        else:
            self.state = tuple(self.memory * s + (1 - self.memory) * m for s, m in zip(self.state, match))
        return self.state


def _warm_preset() -> Any:
    from latentstudio.invert import Preset

    return Preset(steps=WARM_STEPS, render_size=256, loss_size=256, lr=0.01, w_fraction=0.0, lpips_net="alex")


def _cache_dir(out: Path) -> Path:
    return out.with_name(out.name + ".frames")


def edit_clip(src: str | Path, out: str | Path, edit: VideoEdit, *, runtime: Any, directions: Any = None,
              preset: Any = "fast", steps: int | None = None, face: int | None = None, start: float | None = None,
              end: float | None = None,
              progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> VideoReport:
    """Edit the followed face in every frame of ``src`` and write ``out`` (a video file, or a
    folder of PNG frames when ``out`` has no suffix). Written atomically; the per-frame codes
    stay in ``<out>.frames/`` (an interrupted run resumes from them)."""
    src, out = Path(src), Path(out)
    if out.resolve() == src.resolve():
        raise VideoError("the output would overwrite the input clip; choose another -o")
    clip = probe(src)
    cache = _cache_dir(out)
    cache.mkdir(parents=True, exist_ok=True)
    writer: _Writer | None = None
    try:
        tr = _cached_track(src, cache, face=face, start=start, end=end, progress=progress, cancelled=cancelled)
        writer = _Writer(out, clip, start)
        report_ = _edit_frames(src, clip, tr, edit, writer, cache, runtime=runtime, directions=directions,
                               preset=preset, steps=steps, start=start, end=end, progress=progress,
                               cancelled=cancelled)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        if not any(cache.iterdir()):
            cache.rmdir()  # nothing worth resuming from
        raise
    return report_


def _cached_track(src: Path, cache: Path, **kw: Any) -> Track:
    f = cache / "track.npz"
    key = f"v2|{src.resolve()}|{src.stat().st_mtime_ns if src.is_file() else 0}|{kw.get('face')}|{kw.get('start')}|{kw.get('end')}"
    if f.is_file():
        with np.load(f) as z:
            if str(z["key"]) == key:
                return Track(z["landmarks"], z["times"])
    tr = track(src, **kw)
    save_npz(f, landmarks=tr.landmarks, times=tr.times, key=np.array(key))
    return tr


def _edit_frames(src: Path, clip: Clip, tr: Track, edit: VideoEdit, writer: _Writer, cache: Path, *,
                 runtime: Any, directions: Any, preset: Any, steps: int | None, start: float | None,
                 end: float | None, progress: ProgressFn | None, cancelled: CancelFn | None) -> VideoReport:
    """Two passes: invert every frame with the face (cached), then measure the clip's identity
    over all of them and render, paste and write every frame."""
    from latentstudio.face.align import ffhq_quad
    from latentstudio.face.placement import Placement
    from latentstudio.identity.api import attribute_face
    from latentstudio.identity.surroundings import in_surroundings
    from latentstudio.render import render_scene

    g = runtime.generator()
    models = runtime.identity() if (edit.coherency or edit.identity is not None or edit.deidentify) else None
    rep = VideoReport(frames=len(tr.landmarks))
    codes, spent = _invert_frames(src, tr, cache, runtime=runtime, preset=preset, steps=steps, start=start, end=end,
                                  progress=progress, cancelled=cancelled, rep=rep)
    _settle(src, tr, cache, codes, spent, runtime=runtime, start=start, end=end, progress=progress,
            cancelled=cancelled)
    identity, amount = _clip_identity(codes, edit, models)
    colour = ColourSmoother()
    t_pass = time.monotonic()
    for k, fr in enumerate(frames(src, start, end)):
        if k >= len(tr.landmarks):
            break
        check(cancelled, f"video export cancelled at frame {fr.index} (resume by running it again)")
        t0 = time.monotonic()
        lm = tr.landmarks[k]
        if k not in codes:
            rep.passed_through.append(fr.index)
            writer.write(fr, fr.rgb)
            continue
        person = _identity_stage(codes[k], identity, amount, edit, models)
        edited = _edited(person, edit, directions)
        if models is not None and edit.other_person and edit.surroundings:  # the frame's own hair and background
            own = _edited(attribute_face(codes[k], identity, edit.attr_alpha), edit, directions, repair=False)
        else:  # a repair changes the face only
            own = _edited(person, edit, directions, repair=False) if _repaired(edit) else None
        face_rgb = render_scene(g, in_surroundings(edited, own, runtime.surroundings() if own is not None else None), 1024)
        quad = ffhq_quad(lm)  # the inversion's alignment quad
        placement = Placement(src, (fr.rgb.shape[1], fr.rgb.shape[0]), quad, lm)
        writer.write(fr, placement.paste(face_rgb, fr.rgb, colour_filter=colour, other_person=edit.other_person))
        rep.edited += 1
        spent[k] = spent.get(k, 0.0) + time.monotonic() - t0
        per = (time.monotonic() - t_pass) / (k + 1)
        report(progress, Progress("video", k + 1, rep.frames,
                                  f"frame {fr.index}, about {(rep.frames - k - 1) * per:.0f} s left"))
    later = [v for k, v in sorted(spent.items())[1:]]
    rep.seconds_per_frame = float(np.median(later)) if later else rep.seconds_first
    return rep


def invert_frame(aligned: np.ndarray, prev: np.ndarray | None, *, runtime: Any, preset: Any = "fast",
                 steps: int | None = None, progress: ProgressFn | None = None,
                 cancelled: CancelFn | None = None) -> np.ndarray:
    """One frame's W+ code: with ``preset`` (``steps``) when there is no ``prev``, else
    ``WARM_STEPS`` steps on the 256² route starting from ``prev`` (the fine slots stay its)."""
    from latentstudio.invert import invert

    if prev is None:
        return invert(aligned, preset=preset, steps=steps, generator=runtime.generator(), progress=progress,
                      cancelled=cancelled, nets=runtime).w_plus
    return invert(aligned, preset=_warm_preset(), generator=runtime.generator(), init=np.array(prev),
                  progress=progress, cancelled=cancelled, nets=runtime).w_plus


def _invert_frames(src: Path, tr: Track, cache: Path, *, runtime: Any, preset: Any, steps: int | None,
                   start: float | None, end: float | None, progress: ProgressFn | None,
                   cancelled: CancelFn | None, rep: VideoReport) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """Every frame with the face → its W+ code (``invert_frame``), cached per frame; (codes,
    seconds spent per frame)."""
    from latentstudio.face.align import align_face

    codes: dict[int, np.ndarray] = {}
    spent: dict[int, float] = {}
    prev: np.ndarray | None = None
    t_pass = time.monotonic()
    for k, fr in enumerate(frames(src, start, end)):
        if k >= len(tr.landmarks):
            break
        check(cancelled, f"video export cancelled while inverting frame {fr.index} (resume by running it again)")
        if not np.isfinite(tr.landmarks[k]).all():
            continue
        t0 = time.monotonic()
        code_file = cache / f"{fr.index:06d}.npz"
        code = _cached_code(code_file)
        if code is None:
            code = invert_frame(align_face(fr.rgb, tr.landmarks[k]).image, prev, runtime=runtime, preset=preset,
                                steps=steps)
            save_npz(code_file, w_plus=code)
        codes[k] = prev = code
        spent[k] = time.monotonic() - t0
        if len(codes) == 1:
            rep.seconds_first = spent[k]
        per = (time.monotonic() - t_pass) / (k + 1)
        report(progress, Progress("invert", k + 1, rep.frames,
                                  f"frame {fr.index}, about {(rep.frames - k - 1) * per:.0f} s left to invert"))
    return codes, spent


def _settle(src: Path, tr: Track, cache: Path, codes: dict[int, np.ndarray], spent: dict[int, float], *, runtime: Any,
            start: float | None, end: float | None, progress: ProgressFn | None, cancelled: CancelFn | None) -> None:
    """Invert the first ``SETTLE`` frames with the face again, backwards, each warm-started from
    the next one's code; ``codes`` and ``spent`` (seconds per frame) are updated in place (cached
    as ``<index>.settled.npz``).

    Why: the forward chain starts from the first frame's one preset inversion, and its warm steps
    need a few frames to converge; on a real clip the first frames lost the smile that the later
    ones had. Going back from the converged frames gives the first ones a converged start."""
    from latentstudio.face.align import align_face

    keys = sorted(codes)[:SETTLE]
    if len(keys) < 2:
        return
    todo: list[tuple[int, int, np.ndarray]] = []  # (k, frame index, aligned crop), in clip order
    for k, fr in enumerate(frames(src, start, end)):
        if k > keys[-2]:
            break
        if k in keys:
            settled = _cached_code(cache / f"{fr.index:06d}.settled.npz")
            if settled is not None:
                codes[k] = settled
            else:
                todo.append((k, fr.index, align_face(fr.rgb, tr.landmarks[k]).image))
    for n, (k, index, crop) in enumerate(reversed(todo)):
        check(cancelled, f"video export cancelled while settling frame {index} (resume by running it again)")
        following = keys[keys.index(k) + 1]
        t0 = time.monotonic()
        codes[k] = invert_frame(crop, codes[following], runtime=runtime)
        spent[k] = spent.get(k, 0.0) + time.monotonic() - t0
        save_npz(cache / f"{index:06d}.settled.npz", w_plus=codes[k])
        report(progress, Progress("settle", n + 1, len(todo), f"frame {index}: the first frames again, backwards"))


def _clip_identity(codes: dict[int, np.ndarray], edit: VideoEdit,
                   models: Any) -> tuple[np.ndarray | None, float | None]:
    """The one identity every frame gets: another face's, a seeded new person, or the clip's own
    (the mean of its frames' codes: a look-alike of every frame, not of the first one only); and
    how far towards it every frame goes, chosen once for that mean code so every frame moves
    alike: de-identification's reach, or the id amount's point on the blend's line."""
    if not codes:
        return None, None
    own = np.mean(np.stack(list(codes.values())), axis=0).astype(np.float32)
    if edit.identity is not None:
        from latentstudio.identity.api import even_amount

        other = as_code(edit.identity, "the identity face")
        return other, even_amount(own, other, edit.id_alpha, edit.attr_alpha, models=models)
    if edit.deidentify:
        from latentstudio.identity.api import deid_reach, random_identity

        other = random_identity(own, edit.deid_seed, models=models)
        return other, deid_reach(own, other, models=models)
    return own, None


def _cached_code(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return as_code(z["w_plus"], str(path))
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache entry is recomputed


def _repaired(edit: VideoEdit) -> bool:
    return edit.state is not None and edit.state.repair is not None


def _edited(code: np.ndarray, edit: VideoEdit, directions: dict[str, Any], repair: bool = True) -> np.ndarray:
    """``edit``'s sliders (and the app's state: locks, slot ranges and, unless ``repair`` is
    False, its repair) applied to ``code``."""
    if edit.state is not None:  # exactly what the app's document does to a code
        from latentstudio.document import Document, Source

        state = edit.state if repair else edit.state.with_repair(None)
        return Document(code, Source("code"), directions.values(), state=state).code()
    if edit.alphas:
        from latentstudio.edit.apply import apply_edits

        return apply_edits(code, edit.alphas, directions, keep=edit.keep, layers=edit.layers)
    return code


def _identity_stage(code: np.ndarray, identity: np.ndarray, amount: float | None, edit: VideoEdit,
                    models: Any) -> np.ndarray:
    """One identity in every frame (see the module docstring); ``amount``: how far towards it,
    chosen once for the clip (``_clip_identity``)."""
    from latentstudio.identity import api

    if edit.deidentify:
        return api.deidentify(code, edit.deidentify, other=identity, reach=amount, models=models)
    if edit.identity is not None:
        t = edit.id_alpha if amount is None else amount
        return api.blend(code, identity, t, edit.attr_alpha, even=False, models=models)
    if edit.coherency:
        return api.transfer(identity, code, lock=False, models=models)
    return code


# ----------------------------------------------------------------------------- writing
class _Writer:
    """Frames out: an H.264 mp4 (with the source's audio copied) written to a temporary name and
    renamed when complete, or PNG frames into a folder."""

    def __init__(self, out: Path, clip: Clip, start: float | None) -> None:
        self.out, self.clip, self.start = out, clip, start or 0.0
        self.folder = out.suffix == ""
        self.tmp = out.with_name(f".{out.name}.part{out.suffix}")
        self.container: Any = None
        self.stream: Any = None
        self.count = 0
        if self.folder:
            out.mkdir(parents=True, exist_ok=True)
        elif out.suffix.lower() not in VIDEO_SUFFIXES:
            raise VideoError(f"{out}: write a video (.mp4, .mov, .mkv …) or a folder of frames")

    def write(self, fr: Frame, rgb: np.ndarray) -> None:
        if self.folder:
            from latentstudio.face.image_io import save_image

            save_image(self.out / f"{fr.index:06d}.png", rgb, {})
            return
        av = _av()
        if self.container is None:
            self.container = av.open(str(self.tmp), "w")
            rate = self.clip.fps.limit_denominator(1001)
            self.stream = self.container.add_stream("libx264", rate=rate)
            self.stream.width, self.stream.height = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": "18", "preset": "veryfast"}
            self.stream.time_base = Fraction(1, 90000)
            self.stream.codec_context.time_base = Fraction(1, 90000)  # the source's own times, variable rates too
        h, w = self.stream.height, self.stream.width
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
        frame.pts = int(round((fr.time - self.start) * 90000))
        frame.time_base = Fraction(1, 90000)
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.count += 1

    def close(self) -> None:
        if self.folder:
            return
        if self.container is None:
            raise VideoError(f"{self.clip.path}: no frames to write")
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        if self.clip.has_audio:
            _add_audio(self.tmp, self.clip.path, self.start)
        os.replace(self.tmp, self.out)

    def abort(self) -> None:
        try:
            if self.container is not None:
                self.container.close()
        except Exception:  # noqa: BLE001 - already failing
            pass
        self.tmp.unlink(missing_ok=True)


def _add_audio(video: Path, source: Path, start: float) -> None:
    """Remux ``video`` with the audio stream of ``source`` (from ``start`` s, packets copied)."""
    av = _av()
    tmp = video.with_name(video.stem + ".audio" + video.suffix)
    with av.open(str(video)) as vin, av.open(str(source)) as ain, av.open(str(tmp), "w") as out:
        vs = out.add_stream_from_template(vin.streams.video[0])
        a_in = ain.streams.audio[0]
        as_ = out.add_stream_from_template(a_in)
        end = float(vin.streams.video[0].duration * vin.streams.video[0].time_base) if vin.streams.video[0].duration else None
        for packet in vin.demux(vin.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = vs
            out.mux(packet)
        offset = int(start / a_in.time_base) if a_in.time_base else 0
        for packet in ain.demux(a_in):
            if packet.dts is None or packet.pts is None:
                continue
            t = float(packet.pts * a_in.time_base)
            if t < start or (end is not None and t - start > end + 0.5):
                continue
            packet.pts -= offset
            packet.dts -= offset
            packet.stream = as_
            out.mux(packet)
    os.replace(tmp, video)


__all__ = ["Clip", "Frame", "Track", "VideoEdit", "VideoError", "VideoReport", "edit_clip", "frame_at", "frames", "probe",
           "smooth", "track"]
