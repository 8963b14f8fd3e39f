"""Qt adapters for background work: the renderer's callbacks as signals, and cancellable tasks.

Signals emitted from a worker thread reach slots of objects living in the GUI thread through
queued connections, so those slots run on the GUI thread. Connect them to bound methods of
QObjects: a plain lambda has no thread and would run on the worker.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from latentstudio.render import Frame, Renderer


class RenderBridge(QObject):
    """Owns a ``Renderer``; re-emits its callbacks as Qt signals."""

    frameReady = Signal(object)  # Frame
    renderFailed = Signal(int, str, object)  # seq, channel, exception
    ready = Signal(object)  # the Generator
    startFailed = Signal(object)  # exception
    jobDone = Signal(object, object)  # callback, result
    jobFailed = Signal(object, object)  # callback, exception

    def __init__(self, generator_factory: Callable[[], Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.renderer = Renderer(generator_factory, on_frame=self.frameReady.emit,
                                 on_error=self.renderFailed.emit, on_ready=self.ready.emit,
                                 on_start_failed=self.startFailed.emit)
        # bound methods (not lambdas): Qt then queues the call onto this object's (GUI) thread
        self.jobDone.connect(self._call)
        self.jobFailed.connect(self._call)

    def _call(self, callback: Callable[[Any], None], value: Any) -> None:
        callback(value)

    def start(self) -> None:
        self.renderer.start()

    def stop(self) -> None:
        self.renderer.stop()

    def request(self, *args: Any, **kwargs: Any) -> int:
        return self.renderer.request(*args, **kwargs)

    def submit(self, job: Callable[[Any], Any], on_done: Callable[[Any], None],
               on_error: Callable[[BaseException], None]) -> int:
        """Run ``job(generator)`` on the render thread; the callbacks run on the GUI thread."""
        return self.renderer.submit(job, on_done=lambda r: self.jobDone.emit(on_done, r),
                                    on_error=lambda e: self.jobFailed.emit(on_error, e))


class Task(QObject):
    """Runs ``fn(report, cancelled)`` on a Python thread.

    ``report(x)`` emits ``progress(x)``; ``cancelled()`` tells the function to stop (it should
    raise, e.g. ``invert.Cancelled``). Exactly one of ``finished(result)`` / ``failed(exc, tb)``
    follows, on the GUI thread.
    """

    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(object, str)

    def __init__(self, name: str, fn: Callable[[Callable[[Any], None], Callable[[], bool]], Any],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._fn = fn
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"latentstudio-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            result = self._fn(self.progress.emit, self._cancel.is_set)
        except BaseException as exc:  # noqa: BLE001 - shown to the user by the receiver
            self.failed.emit(exc, traceback.format_exc())
            return
        self.finished.emit(result)


__all__ = ["Frame", "RenderBridge", "Task"]
