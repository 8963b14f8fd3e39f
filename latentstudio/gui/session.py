"""The editor's controller: one Document, its undo stack, the renderer and the long tasks.

No widgets here. The UI thread only swaps immutable states and posts requests; the edited code
(``Document.code``) is computed on the render thread, alignment and inversion on task threads.

Render policy: while a slider is dragged, previews (``preview_size``², 128 on CPU, 256 on CUDA) are rendered;
on release, and ``settle_ms`` after any other change, the full-size image. Frames are shown only
if newer than what is on screen and meant for the current document and view.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoStack

from latentstudio.codes import CODE_SUFFIXES
from latentstudio.document import (
    Document,
    DocumentError,
    EditState,
    IdentityRefinement,
    OtherFace,
    RepairOffset,
    identity_available,
    identity_stage,
    import_directions,
    load_default_directions,
)
from latentstudio.gui.commands import StateCommand
from latentstudio.gui.dialogs import describe_error
from latentstudio.gui.workers import RenderBridge, Task
from latentstudio.project import PROJECT_SUFFIX, Autosave, load_project, save_project
from latentstudio.render import Frame

DEMO_SEED, DEMO_PSI = 42, 0.7
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic"}
def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


PREVIEW_PHOTO_SIDE = 1600  # pasted-back previews are composed into a photo this large at most


def _generator_factory(device: str) -> Callable[[], Any]:
    def load() -> Any:
        from latentstudio.models.generator import Generator

        return Generator.load(None if device == "auto" else device)

    return load


class EditorSession(QObject):
    documentChanged = Signal()  # a new document: rebuild panels
    stateChanged = Signal()  # the edit state changed (edit, undo, redo)
    frameReady = Signal(object)  # Frame to show (main channel, current document and view)
    beforeReady = Signal(object)  # (H,W,3) uint8 "before" image for the current view
    generatorReady = Signal()
    modelsMissing = Signal(str)  # the generator could not load because models are missing
    error = Signal(str, str, str)  # title, message (the cause), details
    status = Signal(str)
    taskStarted = Signal(str)  # task label
    taskProgress = Signal(int, int, object)  # step, total, preview (H,W,3) uint8 | None
    taskEnded = Signal(str)  # "done" | "cancelled" | "failed"
    facesFound = Signal(object)  # PendingPhoto: several faces, the UI lets the user pick
    otherChanged = Signal(object)  # thumbnail (H,W,3) uint8 of the second face, or None
    directionsChanged = Signal()

    def __init__(self, *, device: str = "auto", generator_factory: Callable[[], Any] | None = None,
                 autosave: Autosave | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.device = device
        self._factory = generator_factory
        self.undo = QUndoStack(self)
        self.doc: Document | None = None
        self.directions_note: str | None = None
        self.view = "aligned"  # or "photo"
        # drag previews: 128² on the CPU (a third of the 256² cost, see bench/RESULTS.md), 256² on CUDA
        self.preview_size = 256 if _cuda_available() else 128
        self.full_size = 1024
        self.settle_ms = 250
        self.invert_preset = "fast"
        self.invert_steps: int | None = None
        self.tune_steps = 0  # "High fidelity": pivotal tuning steps after a photo's inversion (0: off)
        self.project_path: Path | None = None
        self.last_frame: Frame | None = None
        self.last_full: Frame | None = None
        self.task: Task | None = None
        self._old_tasks: list[Task] = []
        self._task_callback: Callable[[Any], None] = lambda result: None
        self._generation = itertools.count(1)
        self._doc_tag = 0
        self._shown_seq = 0
        self._drag_key: object = None
        self._drags = itertools.count(1)
        self._inv_gen: Any = None
        self._inv_lock = threading.Lock()
        self._small_photo: tuple[int, Any] | None = None
        self._settle = QTimer(self, singleShot=True, interval=self.settle_ms)
        self._settle.timeout.connect(self._render_full)
        self.autosave = autosave or Autosave()
        self._autosave_dirty = False
        self._autosave_timer = QTimer(self, interval=30_000)
        self._autosave_timer.timeout.connect(self.write_autosave)
        self._autosave_timer.start()
        self.bridge: RenderBridge | None = None
        self._retired: list[RenderBridge] = []  # stopped bridges whose thread may still be finishing
        self.ready = False

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
        factory = self._factory or _generator_factory(self.device)
        self.bridge = RenderBridge(factory, self)
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

    def set_device(self, device: str) -> None:
        if device != self.device:
            self.device = device
            with self._inv_lock:
                self._inv_gen = None
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
        from latentstudio.models.fetch import FetchError

        if isinstance(exc, FetchError):
            self.modelsMissing.emit(str(exc))
        else:
            self.error.emit("Cannot start the renderer", str(exc), repr(exc))

    # ================================================================= documents
    def new_demo(self, seed: int = DEMO_SEED, psi: float = DEMO_PSI, only_if_empty: bool = False) -> None:
        """A generated face (no photo needed). ``only_if_empty``: unless a document arrived
        meanwhile (a recovered session, a photo given on the command line)."""
        dirs, note = load_default_directions()
        self.directions_note = note

        def job(g: Any) -> Document:
            return Document.from_seed(g, seed, psi, dirs)

        def done(doc: Document) -> None:
            if not (only_if_empty and self.doc is not None):
                self.set_document(doc, None)

        self._submit(job, done, "Cannot create the demo face")

    def set_document(self, doc: Document, project_path: Path | None) -> None:
        self.doc = doc
        self.project_path = project_path
        self.undo.clear()
        self._doc_tag = next(self._generation)
        self._shown_seq = 0
        self.last_frame = self.last_full = None
        self._small_photo = None
        if self.view == "photo" and not doc.source.can_paste_back:
            self.view = "aligned"
        self._autosave_dirty = True
        self.documentChanged.emit()
        self.stateChanged.emit()
        self.otherChanged.emit(None)
        if doc.state.identity.other is not None:
            self._thumbnail_other(doc.state.identity.other)
        for w in doc.warnings:
            self.status.emit(w)
        if doc.tuning:
            self.status.emit("High fidelity: this face renders with generator weights tuned to its photo")
        self._render_all()

    def open_path(self, path: str | Path) -> None:
        """Open a project (``.lsproj``), a code file (``.npz``/``.npy``) or a photo, by extension."""
        p = Path(path)
        if p.suffix.lower() == PROJECT_SUFFIX:
            self.open_project(p)
        elif p.suffix.lower() in CODE_SUFFIXES:
            self.open_code(p)
        else:
            self.open_photo(p)

    def open_code(self, path: str | Path) -> None:
        """Open a code file of ``latentstudio invert`` (with its photo and tuned weights, when
        it has them) as a new, unsaved document."""
        p = Path(path)
        dirs, note = load_default_directions()
        self.directions_note = note

        def work(report: Callable[[Any], None], cancelled: Callable[[], bool]) -> Document:
            return Document.from_code_file(p, dirs)

        self._run_task(f"Opening {p.name}", work, lambda doc: self.set_document(doc, None))

    def open_project(self, path: str | Path, recovered: bool = False) -> None:
        """Read a ``.lsproj`` on a task thread (it may rebuild the code through the mapper)."""
        p = Path(path)
        dirs, note = load_default_directions()
        self.directions_note = note

        def work(report: Callable[[Any], None], cancelled: Callable[[], bool]) -> Document:
            return load_project(p, dirs)

        def done(doc: Document) -> None:
            if recovered:
                self.set_document(doc, None)  # recovered work is unsaved
                self.undo.resetClean()
                p.unlink(missing_ok=True)
            else:
                self.set_document(doc, p)

        self._run_task(f"Opening {p.name}", work, done)

    def save_project(self, path: str | Path) -> bool:
        if self.doc is None:
            return False
        p = Path(path)
        if p.suffix.lower() != PROJECT_SUFFIX:
            p = p.with_name(p.name + PROJECT_SUFFIX)
        frame = self.last_frame
        code = frame.code if frame is not None and frame.tag[1] == self.doc.state else None
        try:
            save_project(self.doc, p, code=code)  # the renderer's code: no model run here
        except DocumentError as exc:
            self.error.emit("Cannot save the project", str(exc), "")
            return False
        self.project_path = p
        self.undo.setClean()
        self.status.emit(f"Saved {p}")
        return True

    def recover(self, path: Path) -> None:
        """Open an autosave left by a crashed session; it is deleted once it is open."""
        self.open_project(path, recovered=True)

    def write_autosave(self) -> None:
        """Snapshot the document to this session's autosave file (on a thread)."""
        if self.doc is None or not self._autosave_dirty:
            return
        self._autosave_dirty = False
        doc = self.doc

        def write() -> None:
            try:
                self.autosave.write(doc)
            except Exception:  # noqa: BLE001 - autosave must never disturb the user
                self._autosave_dirty = True

        threading.Thread(target=write, name="latentstudio-autosave", daemon=True).start()

    # ================================================================= photos
    def open_photo(self, path: str | Path, target: str = "document") -> None:
        """Load, detect, (let the user pick,) align and invert a photo. ``target`` "other" makes
        it the identity panel's second face instead of a new document."""
        p = Path(path)

        def detect(report: Callable[[Any], None], cancelled: Callable[[], bool]) -> PendingPhoto:
            from latentstudio.face.detect import detect_faces
            from latentstudio.face.image_io import load_image

            report((0, 0, None))
            rgb = load_image(p)
            if cancelled():
                raise _Cancelled()
            return PendingPhoto(p, rgb, detect_faces(rgb), target)

        self._run_task(f"Finding faces in {p.name}", detect, self._faces_detected)

    def _faces_detected(self, pending: PendingPhoto) -> None:
        confident = [f for f in pending.faces if f.confident]
        if len(confident) > 1:
            self.facesFound.emit(pending)
        else:
            self.use_face(pending, 0)

    def face_pick_cancelled(self) -> None:
        self._end_task("cancelled")
        self.status.emit("No face chosen; the document is unchanged")

    def use_face(self, pending: PendingPhoto, index: int) -> None:
        """Align and invert face ``index`` of a detected photo (after the picker)."""
        from latentstudio.face.detect import FaceError, pick_face

        try:
            face = pick_face(pending.faces, index)
        except FaceError as exc:
            self.error.emit("No usable face", str(exc), "")
            return
        preset, steps, device = self.invert_preset, self.invert_steps, self.device
        # the second face of the identity panel is only a code: tuned weights would not be used
        tune = self.tune_steps if pending.target == "document" else 0
        dirs = list(self.doc.directions.values()) if self.doc else load_default_directions()[0]

        def work(report: Callable[[Any], None], cancelled: Callable[[], bool]) -> Any:
            from latentstudio.face.align import align_face
            from latentstudio.tune import TuneSettings, invert_and_tune

            alignment = align_face(pending.rgb, face)
            report((0, 1, alignment.image))
            inv, tuning = invert_and_tune(alignment.image, preset=preset, steps=steps,
                                          tune=TuneSettings(steps=tune) if tune else None,
                                          generator=self._inversion_generator(device), cancelled=cancelled,
                                          progress=lambda pr: report((pr.step, pr.total, pr.preview)))
            if pending.target == "other":
                return OtherFace(inv.w_plus, pending.path.name, {"kind": "photo", "path": str(pending.path),
                                                                 "face_index": index})
            return Document.from_photo(pending.path, alignment, face.landmarks, inv.w_plus, face_index=index,
                                       photo=pending.rgb, directions=dirs,
                                       tuning=tuning.deltas if tuning else None)

        def done(result: Any) -> None:
            if isinstance(result, OtherFace):
                self.set_other(result)
            else:
                self.set_document(result, None)

        self._run_task(f"Inverting {pending.path.name}", work, done)

    def set_high_fidelity(self, on: bool) -> None:
        """Photos opened from now on are also pivotally tuned (``latentstudio.tune``)."""
        from latentstudio.tune import TuneSettings

        self.tune_steps = TuneSettings().steps if on else 0

    def _inversion_generator(self, device: str) -> Any:
        """A Generator for the inversion thread (separate from the renderer's)."""
        with self._inv_lock:
            if self._inv_gen is None:
                self._inv_gen = (self._factory or _generator_factory(device))()
            return self._inv_gen

    # ================================================================= tasks
    def _run_task(self, label: str, fn: Callable[..., Any], done: Callable[[Any], None]) -> None:
        if self.task is not None and self.task.running():
            self.error.emit("Busy", f"Wait for “{self.task.name}” to finish or cancel it first.", "")
            return
        task = Task(label, fn, self)
        task.progress.connect(self._task_progress)  # bound methods: queued to the GUI thread
        task.finished.connect(self._task_done)
        task.failed.connect(self._task_failed)
        self.task = task
        self._task_callback = done
        self.taskStarted.emit(label)
        task.start()

    def cancel_task(self) -> None:
        if self.task is not None and self.task.running() and not self.task.cancelled:
            self.task.cancel()
            self.status.emit("Cancelling…")

    def _task_progress(self, x: tuple[int, int, Any]) -> None:
        if self.sender() is self.task:
            self.taskProgress.emit(*x)

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
        self._end_task("done")
        try:
            self._task_callback(result)
        except Exception as exc:  # noqa: BLE001 - e.g. a document that cannot take the result
            self.error.emit(*describe_error(exc, ""))

    def _end_task(self, how: str) -> None:
        self.taskEnded.emit(how)

    def _task_failed(self, exc: BaseException, details: str) -> None:
        from latentstudio.invert import Cancelled

        self._finish_task()
        if isinstance(exc, (Cancelled, _Cancelled)):
            self._end_task("cancelled")
            self.status.emit("Cancelled; the document is unchanged")
            return
        self._end_task("failed")
        self.error.emit(*describe_error(exc, details))

    def fetch_models(self) -> None:
        """Run ``latentstudio models fetch`` on a task thread, then restart the renderer."""
        def work(report: Callable[[Any], None], cancelled: Callable[[], bool]) -> list[str]:
            from latentstudio.models.fetch import fetch

            return fetch(log=lambda msg: report((0, 0, msg)), cancelled=cancelled)

        self._run_task("Fetching models", work, lambda keys: self._start_bridge())

    # ================================================================= editing
    def push(self, after: EditState, text: str, merge_key: object = None) -> None:
        """Make ``after`` the current state as an undoable step."""
        if self.doc is None or after == self.doc.state:
            return
        try:
            self.doc.check_state(after)
        except DocumentError as exc:
            self.error.emit("Cannot apply the edit", str(exc), "")
            return
        self.undo.push(StateCommand(self._apply, self.doc.state, after, text, merge_key))

    def _apply(self, state: EditState) -> None:
        """Called by the undo commands."""
        assert self.doc is not None
        self.doc.set_state(state)
        self._autosave_dirty = True
        self.stateChanged.emit()
        self._render_now()

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
        self._render_full()

    @property
    def dragging(self) -> bool:
        return self._drag_key is not None

    def set_value(self, name: str, value: float) -> None:
        if self.doc is None:
            return
        label = self.doc.directions[name].label
        key = (self._drag_key, name) if self._drag_key else None
        self.push(self.doc.state.with_value(name, value), f"{label} {value:+.2f}", key)

    def set_keep(self, name: str, on: bool) -> None:
        if self.doc is not None:
            label = self.doc.directions[name].label
            self.push(self.doc.state.with_keep(name, on), f"{'Keep' if on else 'Unlock'} {label}")

    def set_layers(self, name: str, layers: tuple[int, int] | None) -> None:
        if self.doc is None:
            return
        d = self.doc.directions[name]
        if layers is not None and tuple(layers) == tuple(d.layers):
            layers = None
        key = (self._drag_key, "layers", name) if self._drag_key else None
        text = f"Slots of {d.label}: " + ("default" if layers is None else f"{layers[0]}–{layers[1]}")
        self.push(self.doc.state.with_layers(name, layers), text, key)

    def reset(self, name: str) -> None:
        if self.doc is not None:
            st = self.doc.state.with_value(name, 0.0).with_layers(name, None)
            self.push(st, f"Reset {self.doc.directions[name].label}")

    def reset_all(self) -> None:
        if self.doc is not None:
            self.push(self.doc.state.reset_sliders(), "Reset all sliders")

    def can_repair(self) -> str | None:
        """None when "Repair artifacts" can run, else why not."""
        from latentstudio.edit.boundaries import BoundaryError
        from latentstudio.edit.repair import quality_boundary

        if self.doc is None:
            return "no face is open"
        try:
            quality_boundary(self.doc.directions)
        except BoundaryError as exc:
            return str(exc)
        return None

    def repair_artifacts(self) -> None:
        """Walk the edited code along the quality direction until the render looks clean (a
        task: progress and Cancel); the result is one undoable step, redone from scratch if a
        repair is already applied."""
        reason = self.can_repair()
        if reason is not None:
            self.error.emit("Cannot repair artifacts", reason, "")
            return
        doc = self.doc
        assert doc is not None
        plain = doc.state.with_repair(None)
        code = doc.code(plain)
        dirs, device = doc.directions, self.device

        def work(report: Callable[[Any], None], cancelled: Callable[[], bool]) -> Any:
            from latentstudio.edit.repair import repair

            g = doc.generator_for(self._inversion_generator(device), plain)  # judge what is shown
            result = repair(code, dirs, generator=g, cancelled=cancelled,
                            progress=lambda done, total: report((done, total, None)))
            if cancelled():
                raise _Cancelled()
            return result

        def done(r: Any) -> None:
            if self.doc is not doc:
                return
            scores = f"quality score {r.score_before:+.3f} → {r.score_after:+.3f} (clean ≥ {r.threshold:+.3f})"
            if r.alpha == 0.0:
                self.status.emit("Nothing to repair: " + (f"the face already looks clean, {scores}"
                                                          if r.score_before >= r.threshold else
                                                          f"no step improved it, {scores}"))
                if doc.state.repair is not None:
                    self.push(doc.state.with_repair(None), "Remove artifact repair")
                return
            offset = RepairOffset(r.alpha, r.direction, r.score_before, r.score_after)
            self.push(doc.state.with_repair(offset), f"Repair artifacts {r.alpha:+.2f}")
            self.status.emit(f"Repaired: moved {r.alpha:.2f} along the quality direction, {scores}")

        self._run_task("Repairing artifacts", work, done)

    def add_directions_from(self, path: str | Path) -> None:
        """Import user directions (.npy/.pt vector or .npz PCA) as new sliders."""
        if self.doc is None:
            return
        try:
            dirs = import_directions(path)
        except DocumentError as exc:
            self.error.emit("Cannot import the direction", str(exc), "")
            return
        taken = set(self.doc.directions)
        self.doc.add_directions(d for d in dirs if d.name not in taken)
        skipped = [d.name for d in dirs if d.name in taken]
        self.directionsChanged.emit()
        self.status.emit(f"Imported {len(dirs) - len(skipped)} direction(s)"
                         + (f"; already present: {', '.join(skipped)}" if skipped else ""))

    # -- identity
    def identity_reason(self) -> str | None:
        return identity_available()

    def set_identity(self, text: str, **changes: Any) -> None:
        if self.doc is None:
            return
        key = (self._drag_key, "identity", tuple(changes)) if self._drag_key else None
        self.push(self.doc.state.with_identity(**changes), text, key)

    def set_amount(self, key: str, value: float) -> None:
        """An identity-panel amount: "id_alpha", "attr_alpha" or "deid_strength"."""
        self.set_identity(_AMOUNT_TEXT[key].format(value), **{key: value})

    def swap_roles(self) -> None:
        if self.doc is not None and self.doc.state.identity.other is not None:
            self.push(self.doc.state.swapped_roles(), "Swap identity roles")

    def deidentify(self) -> None:
        if self.doc is not None:
            seed = int(np.random.default_rng().integers(1, 2**31 - 1))
            self.set_identity("De-identify", deid_strength=1.0, deid_seed=seed)

    def can_refine_identity(self) -> str | None:
        """None when "Refine" can run on the identity panel's blend, else why not."""
        if self.doc is None:
            return "no face is open"
        ident = self.doc.state.identity
        if ident.other is None or not (ident.id_alpha or ident.attr_alpha):
            return "load a second face and blend it first"
        if ident.deid_strength:
            return "refine works on a blend; set De-identify's strength to 0 first"
        return None

    def refine_identity(self, steps: int = 40) -> None:
        """Optimise the panel's blend against the real identity loss and the attribute face's
        landmarks and surroundings (a task: progress and Cancel); one undoable step."""
        reason = self.can_refine_identity()
        if reason is not None:
            self.error.emit("Cannot refine", reason, "")
            return
        doc = self.doc
        assert doc is not None
        ident = doc.state.identity
        state = doc.state.with_identity()  # the same settings, unrefined
        other = ident.other
        assert other is not None
        base = doc.base

        def work(report: Callable[[Any], None], cancelled: Callable[[], bool]) -> Any:
            from latentstudio.identity import api
            from latentstudio.identity.data import TrainingCancelled

            start = identity_stage(base, state.identity)
            who, attrs = api.blend_sources(base, other.code, ident.id_alpha, ident.attr_alpha)
            try:
                out = api.refine_transfer(start, attrs, identity_code=who, steps=steps, cancelled=cancelled,
                                          progress=lambda p: report((p.step, p.total, None)))
            except TrainingCancelled:
                raise _Cancelled() from None
            return out - start

        def done(offset: Any) -> None:
            if self.doc is not doc or doc.state.with_identity() != state:
                self.status.emit("Refinement dropped: the identity panel changed meanwhile")
                return
            self.set_identity(f"Refine identity ({steps} steps)", refined=IdentityRefinement(offset, steps))

        self._run_task("Refining the identity blend", work, done)

    def set_other(self, other: OtherFace | None) -> None:
        if self.doc is None:
            return
        ident = self.doc.state.identity
        if other is None:
            self.push(self.doc.state.with_identity(other=None, id_alpha=0.0, attr_alpha=0.0),
                      "Remove second face")
        else:
            amounts = {"id_alpha": 1.0, "attr_alpha": 0.0} if ident.role == "identity" else \
                {"id_alpha": 0.0, "attr_alpha": 1.0}
            self.push(self.doc.state.with_identity(other=other, **amounts), f"Second face: {other.label}")
        self._thumbnail_other(other)

    def open_other(self, path: str | Path) -> None:
        """The identity panel's second face from a photo (aligned and inverted) or a code file."""
        p = Path(path)
        if p.suffix.lower() not in CODE_SUFFIXES:
            self.open_photo(p, target="other")
            return

        def work(report: Callable[[Any], None], cancelled: Callable[[], bool]) -> OtherFace:
            from latentstudio.codes import load_code

            return OtherFace(load_code(p), p.name, {"kind": "code", "path": str(p.resolve())})

        self._run_task(f"Opening {p.name}", work, self.set_other)

    def clear_other(self) -> None:
        self.set_other(None)

    def use_generated_other(self, seed: int, psi: float = DEMO_PSI) -> None:
        def job(g: Any) -> OtherFace:
            w = g.seed_w(seed, psi).detach().cpu().numpy().astype(np.float32)
            return OtherFace(np.repeat(w[None], 23, 0), f"seed {seed}", {"kind": "seed", "seed": seed, "psi": psi})

        self._submit(job, self.set_other, "Cannot generate the face")

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
            self._doc_tag = next(self._generation)
            self._render_all()

    def logical_size(self) -> tuple[int, int]:
        if self.view == "photo" and self.doc is not None and self.doc.source.photo_size:
            return tuple(self.doc.source.photo_size)  # type: ignore[return-value]
        return (1024, 1024)

    def _render_all(self) -> None:
        self._render_now()
        self._render_before()

    def _render_now(self) -> None:
        """A preview now; the full size after ``settle_ms`` (or on release when dragging)."""
        if self.doc is None or self.bridge is None:
            return
        self._request(self.preview_size)
        if not self.dragging:
            self._settle.start(self.settle_ms)

    def _render_full(self) -> None:
        if self.doc is not None and self.bridge is not None:
            self._request(self.full_size)

    def _request(self, size: int) -> int:
        doc, state = self.doc, self.doc.state  # type: ignore[union-attr]
        post = self._post(size)
        return self.bridge.request(lambda: doc.code(state), size, post=post,  # type: ignore[union-attr]
                                   tag=(self._doc_tag, state),
                                   generator_for=lambda g: doc.generator_for(g, state))

    def _post(self, size: int) -> Callable[[np.ndarray], np.ndarray] | None:
        if self.view != "photo" or self.doc is None:
            return None
        doc = self.doc
        if size >= self.full_size:
            return doc.compose
        small = self._small_composer(doc)
        return small

    def _small_composer(self, doc: Document) -> Callable[[np.ndarray], np.ndarray]:
        """Pastes previews into a reduced copy of the photo (fast while dragging)."""
        from latentstudio.face.pasteback import paste_back

        def compose(face: np.ndarray) -> np.ndarray:
            import cv2

            cached = self._small_photo
            if cached is None or cached[0] != id(doc):
                photo = doc.source.photo()
                h, w = photo.shape[:2]
                s = min(1.0, PREVIEW_PHOTO_SIDE / max(h, w))
                small = cv2.resize(photo, (max(1, round(w * s)), max(1, round(h * s))),
                                   interpolation=cv2.INTER_AREA) if s < 1 else photo
                sx, sy = small.shape[1] / w, small.shape[0] / h
                scale = lambda pts: (np.asarray(pts, np.float64) + 0.5) * (sx, sy) - 0.5  # noqa: E731
                cached = (id(doc), (small, scale(doc.source.quad), scale(doc.source.landmarks)))
                self._small_photo = cached
            small, quad, lms = cached[1]
            return paste_back(small, face, quad, lms)

        return compose

    def _render_before(self) -> None:
        """The original: the aligned photo or the photo itself, or the unedited generated face."""
        doc = self.doc
        if doc is None or self.bridge is None:
            return
        if doc.source.kind == "photo" and doc.source.landmarks is not None:
            tag, view = self._doc_tag, self.view

            def job(g: Any) -> np.ndarray:
                return doc.source.photo() if view == "photo" else doc.source.aligned()

            self._submit(job, lambda img: self.beforeReady.emit(img) if tag == self._doc_tag else None,
                         "Cannot show the original")
        else:
            self.bridge.request(doc.base, self.full_size, channel="before", tag=(self._doc_tag, None),
                                generator_for=lambda g: doc.generator_for(g, EditState()))

    def _on_frame(self, frame: Frame) -> None:
        if not isinstance(frame.tag, tuple) or frame.tag[0] != self._doc_tag:
            return  # for a previous document or view
        if frame.channel == "before":
            self.beforeReady.emit(frame.image)
            return
        if frame.seq <= self._shown_seq:
            return  # older than what is on screen
        self._shown_seq = frame.seq
        self.last_frame = frame
        if frame.size >= self.full_size:
            self.last_full = frame
        self.frameReady.emit(frame)

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
        doc, state = self.doc, self.doc.state
        full = self.last_full if self.last_full and self.last_full.tag[1] == state else None
        face = full.face if full is not None and full.size == 1024 else None

        def job(g: Any) -> Path:
            doc.export(path, g, mode, aligned_rgb=face, state=state)
            return Path(path)

        def done(p: Path) -> None:
            self.status.emit(f"Exported {p}")
            if on_done:
                on_done(p)

        self._submit(job, done, "Export failed")

    def export_code(self, path: str | Path) -> None:
        """Write the edited W+ code (and alignment, tuned weights) as ``.npz`` on the render
        thread (the code may need the identity mapper)."""
        if self.doc is None:
            return
        doc, state = self.doc, self.doc.state

        def job(g: Any) -> Path:
            doc.export_code(path, state)
            return Path(path)

        self._submit(job, lambda p: self.status.emit(f"Exported the code to {p}"), "Export failed")


_AMOUNT_TEXT = {"id_alpha": "Identity amount {:.2f}", "attr_alpha": "Attribute amount {:.2f}",
                "deid_strength": "De-identify strength {:.2f}"}


class PendingPhoto:
    """A loaded photo and its detected faces, waiting for the user to pick one."""

    def __init__(self, path: Path, rgb: np.ndarray, faces: list[Any], target: str) -> None:
        self.path, self.rgb, self.faces, self.target = path, rgb, faces, target


class _Cancelled(Exception):
    pass


def _render(g: Any, code: np.ndarray, size: int) -> np.ndarray:
    from latentstudio.render import synthesize_uint8

    return synthesize_uint8(g, np.array(code, np.float32), size)


__all__ = ["EditorSession", "PendingPhoto", "IMAGE_SUFFIXES"]
