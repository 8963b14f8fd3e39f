"""The Qt adapter of the headless session (``latentstudio.session.Session``).

It turns the session's changes into signals, runs its ``Task``s on a worker thread (``Task`` in
``gui.workers``: progress and Cancel), renders frames on the render thread, and holds what only
an interactive editor needs: the drag state, the settle timer, the view ("aligned" or "photo")
and the autosave. Every decision about documents, history, repair, identity and export is the
session's.

Render policy: while a slider is dragged, previews (``preview_size``², 256) are
rendered; on release, and ``settle_ms`` after any other change, the full-size image. Frames are
shown only if newer than what is on screen and meant for the current document and view.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from latentstudio.codes import CODE_SUFFIXES
from latentstudio.document import Document, DocumentError, EditState, OtherFace
from latentstudio.gui.dialogs import describe_error
from latentstudio.gui.workers import RenderBridge, Task
from latentstudio.progress import Cancelled, Progress
from latentstudio.project import Autosave
from latentstudio.render import Frame
from latentstudio.runtime import Runtime
from latentstudio.safety import InputError
from latentstudio.session import DEMO_PSI, DEMO_SEED, IMAGE_SUFFIXES, FrameGate, PendingPhoto, Session
from latentstudio.session import Task as CoreTask

PREVIEW_PHOTO_SIDE = 1600  # pasted-back previews are composed into a photo this large at most


def _through(name: str, writable: bool = False) -> property:
    """An ``EditorSession`` attribute that is the headless session's (``self.core``)."""
    def get(self: EditorSession) -> Any:
        return getattr(self.core, name)

    def put(self: EditorSession, value: Any) -> None:
        setattr(self.core, name, value)

    return property(get, put if writable else None)


class EditorSession(QObject):
    documentChanged = Signal()  # a new document: rebuild panels
    stateChanged = Signal()  # the edit state changed (edit, undo, redo)
    historyChanged = Signal()  # steps, the current step or the saved mark changed
    frameReady = Signal(object)  # Frame to show (main channel, current document and view)
    beforeReady = Signal(object)  # (H,W,3) uint8 "before" image for the current view
    generatorReady = Signal()
    modelsMissing = Signal(str)  # the generator could not load because models are missing
    error = Signal(str, str, str)  # title, message (the cause), details
    status = Signal(str)
    taskStarted = Signal(str)  # task label
    taskProgress = Signal(object)  # latentstudio.progress.Progress
    taskEnded = Signal(str)  # "done" | "cancelled" | "failed"
    facesFound = Signal(object)  # PendingPhoto: several faces, the UI lets the user pick
    otherChanged = Signal(object)  # thumbnail (H,W,3) uint8 of the second face, or None
    directionsChanged = Signal()

    def __init__(self, *, device: str = "auto", generator_factory: Callable[[], Any] | None = None,
                 autosave: Autosave | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.device = device
        self._factory = generator_factory
        self.core = Session(Runtime(device, generator_factory=generator_factory, freeze=True))
        self.core.early_guess = True  # a photo shows at once and refines in the background
        self.core.history.listeners.append(self.historyChanged.emit)
        self.view = "aligned"  # or "photo"
        # drag previews at 256²: 27 ms on 2 CPU cores with the models.fast twin (bench/RESULTS.md)
        self.preview_size = 256
        self.quick_size = 128  # while dragging, when the renderer is still busy with the last move
        self.sharpen_ms = 90  # a drag that pauses this long gets its preview_size² frame
        self.full_size = 1024
        self.settle_ms = 250
        self.last_frame: Frame | None = None
        self.last_full: Frame | None = None
        self.task: Task | None = None
        self._old_tasks: list[Task] = []
        self._task_finish: Callable[[Any], None] = lambda result: None
        self.frames = FrameGate()
        self._pose_noted: object = None  # the identity setting whose pose was last checked
        self.pose_note_ms = 1500
        self._pose_timer = QTimer(self, singleShot=True, interval=self.pose_note_ms)
        self._pose_timer.timeout.connect(self._note_identity_pose)
        self._drag_key: object = None
        self._drags = itertools.count(1)
        self._settle = QTimer(self, singleShot=True, interval=self.settle_ms)
        self._settle.timeout.connect(self._render_full)
        self._sharpen = QTimer(self, singleShot=True, interval=self.sharpen_ms)
        self._sharpen.timeout.connect(lambda: self._request(self.preview_size) if self.dragging else None)
        self.autosave = autosave or Autosave()
        self._autosave_dirty = False
        self._autosave_timer = QTimer(self, interval=30_000)
        self._autosave_timer.timeout.connect(self.write_autosave)
        self._autosave_timer.start()
        self.bridge: RenderBridge | None = None
        self._retired: list[RenderBridge] = []  # stopped bridges whose thread may still be finishing
        self.ready = False

    # the headless session's state, read (and for the inversion settings, written) through
    doc = _through("doc")
    history = _through("history")
    runtime = _through("runtime")
    project_path = _through("project_path")
    directions_note = _through("directions_note")
    invert_preset = _through("invert_preset", writable=True)
    invert_steps = _through("invert_steps", writable=True)
    tune_steps = _through("tune_steps", writable=True)

    # ================================================================= lifecycle
    def start(self) -> None:
        """Load the generator on the render thread; the demo face appears when it is ready."""
        self._start_bridge()

    def _start_bridge(self) -> None:
        if self.bridge is not None:  # retire the old one without waiting for its current render
            old = self.bridge
            for sig in (old.frameReady, old.renderFailed, old.ready, old.startFailed):
                sig.disconnect()
            old.renderer.stop(timeout=0)
            self._retired.append(old)
        self.ready = False
        self.bridge = RenderBridge(self.runtime.generator, self)
        self.bridge.frameReady.connect(self._on_frame)
        self.bridge.renderFailed.connect(self._on_render_failed)
        self.bridge.ready.connect(self._on_ready)
        self.bridge.startFailed.connect(self._on_start_failed)
        self.bridge.start()

    def shutdown(self) -> None:
        """Stop the threads and remove this session's autosave (a clean exit)."""
        if self.task is not None:
            self.task.cancel()
        if self.bridge is not None:
            self.bridge.renderer.stop(timeout=3.0)
        self._autosave_timer.stop()
        self.autosave.clear()
        self.core.runtime.release()

    def set_device(self, device: str) -> None:
        """Move every model to ``device`` (a new runtime) and restart the renderer."""
        if device != self.device:
            self.device = device
            self.core.runtime.release()  # its models may go; the new runtime freezes its own
            self.core.set_runtime(Runtime(device, generator_factory=self._factory, freeze=True))
            self.status.emit(f"Render device: {device}; reloading the generator…")
            self._start_bridge()

    def _on_ready(self, gen: Any) -> None:
        self.ready = True
        self.status.emit(f"Generator ready on {getattr(gen, 'device', 'cpu')}")
        self.generatorReady.emit()
        if self.doc is None:
            self.new_demo(only_if_empty=True)
        else:
            self._render_all()

    def _on_start_failed(self, exc: BaseException) -> None:
        if self.core.models_missing(exc):
            self.modelsMissing.emit(str(exc))
        else:
            self.error.emit("Cannot start the renderer", str(exc), repr(exc))

    # ================================================================= documents
    def new_demo(self, seed: int = DEMO_SEED, psi: float = DEMO_PSI, only_if_empty: bool = False) -> None:
        """A generated face (no photo needed). ``only_if_empty``: unless a document arrived
        meanwhile (a recovered session, a photo given on the command line)."""
        def done(doc: Document) -> None:
            if not (only_if_empty and self.doc is not None):
                self.set_document(doc, None)

        self._submit(lambda g: self.core.demo(seed, psi), done, "Cannot create the demo face")

    def set_document(self, doc: Document, project_path: Path | None) -> None:
        warnings = self.core.set_document(doc, project_path)
        self._document_changed(warnings)

    def _document_changed(self, messages: list[str]) -> None:
        doc = self.doc
        assert doc is not None
        self.frames.renew()
        self.last_frame = self.last_full = None
        if self.view == "photo" and not doc.source.can_paste_back:
            self.view = "aligned"
        self._autosave_dirty = True
        self.documentChanged.emit()
        self.stateChanged.emit()
        self._thumbnail_other(doc.state.identity.other)
        for m in messages:
            self.status.emit(m)
        self._render_all()

    def open_path(self, path: str | Path) -> None:
        """Open a project (``.lsproj``), a code file (``.npz``/``.npy``) or a photo, by extension."""
        self._run_core(self.core.open_task(path), on_result=self._opened)

    def open_code(self, path: str | Path) -> None:
        self._run_core(self.core.code_task(path))

    def open_project(self, path: str | Path, recovered: bool = False) -> None:
        self._run_core(self.core.project_task(path, recovered))

    def _opened(self, result: Any) -> None:
        if isinstance(result, PendingPhoto):
            self._faces_detected(result)

    def save_project(self, path: str | Path) -> bool:
        if self.doc is None:
            return False
        frame = self._full_frame(self.doc.state)
        code = frame.code if frame is not None else None
        try:
            p = self.core.save_project(path, code)  # the renderer's code: no model run here
        except DocumentError as exc:
            self.error.emit("Cannot save the project", str(exc), "")
            return False
        self.status.emit(f"Saved {p}")
        return True

    def recover(self, path: Path) -> None:
        """Open an autosave left by a crashed session; it is deleted once it is open."""
        self.open_project(path, recovered=True)

    def write_autosave(self) -> None:
        """Snapshot the document to this session's autosave file (on a thread), with the code of
        the last full frame when it is the current state's: the autosave never runs the identity
        models beside the renderer (a state whose code needs them waits for its full frame)."""
        if self.doc is None or not self._autosave_dirty:
            return
        doc = self.doc
        state = doc.state
        full = self._full_frame(state)
        code = full.code if full is not None else None
        if code is None and state.identity.active:
            return  # its code needs the identity models (seconds): saved with its full frame, next time
        self._autosave_dirty = False

        def write() -> None:
            try:
                self.autosave.write(doc, state, code)
            except Exception:  # noqa: BLE001 - autosave must never disturb the user
                self._autosave_dirty = True

        threading.Thread(target=write, name="latentstudio-autosave", daemon=True).start()

    # ================================================================= photos
    def open_photo(self, path: str | Path, target: str = "document") -> None:
        """Load, detect, (let the user pick,) align and invert a photo. ``target`` "other" makes
        it the identity panel's second face instead of a new document."""
        self._run_core(self.core.photo_task(path, target), on_result=self._faces_detected)

    def _faces_detected(self, pending: PendingPhoto) -> None:
        if len(pending.confident) > 1:
            self.facesFound.emit(pending)
        else:
            self.use_face(pending, 0)

    def face_pick_cancelled(self) -> None:
        self.taskEnded.emit("cancelled")
        self.status.emit("No face chosen; the document is unchanged")

    def use_face(self, pending: PendingPhoto, index: int) -> None:
        """Align and invert face ``index`` of a detected photo (after the picker)."""
        self._start(lambda: self.core.face_task(pending, index))

    # ================================================================= video
    def show_frame(self, k: int) -> None:
        """Show frame ``k`` of the open clip (a task: its inversion warm-starts from this frame)."""
        self._start(lambda: self.core.frame_task(k), "Cannot show that frame")

    def export_video(self, path: str | Path) -> None:
        """Write the clip with the edits on every frame (a task: progress, time left, Cancel)."""
        self._start(lambda: self.core.video_export_task(path), "Cannot export the video")

    def set_high_fidelity(self, on: bool) -> None:
        """Photos opened from now on are also pivotally tuned (``latentstudio.tune``)."""
        self.core.set_high_fidelity(on)

    # ================================================================= tasks
    def _start(self, make: Callable[[], CoreTask], title: str | None = None) -> None:
        """Run the session task ``make()`` returns, or say why it cannot start (``title``, default
        the error's own: "No usable face" …)."""
        try:
            task = make()
        except InputError as exc:
            own, message, _ = describe_error(exc, "")
            self.error.emit(title or own, message, "")
            return
        self._run_core(task)

    def _run_core(self, task: CoreTask, on_result: Callable[[Any], None] | None = None) -> None:
        """Run a session task on the worker thread; its ``finish`` (and ``on_result``) here."""
        before = (self.doc, self.doc.state if self.doc else None)

        def done(result: Any) -> None:
            message = task.finish(result)
            if on_result is not None:
                on_result(result)
            self._after_change(before)
            if message:
                self.status.emit(message)
            if self.core.guess_pending() and (self.task is None or not self.task.running()):
                self._run_core(self.core.inversion_task())  # the first guess refines in the background

        self._run_task(task.label, lambda report, cancelled: task.run(report, cancelled), done)

    def _run_task(self, label: str, fn: Callable[..., Any], done: Callable[[Any], None]) -> None:
        if self.task is not None and self.task.running():
            self.error.emit("Busy", f"Wait for “{self.task.name}” to finish or cancel it first.", "")
            return
        task = Task(label, fn, self)
        task.progress.connect(self._task_progress)  # bound methods: queued to the GUI thread
        task.finished.connect(self._task_done)
        task.failed.connect(self._task_failed)
        self.task = task
        self._task_finish = done
        self.taskStarted.emit(label)
        task.start()

    def cancel_task(self) -> None:
        if self.task is not None and self.task.running() and not self.task.cancelled:
            self.task.cancel()
            self.status.emit("Cancelling…")

    def _task_progress(self, p: Progress) -> None:
        if self.sender() is self.task:
            self.taskProgress.emit(p)

    def _finish_task(self) -> None:
        """Forget the current task; its QObject is deleted once its thread has really ended
        (the thread may still be returning from the signal that brought us here)."""
        if self.task is not None:
            self._old_tasks.append(self.task)
        self.task = None
        for t in [t for t in self._old_tasks if not t.running()]:
            self._old_tasks.remove(t)
            t.deleteLater()

    def _task_done(self, result: Any) -> None:
        self._finish_task()
        self.taskEnded.emit("done")
        try:
            self._task_finish(result)
        except Exception as exc:  # noqa: BLE001 - e.g. a document that cannot take the result
            self.error.emit(*describe_error(exc, ""))

    def _task_failed(self, exc: BaseException, details: str) -> None:
        self._finish_task()
        if isinstance(exc, Cancelled):
            self.taskEnded.emit("cancelled")
            self.status.emit("Cancelled; the document is unchanged")
            return
        self.taskEnded.emit("failed")
        self.error.emit(*describe_error(exc, details))

    def fetch_models(self) -> None:
        """Fetch the missing models on a task thread, then restart the renderer."""
        self._run_core(self.core.fetch_task(), on_result=lambda keys: self._start_bridge())

    # ================================================================= editing
    def _edit(self, change: Callable[[], Any], title: str = "Cannot apply the edit") -> None:
        """Run one of the session's quick changes, then show what it changed."""
        before = (self.doc, self.doc.state if self.doc else None)
        try:
            message = change()
        except DocumentError as exc:
            self.error.emit(title, str(exc), "")
            return
        self._after_change(before)
        if isinstance(message, str) and message:
            self.status.emit(message)

    def _after_change(self, before: tuple[Document | None, EditState | None]) -> None:
        """Signals for whatever changed since ``before`` (document, state)."""
        doc = self.doc
        if doc is None:
            return
        if doc is not before[0]:
            self._document_changed([])  # the task's message carries the document's warnings
            return
        if doc.state != before[1]:
            if doc.state.identity.other is not (before[1].identity.other if before[1] else None):
                self._thumbnail_other(doc.state.identity.other)
            self._autosave_dirty = True
            self.stateChanged.emit()
            self._render_now()

    def push(self, after: EditState, text: str, merge_key: object = None) -> None:
        """Make ``after`` the current state as an undoable step."""
        if self.doc is not None:
            self._edit(lambda: self.core.push(after, text, merge_key))

    def undo(self) -> None:
        self._edit(self.core.undo)

    def redo(self) -> None:
        self._edit(self.core.redo)

    def go_to(self, index: int) -> None:
        self._edit(lambda: self.core.go_to(index))

    def begin_drag(self, *_: Any) -> None:
        """A slider handle is grabbed: previews only, one undo step until ``end_drag``."""
        if self._drag_key is None:
            self._drag_key = ("drag", next(self._drags))
        self._settle.stop()

    def end_drag(self, *_: Any) -> None:
        """Released: render the full size now."""
        if self._drag_key is None:
            return
        self._drag_key = None
        self._settle.stop()
        self._sharpen.stop()
        self._render_full()

    @property
    def dragging(self) -> bool:
        return self._drag_key is not None

    def set_value(self, name: str, value: float) -> None:
        if self.doc is not None:
            self._edit(lambda: self.core.set_value(name, value, self._drag_key))

    def set_keep(self, name: str, on: bool) -> None:
        if self.doc is not None:
            self._edit(lambda: self.core.set_keep(name, on))

    def set_layers(self, name: str, layers: tuple[int, int] | None) -> None:
        if self.doc is not None:
            self._edit(lambda: self.core.set_layers(name, layers, self._drag_key))

    def reset(self, name: str) -> None:
        if self.doc is not None:
            self._edit(lambda: self.core.reset(name))

    def reset_all(self) -> None:
        if self.doc is not None:
            self._edit(self.core.reset_all)

    def can_repair(self) -> str | None:
        return self.core.can_repair()

    def repair_artifacts(self, strength: float | None = None) -> None:
        """Walk the edited code along the quality direction until the render looks clean, at most
        ``strength`` (a task: progress and Cancel); one undoable step."""
        self._start(lambda: self.core.repair_task(strength), "Cannot repair artifacts")

    def add_directions_from(self, path: str | Path) -> None:
        """Import user directions (.npy/.pt vector or .npz PCA) as new sliders."""
        if self.doc is None:
            return
        try:
            message = self.core.add_directions_from(path)
        except DocumentError as exc:
            self.error.emit("Cannot import the direction", str(exc), "")
            return
        self.directionsChanged.emit()
        self.status.emit(message)

    # -- identity
    def identity_reason(self) -> str | None:
        return self.core.identity_reason()

    def set_identity(self, text: str, **changes: Any) -> None:
        if self.doc is not None:
            self._edit(lambda: self.core.set_identity(text, self._drag_key, **changes))

    def set_amount(self, key: str, value: float) -> None:
        """An identity-panel amount: "id_alpha", "attr_alpha" or "deid_strength"."""
        if self.doc is not None:
            self._edit(lambda: self.core.set_amount(key, value, self._drag_key))

    def swap_roles(self) -> None:
        if self.doc is not None:
            self._edit(self.core.swap_roles)

    def deidentify(self) -> None:
        if self.doc is not None:
            self._edit(self.core.deidentify)

    def can_refine_identity(self) -> str | None:
        return self.core.can_refine_identity()

    def refine_identity(self, steps: int | None = None) -> None:
        """Optimise the panel's blend (a task: progress and Cancel); one undoable step."""
        self._start(lambda: self.core.refine_task(steps), "Cannot refine")

    def set_other(self, other: OtherFace | None) -> None:
        if self.doc is not None:
            self._edit(lambda: self.core.set_other(other))

    def open_other(self, path: str | Path) -> None:
        """The identity panel's second face from a photo (aligned and inverted) or a code file."""
        p = Path(path)
        if p.suffix.lower() not in CODE_SUFFIXES:
            self.open_photo(p, target="other")
        else:
            self._run_core(self.core.other_code_task(p))

    def clear_other(self) -> None:
        self.set_other(None)

    def use_generated_other(self, seed: int, psi: float = DEMO_PSI) -> None:
        self._submit(lambda g: self.core.generated_other(seed, psi), self.set_other, "Cannot generate the face")

    def _thumbnail_other(self, other: OtherFace | None) -> None:
        if other is None:
            self.otherChanged.emit(None)
            return
        self._submit(lambda g: _render(g, other.code, 256), self.otherChanged.emit,
                     "Cannot render the second face")

    # ================================================================= rendering
    def set_view(self, view: str) -> None:
        if view not in ("aligned", "photo"):
            raise ValueError(f"view must be 'aligned' or 'photo', got {view!r}")
        if view == "photo" and (self.doc is None or not self.doc.source.can_paste_back):
            self.status.emit("This face has no source photo to paste into")
            return
        if view != self.view:
            self.view = view
            self.frames.renew()
            self._render_all()

    def logical_size(self) -> tuple[int, int]:
        placement = self.doc.source.placement if self.doc is not None else None
        if self.view == "photo" and placement is not None:
            return placement.size
        return (1024, 1024)

    def _render_all(self) -> None:
        self._render_now()
        self._render_before()

    def _render_now(self) -> None:
        """A preview now; the full size after ``settle_ms`` (or on release when dragging).

        During a drag the preview is ``preview_size``² (256²) when the renderer is free; when it
        is still busy with the last move, ``quick_size``² (128², half the wait; the running render
        is abandoned for it), and ``preview_size``² again once the drag pauses for ``sharpen_ms``."""
        if self.doc is None or self.bridge is None:
            return
        busy = self.dragging and not self.bridge.renderer.wait_idle(0)
        self._request(self.quick_size if busy else self.preview_size)
        if self.dragging:
            self._sharpen.start(self.sharpen_ms)
        else:
            self._settle.start(self.settle_ms)

    def _render_full(self) -> None:
        if self.doc is not None and self.bridge is not None:
            self._request(self.full_size)

    def _request(self, size: int) -> int:
        doc, state = self.doc, self.doc.state  # type: ignore[union-attr]
        post = self._post(size, state)
        draft = size < self.full_size  # a preview: nothing slow is measured for it (Document.code)
        return self.bridge.request(lambda: doc.scene(state, draft=draft), size, post=post,  # type: ignore[union-attr]
                                   tag=(self.frames.tag, state),
                                   generator_for=lambda g: doc.generator_for(g, state))

    def _post(self, size: int, state: EditState) -> Callable[[np.ndarray], np.ndarray] | None:
        if self.view != "photo" or self.doc is None:
            return None
        doc = self.doc
        side = None if size >= self.full_size else PREVIEW_PHOTO_SIDE
        return lambda face: doc.compose(face, max_side=side, state=state)

    def _render_before(self) -> None:
        """The original: the aligned photo or the photo itself, or the unedited generated face."""
        doc = self.doc
        if doc is None or self.bridge is None:
            return
        if doc.source.kind == "photo" and doc.source.placement is not None:
            tag, view = self.frames.tag, self.view

            def job(g: Any) -> np.ndarray:
                return doc.source.photo() if view == "photo" else doc.source.aligned()

            self._submit(job, lambda img: self.beforeReady.emit(img) if self.frames.current(tag) else None,
                         "Cannot show the original")
        else:
            self.bridge.request(doc.base, self.full_size, channel="before", tag=(self.frames.tag, None),
                                generator_for=lambda g: doc.generator_for(g, EditState()))

    def _on_frame(self, frame: Frame) -> None:
        tag = frame.tag[0] if isinstance(frame.tag, tuple) else None
        if frame.channel == "before":
            if self.frames.current(tag):
                self.beforeReady.emit(frame.image)
            return
        if not self.frames.accept(tag, frame.seq):
            return  # for a previous document or view, or older than what is on screen
        self.last_frame = frame
        if frame.size >= self.full_size:
            self.last_full = frame
            self._pose_timer.start()
        self.frameReady.emit(frame)

    def _note_identity_pose(self) -> None:
        """Once the full frame of an identity setting has stayed on screen ``pose_note_ms``: a
        status-bar hint when its head pose is off the attribute face's
        (``Session.identity_pose_note``: ~1 s on the render thread, so never during a drag)."""
        if self.doc is None or self.dragging:
            return
        state = self.doc.state
        if self._full_frame(state) is None or not state.identity.active or state.identity is self._pose_noted:
            return
        self._pose_noted = state.identity
        self._submit(lambda g: self.core.identity_pose_note(state),
                     lambda note: self.status.emit(f"Identity: {note}") if note else None, "Identity")

    def _full_frame(self, state: EditState) -> Frame | None:
        """The last full-size frame if it shows ``state`` (a preview's code may be a draft:
        ``Document.code``), else None."""
        f = self.last_full
        return f if f is not None and f.tag[1] == state else None

    def _on_render_failed(self, seq: int, channel: str, exc: BaseException) -> None:
        self.error.emit(*describe_error(exc, ""))

    def _submit(self, job: Callable[[Any], Any], on_done: Callable[[Any], None], title: str) -> None:
        if self.bridge is None:
            return
        self.bridge.submit(job, on_done, lambda exc: self.error.emit(title, *describe_error(exc, "")[1:]))

    # ================================================================= export
    def export(self, path: str | Path, mode: str, on_done: Callable[[Path], None] | None = None) -> None:
        """Write the edited face (``mode`` "aligned" or "photo") on the render thread."""
        if self.doc is None:
            return
        state = self.doc.state
        full = self._full_frame(state)
        face = full.face if full is not None and full.size == 1024 else None

        def done(p: Path) -> None:
            self.status.emit(f"Exported {p}")
            if on_done:
                on_done(p)

        self._submit(lambda g: self.core.export(path, mode, aligned_rgb=face, state=state), done, "Export failed")

    def export_code(self, path: str | Path) -> None:
        """Write the edited W+ code (and placement, tuned weights) as ``.npz`` on the render
        thread (the code may need the identity mapper)."""
        if self.doc is None:
            return
        state = self.doc.state
        self._submit(lambda g: self.core.export_code(path, state),
                     lambda p: self.status.emit(f"Exported the code to {p}"), "Export failed")


def _render(g: Any, code: np.ndarray, size: int) -> np.ndarray:
    from latentstudio.render import synthesize_uint8

    return synthesize_uint8(g, np.array(code, np.float32), size)


__all__ = ["EditorSession", "PendingPhoto", "IMAGE_SUFFIXES"]
