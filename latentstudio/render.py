"""Background rendering: one worker thread owns the Generator; the newest request wins.

Usable without Qt. Callers post requests from any thread and get results through callbacks,
which run **on the worker thread** (a GUI forwards them to its own thread)::

    r = Renderer(lambda: Generator.load("cpu"), on_frame=show)
    r.start()
    seq = r.request(code, size=256)          # code (23,512) or a Scene, or a zero-argument callable → either
    r.request(code, 1024, generator_for=doc.generator_for)   # render with other (tuned) weights

Rules
- Every request gets a sequence number (increasing, shared by all channels).
- Each *channel* ("main", "before", …) holds at most one pending request: a newer request replaces
  an unstarted older one, which is never rendered (``stats.skipped``).
- A result is delivered only if it is newer than the last one delivered on its channel, and it is
  dropped (``stats.dropped``) if a cheaper newer request for the channel is already waiting: a
  full-size render that a drag has overtaken is stale, the preview behind it is moments away.
  For the same reason a running render is abandoned between synthesis blocks when a smaller
  request arrives for its channel (``stats.interrupted``).
- Jobs (``submit``: export, thumbnails) are never dropped. Work is served oldest first: the job
  queue and the channels' pending requests by sequence number.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Scene(Protocol):
    """Something that renders itself rather than a plain code: ``code`` (23,512) is what the
    frame reports, ``render_uint8`` the picture (e.g. ``identity.surroundings.InSurroundings``: a
    transferred face in the attribute face's hair and background)."""

    code: np.ndarray

    def render_uint8(self, generator: Any, size: int, between: Callable[[], None] | None = None) -> np.ndarray:
        ...


Code = np.ndarray | Scene | Callable[[], "np.ndarray | Scene"]


@dataclass(frozen=True, eq=False)
class Frame:
    """A finished render. ``face`` is the generator output (S,S,3) uint8; ``image`` what to show
    (``face`` itself, or the output of the request's ``post`` step, e.g. pasted into a photo)."""

    seq: int
    channel: str
    size: int
    face: np.ndarray
    image: np.ndarray
    code: np.ndarray  # (23,512) float32 that was rendered
    tag: Any
    seconds: float  # render time on the worker


@dataclass(eq=False)
class _Request:
    seq: int
    channel: str
    size: int = 256
    code: Code | None = None
    post: Callable[[np.ndarray], np.ndarray] | None = None
    tag: Any = None
    generator_for: Callable[[Any], Any] | None = None
    job: Callable[[Any], Any] | None = None
    on_done: Callable[[Any], None] | None = None
    on_error: Callable[[BaseException], None] | None = None


@dataclass
class RenderStats:
    requested: int = 0
    rendered: int = 0
    delivered: int = 0
    skipped: int = 0  # replaced before it started
    dropped: int = 0  # finished but stale
    interrupted: int = 0  # abandoned mid-render for a newer, cheaper request
    failed: int = 0
    seconds: list[float] = field(default_factory=list)  # per finished render
    sizes: list[int] = field(default_factory=list)  # its size


class _Superseded(Exception):
    pass


class Renderer:
    """A thread that owns a Generator and renders the newest request of each channel."""

    def __init__(self, generator: Any | Callable[[], Any], *,
                 on_frame: Callable[[Frame], None],
                 on_error: Callable[[int, str, BaseException], None] | None = None,
                 on_ready: Callable[[Any], None] | None = None,
                 on_start_failed: Callable[[BaseException], None] | None = None) -> None:
        self._factory = generator if callable(generator) and not hasattr(generator, "synthesize") \
            else (lambda: generator)
        self._on_frame = on_frame
        self._on_error = on_error
        self._on_ready = on_ready
        self._on_start_failed = on_start_failed
        self._cv = threading.Condition()
        self._pending: dict[str, _Request] = {}
        self._jobs: collections.deque[_Request] = collections.deque()
        self._current: _Request | None = None
        self._last_delivered: dict[str, int] = {}
        self._seq = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self.generator: Any = None
        self.start_error: BaseException | None = None
        self.stats = RenderStats()

    # ----------------------------------------------------------------- control
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="latentstudio-render", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Finish the current item, discard the rest and end the thread."""
        with self._cv:
            self._stop = True
            self._pending.clear()
            self._jobs.clear()
            self._cv.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the generator is loaded (or failed to load); True if it is usable."""
        with self._cv:
            self._cv.wait_for(lambda: self.generator is not None or self.start_error is not None
                              or self._stop, timeout)
            return self.generator is not None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or running; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._pending and not self._jobs
                                     and self._current is None, timeout)

    # ----------------------------------------------------------------- requests
    def request(self, code: Code, size: int = 256, *, channel: str = "main",
                post: Callable[[np.ndarray], np.ndarray] | None = None, tag: Any = None,
                generator_for: Callable[[Any], Any] | None = None) -> int:
        """Queue a render of ``code`` at ``size`` (128, 256, 512 or 1024); returns its sequence
        number. ``generator_for(generator)``, called on the worker, gives the generator to render
        with (a document's tuned weights); its errors are reported like render errors."""
        with self._cv:
            self._seq += 1
            old = self._pending.get(channel)
            if old is not None:
                self.stats.skipped += 1
            self._pending[channel] = _Request(self._seq, channel, size, code, post, tag, generator_for)
            self.stats.requested += 1
            self._cv.notify_all()
            return self._seq

    def submit(self, job: Callable[[Any], Any], *, on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[BaseException], None] | None = None) -> int:
        """Run ``job(generator)`` on the worker, in order; ``on_done(result)`` afterwards."""
        with self._cv:
            self._seq += 1
            self._jobs.append(_Request(self._seq, "job", job=job, on_done=on_done, on_error=on_error))
            self._cv.notify_all()
            return self._seq

    def cancel(self, channel: str) -> None:
        """Forget the pending request of ``channel`` (a running one still finishes)."""
        with self._cv:
            if self._pending.pop(channel, None) is not None:
                self.stats.skipped += 1
            self._cv.notify_all()

    @property
    def last_seq(self) -> int:
        return self._seq

    # ----------------------------------------------------------------- worker
    def _run(self) -> None:
        try:
            gen = self._factory()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            with self._cv:
                self.start_error = exc
                self._cv.notify_all()
            if self._on_start_failed:
                self._on_start_failed(exc)
            return
        with self._cv:
            self.generator = gen
            self._cv.notify_all()
        if self._on_ready:
            self._on_ready(gen)
        while True:
            with self._cv:
                self._current = None
                self._cv.notify_all()
                self._cv.wait_for(lambda: self._stop or self._pending or self._jobs)
                if self._stop:
                    return
                render = min(self._pending.values(), key=lambda r: r.seq, default=None)
                if self._jobs and (render is None or self._jobs[0].seq < render.seq):
                    item = self._jobs.popleft()
                else:
                    item = render
                    del self._pending[item.channel]
                self._current = item
            if item.job is not None:
                self._run_job(gen, item)
            else:
                self._render(gen, item)

    def _run_job(self, gen: Any, item: _Request) -> None:
        try:
            result = item.job(gen)  # type: ignore[misc]
        except BaseException as exc:  # noqa: BLE001
            _free_cuda(exc)
            if item.on_error:
                item.on_error(exc)
            return
        if item.on_done:
            item.on_done(result)

    def _render(self, gen: Any, item: _Request) -> None:
        t0 = time.perf_counter()
        try:
            scene = item.code() if callable(item.code) else item.code
            code = np.array(scene.code if isinstance(scene, Scene) else scene, dtype=np.float32)  # a private copy
            g = item.generator_for(gen) if item.generator_for is not None else gen
            face = render_scene(g, scene if isinstance(scene, Scene) else code, item.size,
                                lambda: self._overtaken(item))
            image = item.post(face) if item.post is not None else face
        except _Superseded:
            with self._cv:
                self.stats.interrupted += 1
            return
        except BaseException as exc:  # noqa: BLE001 - reported, the worker keeps going
            _free_cuda(exc)
            with self._cv:
                self.stats.failed += 1
            if self._on_error:
                self._on_error(item.seq, item.channel, exc)
            return
        seconds = time.perf_counter() - t0
        with self._cv:
            self.stats.rendered += 1
            self.stats.seconds.append(seconds)
            self.stats.sizes.append(item.size)
            stale = (item.seq <= self._last_delivered.get(item.channel, 0) or self._overtaken(item))
            if stale:
                self.stats.dropped += 1
                return
            self._last_delivered[item.channel] = item.seq
            self.stats.delivered += 1
        self._on_frame(Frame(item.seq, item.channel, item.size, face, image, code, item.tag, seconds))

    def _overtaken(self, item: _Request) -> bool:
        """A newer, cheaper request for the same channel is waiting (no lock: a dict lookup)."""
        newer = self._pending.get(item.channel)
        return newer is not None and newer.seq > item.seq and newer.size < item.size


def render_scene(gen: Any, scene: np.ndarray | Scene, size: int,
                 should_stop: Callable[[], bool] = lambda: False) -> np.ndarray:
    """A code (``synthesize_uint8``) or a ``Scene`` → (size,size,3) uint8, checking
    ``should_stop`` between synthesis blocks."""
    if not isinstance(scene, Scene):
        return synthesize_uint8(gen, scene, size, should_stop)

    def between() -> None:
        if should_stop():
            raise _Superseded

    return scene.render_uint8(gen, size, between)


def synthesize_uint8(gen: Any, code: np.ndarray, size: int,
                     should_stop: Callable[[], bool] = lambda: False) -> np.ndarray:
    """Render W+ (23,512) → (size,size,3) uint8, checking ``should_stop`` between synthesis blocks.

    Walks the same modules as ``Generator.synthesize`` (prefix blocks, then the preview head or
    the to-image layer + inverse wavelet); falls back to one uninterruptible call if the
    generator does not expose them.
    """
    import torch

    from latentstudio.models.generator import as_w_plus, to_uint8

    syn = getattr(gen, "synthesis", None)
    if not all(hasattr(syn, a) for a in ("const", "conv", "blocks", "to_image", "idwt_mix")):
        return to_uint8(gen.synthesize(code, size=size))[0]
    from latentstudio.models.mobilestylegan import NUM_SLOTS, inverse_haar
    from latentstudio.models.preview import PREVIEW_SIZES

    if size not in (128, 256, 512, 1024):
        raise ValueError(f"size must be 128, 256, 512 or 1024, got {size}")
    if size != 1024 and gen.heads is None:
        raise RuntimeError("preview heads missing (assets/preview_heads.safetensors)")
    w = as_w_plus(code).to(gen.device)
    fast = gen.fast() if hasattr(gen, "fast") else None
    if fast is not None:
        def between() -> None:
            if should_stop():
                raise _Superseded

        return to_uint8(fast.render(w, size, between).clamp(-1, 1))[0]
    blocks = PREVIEW_SIZES.get(size, len(syn.blocks))
    with torch.inference_mode():
        x = syn.conv(syn.const.expand(w.shape[0], -1, -1, -1), w[:, 0])
        for i, block in enumerate(syn.blocks[:blocks]):
            if should_stop():
                raise _Superseded
            x = block(x, w[:, 1 + 3 * i: 4 + 3 * i], syn.idwt_mix)
        if size == 1024:
            img = inverse_haar(syn.to_image(x, w[:, NUM_SLOTS - 1]), syn.idwt_mix)
        else:
            img = gen.heads(x, size)
    return to_uint8(img.clamp(-1, 1))[0]


def _free_cuda(exc: BaseException) -> None:
    """After an out-of-memory error, give cached CUDA blocks back so the next render can run."""
    if "out of memory" in str(exc).lower():
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass
