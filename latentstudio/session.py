"""The editing session, headless: what the app, the CLI and the tests drive.

One ``Session`` holds the open ``Document``, its undo ``History``, the identity panel's state
(inside the document's ``EditState``) and the ``Runtime`` that owns the models. Everything the
app's menus and panels do is a method here; the Qt layer (``latentstudio.gui.session``) only
turns them into signals, runs ``Task``s on threads and renders frames.

Quick operations change the session at once and return a message (or raise ``DocumentError``).
Long ones (a photo's faces, inversion, opening files, repair, refine, export) are ``Task``s:

    task = session.repair_task()
    result = task.run(progress, cancelled)   # any thread; reads only what the task captured
    message = task.finish(result)            # the thread that owns the session

so a task started on one document never writes into another, and cancelling (``progress.Cancelled``)
leaves the session unchanged.

**Where a photo becomes a code:** ``photo_task`` (load, detect) → ``face_task`` (align, invert,
tune) → a ``Document`` whose ``Source.placement`` says where the face sits in the photo.
**Where the face is pasted back:** ``Placement.paste`` (``latentstudio.face.placement``), through
``Document.compose`` and ``Document.export``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentstudio.codes import CODE_SUFFIXES
from latentstudio.document import (
    Document,
    DocumentError,
    EditState,
    IdentityRefinement,
    OtherFace,
    RepairOffset,
    import_directions,
    identity_stage,
    load_default_directions,
)
from latentstudio.history import History
from latentstudio.latent import NUM_SLOTS
from latentstudio.photo import PhotoFaces, find_faces, to_code
from latentstudio.progress import CancelFn, Progress, ProgressFn, report
from latentstudio.project import PROJECT_SUFFIX, load_project, save_project
from latentstudio.runtime import Runtime
from latentstudio.video import VIDEO_SUFFIXES

DEMO_SEED, DEMO_PSI = 42, 0.7
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic"}
AMOUNT_TEXT = {"id_alpha": "Identity amount {:.2f}", "attr_alpha": "Attribute amount {:.2f}",
               "deid_strength": "De-identify strength {:.2f}"}


@dataclass
class Task:
    """Long work: ``run(progress, cancelled)`` on any thread, then ``finish(result)`` on the
    session's own thread (returns a status message or None)."""

    label: str
    run: Callable[[ProgressFn | None, CancelFn | None], Any]
    finish: Callable[[Any], str | None] = field(default=lambda result: None)

    def __call__(self, progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> str | None:
        """Run and finish here (the CLI and the tests)."""
        return self.finish(self.run(progress, cancelled))


class FrameGate:
    """Which rendered frames may reach the screen. Each document and view gets a new ``tag``
    (``renew``); a frame is shown only if it carries the current tag and is newer (``seq``) than
    the one on screen, so a slow render of an old state never overwrites a newer one."""

    def __init__(self) -> None:
        self._tags = itertools.count(1)
        self.tag = 0
        self.shown = 0

    def renew(self) -> int:
        """A new document or view: frames rendered for the old one are dropped from now on."""
        self.tag = next(self._tags)
        return self.tag

    def current(self, tag: object) -> bool:
        return tag == self.tag

    def accept(self, tag: object, seq: int) -> bool:
        """True (and remember ``seq``) when a frame of ``tag`` and ``seq`` should be shown."""
        if tag != self.tag or seq <= self.shown:
            return False
        self.shown = seq
        return True


@dataclass
class VideoContext:
    """The open clip: its file and decoder facts, the followed face, the frame shown."""

    path: Path
    clip: Any  # latentstudio.video.Clip
    track: Any  # latentstudio.video.Track
    frame: int


@dataclass
class PendingPhoto(PhotoFaces):
    """A photo's faces waiting for one to be chosen (``target``: "document" opens it, "other"
    makes it the identity panel's second face)."""

    target: str = "document"


def chosen_index(pending: PhotoFaces, index: int | None) -> int:
    """The index of the face ``pick_face`` chooses (FaceError when there is none usable)."""
    from latentstudio.face.detect import pick_face

    return pending.faces.index(pick_face(pending.faces, index))


class Session:
    """One document, its history and the models; Qt-free."""

    def __init__(self, runtime: Runtime | None = None) -> None:
        self.runtime = runtime or Runtime()
        self.doc: Document | None = None
        self.project_path: Path | None = None
        self.history = History()
        self.directions_note: str | None = None
        self.invert_preset = "fast"
        self.invert_steps: int | None = None
        self.tune_steps = 0  # "High fidelity": pivotal tuning steps after a photo's inversion (0: off)
        self.early_guess = False  # a photo opens at once as the encoder's guess, then refines (the app)
        self._to_refine: tuple[Document, PendingPhoto, int] | None = None
        self.video: VideoContext | None = None  # set while the document is a frame of a clip

    # ================================================================= models
    def set_runtime(self, runtime: Runtime) -> None:
        """Use other models (another device): the document renders through them from now on."""
        self.runtime = runtime
        if self.doc is not None:
            self.doc.runtime = runtime

    def fetch_task(self) -> Task:
        """Fetch the missing models (``latentstudio models fetch``); the installed keys."""
        def run(progress: ProgressFn | None, cancelled: CancelFn | None) -> list[str]:
            from latentstudio.models.fetch import fetch

            return fetch(progress=progress, cancelled=cancelled)

        return Task("Fetching models", run, lambda keys: f"Installed {', '.join(keys)}" if keys else None)

    @staticmethod
    def models_missing(exc: BaseException) -> bool:
        """Whether ``exc`` says the model files are not installed (offer to fetch them)."""
        from latentstudio.models.fetch import FetchError

        return isinstance(exc, FetchError)

    def set_high_fidelity(self, on: bool) -> None:
        """Photos opened from now on are also pivotally tuned (``latentstudio.tune``)."""
        from latentstudio.tune import TuneSettings

        self.tune_steps = TuneSettings().steps if on else 0

    def _directions(self) -> list[Any]:
        dirs, self.directions_note = load_default_directions()
        return dirs

    # ================================================================= documents
    def set_document(self, doc: Document, project_path: Path | None = None) -> list[str]:
        """Make ``doc`` the open document (a new history); its load warnings are returned."""
        doc.runtime = self.runtime
        self.video = None
        self.doc, self.project_path = doc, project_path
        self.history.clear()
        return list(doc.warnings)

    def demo(self, seed: int = DEMO_SEED, psi: float = DEMO_PSI) -> Document:
        """A generated face (no photo needed)."""
        return Document.from_seed(self.runtime.generator(), seed, psi, self._directions())

    def code_task(self, path: str | Path) -> Task:
        """Open a code file of ``latentstudio invert`` (with its photo and tuned weights)."""
        p, dirs = Path(path), self._directions()
        return Task(f"Opening {p.name}", lambda progress, cancelled: Document.from_code_file(p, dirs),
                    lambda doc: self._opened(doc, None))

    def project_task(self, path: str | Path, recovered: bool = False) -> Task:
        """Read a ``.lsproj`` (rebuilding the code may run the identity mapper). ``recovered``:
        an autosave, opened as unsaved work and then removed."""
        p, dirs, runtime = Path(path), self._directions(), self.runtime

        def finish(doc: Document) -> str | None:
            message = self._opened(doc, None if recovered else p)
            if recovered:
                self.history.reset_clean()
                p.unlink(missing_ok=True)
            return message

        return Task(f"Opening {p.name}", lambda progress, cancelled: load_project(p, dirs, runtime), finish)

    def _opened(self, doc: Document, project_path: Path | None) -> str | None:
        warnings = self.set_document(doc, project_path)
        if doc.tuning:
            warnings.append("High fidelity: this face renders with generator weights tuned to its photo")
        return "; ".join(warnings) or None

    def save_project(self, path: str | Path, code: np.ndarray | None = None) -> Path:
        """Write the document as ``.lsproj`` (the suffix is added when missing); marks it saved.
        ``code``: the already computed edited code of the current state, when there is one."""
        doc = self._doc()
        p = Path(path)
        if p.suffix.lower() != PROJECT_SUFFIX:
            p = p.with_name(p.name + PROJECT_SUFFIX)
        save_project(doc, p, code=code)
        self.project_path = p
        self.history.set_clean()
        return p

    def _doc(self) -> Document:
        if self.doc is None:
            raise DocumentError("no face is open")
        return self.doc

    # ================================================================= photos
    def photo_task(self, path: str | Path, target: str = "document") -> Task:
        """Load a photo and find its faces → ``PendingPhoto`` (the caller lets the user pick
        when several are confident, then runs ``face_task``)."""
        p = Path(path)

        def run(progress: ProgressFn | None, cancelled: CancelFn | None) -> PendingPhoto:
            report(progress, Progress("faces", 0, 0, f"finding faces in {p.name}"))
            found = find_faces(p, cancelled)
            return PendingPhoto(found.path, found.rgb, found.faces, target)

        return Task(f"Finding faces in {p.name}", run)

    def face_task(self, pending: PendingPhoto, index: int | None = None) -> Task:
        """Align face ``index`` of ``pending`` (default: the largest confident one), invert it
        (and tune the generator in high-fidelity mode) → a new document, or the identity panel's
        second face when ``pending.target`` is "other". Raises FaceError when there is no usable
        face."""
        index = chosen_index(pending, index)  # FaceError now, before any work
        preset, steps, runtime = self.invert_preset, self.invert_steps, self.runtime
        # the second face of the identity panel is only a code: tuned weights would not be used
        tune = self.tune_steps if pending.target == "document" else 0
        dirs = list(self.doc.directions.values()) if self.doc else self._directions()

        def run(progress: ProgressFn | None, cancelled: CancelFn | None) -> Document | OtherFace:
            from latentstudio.tune import TuneSettings

            pc = to_code(pending, index, generator=runtime.generator(), preset=preset, steps=steps,
                         tune=TuneSettings(steps=tune) if tune else None, progress=progress, cancelled=cancelled,
                         nets=runtime)
            if pending.target == "other":
                return OtherFace(pc.w_plus, pending.path.name, {"kind": "photo", "path": str(pending.path),
                                                                "face_index": pc.face_index})
            return Document.from_photo(pc, photo=pending.rgb, directions=dirs)

        def finish(result: Document | OtherFace) -> str | None:
            if isinstance(result, OtherFace):
                return self.set_other(result)
            return self._opened(result, None)

        if self.early_guess and pending.target == "document":
            return self._guess_task(pending, index, dirs)
        return Task(f"Inverting {pending.path.name}", run, finish)

    def _guess_task(self, pending: PendingPhoto, index: int, dirs: list[Any]) -> Task:
        """The photo as the encoder's guess, at once; ``inversion_task`` then inverts it."""
        runtime = self.runtime

        def run(progress: ProgressFn | None, cancelled: CancelFn | None) -> Document:
            from latentstudio.photo import first_guess

            return Document.from_photo(first_guess(pending, index, generator=runtime.generator()),
                                       photo=pending.rgb, directions=dirs)

        def finish(doc: Document) -> str | None:
            self._opened(doc, None)
            self._to_refine = (doc, pending, index)
            return "A first guess of the face: refining it in the background (the sliders work meanwhile)"

        return Task(f"Opening {pending.path.name}", run, finish)

    def guess_pending(self) -> bool:
        """A photo opened as a first guess waits for its inversion (``inversion_task``)."""
        return self._to_refine is not None and self._to_refine[0] is self.doc

    def inversion_task(self) -> Task:
        """Invert the first guess's photo with the session's preset, from the preset's own start
        (the encoder's guess for ``quick``, that guess's mean w for ``fast``: the same code as
        ``latentstudio invert``); the result replaces the document's code and keeps its edits and
        history (what was done meanwhile carries over). Cancel keeps the guess."""
        if not self.guess_pending():
            raise DocumentError("no first guess to refine")
        assert self._to_refine is not None
        guess, pending, index = self._to_refine
        preset, steps, runtime, tune = self.invert_preset, self.invert_steps, self.runtime, self.tune_steps

        def run(progress: ProgressFn | None, cancelled: CancelFn | None) -> Any:
            from latentstudio.tune import TuneSettings

            return to_code(pending, index, generator=runtime.generator(), preset=preset, steps=steps,
                           tune=TuneSettings(steps=tune) if tune else None, progress=progress, cancelled=cancelled,
                           nets=runtime)

        def finish(code: Any) -> str | None:
            if self.doc is not guess:
                return "Refinement dropped: another face was opened meanwhile"
            doc = Document.from_photo(code, photo=pending.rgb, directions=guess.directions.values())
            doc.set_state(guess.state)
            doc.runtime = self.runtime
            self.doc, self._to_refine = doc, None  # the history stays: the edits apply to the new code
            return f"Inverted {pending.path.name}"

        return Task(f"Inverting {pending.path.name}", run, finish)

    def open_photo(self, path: str | Path, face: int | None = None, progress: ProgressFn | None = None,
                   cancelled: CancelFn | None = None) -> Document:
        """The whole pipeline at once (no picker): photo → faces → ``face`` (default: the
        largest confident) → a new open document."""
        pending = self.photo_task(path).run(progress, cancelled)
        self.face_task(pending, face)(progress, cancelled)
        return self._doc()

    # ================================================================= edits
    def push(self, after: EditState, text: str, merge_key: object = None) -> bool:
        """Make ``after`` the current state as an undoable step (False: nothing changed).
        DocumentError when the state does not fit the document."""
        doc = self._doc()
        if after == doc.state:
            return False
        doc.check_state(after)
        before = doc.state
        doc.set_state(after)
        self.history.push(before, after, text, merge_key)
        return True

    def undo(self) -> bool:
        return self._restore(self.history.undo())

    def redo(self) -> bool:
        return self._restore(self.history.redo())

    def go_to(self, index: int) -> bool:
        """Undo or redo to ``index`` steps of the history."""
        return self._restore(self.history.go_to(index))

    def _restore(self, state: EditState | None) -> bool:
        if state is None or self.doc is None:
            return False
        self.doc.set_state(state)
        return True

    def set_value(self, name: str, value: float, merge_key: object = None) -> bool:
        doc = self._doc()
        label = doc.directions[name].label
        return self.push(doc.state.with_value(name, value), f"{label} {value:+.2f}",
                         (merge_key, name) if merge_key else None)

    def set_keep(self, name: str, on: bool) -> bool:
        doc = self._doc()
        label = doc.directions[name].label
        return self.push(doc.state.with_keep(name, on), f"{'Keep' if on else 'Unlock'} {label}")

    def set_layers(self, name: str, layers: tuple[int, int] | None, merge_key: object = None) -> bool:
        doc = self._doc()
        d = doc.directions[name]
        if layers is not None and tuple(layers) == tuple(d.layers):
            layers = None
        text = f"Slots of {d.label}: " + ("default" if layers is None else f"{layers[0]}–{layers[1]}")
        return self.push(doc.state.with_layers(name, layers), text, (merge_key, "layers", name) if merge_key else None)

    def reset(self, name: str) -> bool:
        doc = self._doc()
        return self.push(doc.state.with_value(name, 0.0).with_layers(name, None),
                         f"Reset {doc.directions[name].label}")

    def reset_all(self) -> bool:
        return self.push(self._doc().state.reset_sliders(), "Reset all sliders")

    def add_directions_from(self, path: str | Path) -> str:
        """Import user directions (.npy/.pt vector or .npz PCA) as new sliders."""
        doc = self._doc()
        dirs = import_directions(path)
        taken = set(doc.directions)
        doc.add_directions(d for d in dirs if d.name not in taken)
        skipped = [d.name for d in dirs if d.name in taken]
        return (f"Imported {len(dirs) - len(skipped)} direction(s)"
                + (f"; already present: {', '.join(skipped)}" if skipped else ""))

    # ================================================================= repair
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

    def repair_task(self, strength: float | None = None) -> Task:
        """Walk the edited code along the quality direction until the render looks clean, at most
        ``strength`` (default ``repair.DEFAULT_MAX``), judged as it will be shown: inside the face,
        in the unrepaired code's hair and background (``Document.repair_scene``); the result is
        one undoable step, redone from scratch if a repair is already applied."""
        from latentstudio.edit.repair import DEFAULT_MAX

        reason = self.can_repair()
        if reason is not None:
            raise DocumentError(reason)
        doc = self._doc()
        plain = doc.state.with_repair(None)
        runtime = self.runtime

        def run(progress: ProgressFn | None, cancelled: CancelFn | None) -> Any:
            from latentstudio.edit.repair import repair

            g = doc.generator_for(runtime.generator(), plain)  # judge what is shown
            return repair(doc.code(plain), doc.directions, generator=g, scene=doc.repair_scene(plain),
                          cancelled=cancelled, progress=progress,
                          max_strength=DEFAULT_MAX if strength is None else strength)

        def finish(r: Any) -> str | None:
            if self.doc is not doc:
                return None
            scores = f"quality score {r.score_before:+.3f} → {r.score_after:+.3f} (clean ≥ {r.threshold:+.3f})"
            if r.alpha == 0.0:
                if doc.state.repair is not None:
                    self.push(doc.state.with_repair(None), "Remove artifact repair")
                return "Nothing to repair: " + (f"the face already looks clean, {scores}"
                                                if r.score_before >= r.threshold else f"no step improved it, {scores}")
            offset = RepairOffset(r.alpha, r.direction, r.score_before, r.score_after)
            self.push(doc.state.with_repair(offset), f"Repair artifacts {r.alpha:+.2f}")
            return f"Repaired: moved {r.alpha:.2f} along the quality direction, {scores}"

        return Task("Repairing artifacts", run, finish)

    # ================================================================= identity
    def identity_reason(self) -> str | None:
        return self.runtime.identity_reason()

    def identity_pose_note(self, state: EditState) -> str | None:
        """A hint when the identity stage of ``state`` has not kept the attribute face's head
        pose (``Document.identity_pose_note``: ~1 s), else None. A hint is never an error: a
        failure to measure gives None."""
        if self.doc is None:
            return None
        try:
            return self.doc.identity_pose_note(state)
        except Exception:  # noqa: BLE001 - e.g. the models went away with a device change
            return None

    def set_identity(self, text: str, merge_key: object = None, **changes: Any) -> bool:
        doc = self._doc()
        return self.push(doc.state.with_identity(**changes), text,
                         (merge_key, "identity", tuple(changes)) if merge_key else None)

    def set_amount(self, key: str, value: float, merge_key: object = None) -> bool:
        """An identity-panel amount: "id_alpha", "attr_alpha" or "deid_strength"."""
        return self.set_identity(AMOUNT_TEXT[key].format(value), merge_key, **{key: value})

    def swap_roles(self) -> bool:
        doc = self._doc()
        return doc.state.identity.other is not None and self.push(doc.state.swapped_roles(), "Swap identity roles")

    def deidentify(self, seed: int | None = None) -> bool:
        """Give the face a new person (``seed``: which one; default a random one)."""
        seed = int(np.random.default_rng().integers(1, 2**31 - 1)) if seed is None else int(seed)
        return self.set_identity("De-identify", deid_strength=1.0, deid_seed=seed)

    def set_other(self, other: OtherFace | None) -> str | None:
        """The identity panel's second face (None removes it)."""
        doc = self._doc()
        if other is None:
            self.push(doc.state.with_identity(other=None, id_alpha=0.0, attr_alpha=0.0), "Remove second face")
            return None
        amounts = {"id_alpha": 1.0, "attr_alpha": 0.0} if doc.state.identity.role == "identity" else \
            {"id_alpha": 0.0, "attr_alpha": 1.0}
        self.push(doc.state.with_identity(other=other, **amounts), f"Second face: {other.label}")
        return None

    def other_code_task(self, path: str | Path) -> Task:
        """The second face from a code file (a photo goes through ``photo_task(path, "other")``)."""
        p = Path(path)

        def run(progress: ProgressFn | None, cancelled: CancelFn | None) -> OtherFace:
            from latentstudio.codes import load_code

            return OtherFace(load_code(p), p.name, {"kind": "code", "path": str(p.resolve())})

        return Task(f"Opening {p.name}", run, self.set_other)

    def generated_other(self, seed: int, psi: float = DEMO_PSI) -> OtherFace:
        """A generated second face."""
        w = self.runtime.generator().seed_w(seed, psi).detach().cpu().numpy().astype(np.float32)
        return OtherFace(np.repeat(w[None], NUM_SLOTS, 0), f"seed {seed}", {"kind": "seed", "seed": seed, "psi": psi})

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

    def refine_task(self, steps: int | None = None) -> Task:
        """Optimise the panel's blend against the real identity loss and the attribute face's
        landmarks and surroundings (``steps``: default ``identity.REFINE_STEPS``); one undoable
        step, dropped if the panel changed meanwhile."""
        from latentstudio.identity import REFINE_STEPS

        steps = REFINE_STEPS if steps is None else steps
        reason = self.can_refine_identity()
        if reason is not None:
            raise DocumentError(reason)
        doc = self._doc()
        ident = doc.state.identity
        state = doc.state.with_identity()  # the same settings, unrefined
        other, base, runtime = ident.other, doc.base, self.runtime
        assert other is not None

        def run(progress: ProgressFn | None, cancelled: CancelFn | None) -> np.ndarray:
            from latentstudio.identity import api

            models = runtime.identity()
            start = identity_stage(base, state.identity, runtime)
            t = api.even_amount(base, other.code, ident.id_alpha, ident.attr_alpha, models=models)  # as the blend
            who, attrs = api.blend_sources(base, other.code, t, ident.attr_alpha)
            out = api.refine_transfer(start, attrs, identity_code=who, steps=steps, cancelled=cancelled,
                                      progress=progress, models=models)
            return out - start

        def finish(offset: np.ndarray) -> str | None:
            if self.doc is not doc or doc.state.with_identity() != state:
                return "Refinement dropped: the identity panel changed meanwhile"
            self.set_identity(f"Refine identity ({steps} steps)", refined=IdentityRefinement(offset, steps))
            return None

        return Task("Refining the identity blend", run, finish)

    # ================================================================= video
    def video_task(self, path: str | Path) -> Task:
        """Open a clip: follow its face, invert the first frame where it is found → a document
        of that frame (the sliders and the identity panel then say what every frame gets)."""
        from latentstudio import video

        p, runtime, dirs = Path(path), self.runtime, self._directions()
        preset, steps = self.invert_preset, self.invert_steps

        def run(progress: ProgressFn | None, cancelled: CancelFn | None) -> tuple[Document, VideoContext]:
            clip = video.probe(p)
            tr = video.track(p, progress=progress, cancelled=cancelled)
            k = int(np.flatnonzero(tr.found)[0])
            fr = video.frame_at(p, k)
            doc = self._frame_document(p, fr.rgb, tr.landmarks[k], dirs, lambda aligned: video.invert_frame(
                aligned, None, runtime=runtime, preset=preset, steps=steps, progress=progress, cancelled=cancelled))
            return doc, VideoContext(p, clip, tr, k)

        def finish(result: tuple[Document, VideoContext]) -> str | None:
            doc, ctx = result
            self._opened(doc, None)
            self.video = ctx
            missing = int((~ctx.track.found).sum())
            return (f"{p.name}: {len(ctx.track.found)} frames" + (f", no face in {missing}" if missing else "")
                    + "; the edits apply to every frame (File ▸ Export video)")

        return Task(f"Opening {p.name}", run, finish)

    @staticmethod
    def _frame_document(path: Path, rgb: np.ndarray, landmarks: np.ndarray, dirs: Any, code_of: Any) -> Document:
        """A document of one video frame: ``code_of(aligned)`` is its code, the frame its photo."""
        from latentstudio.document import Source
        from latentstudio.face.align import align_face
        from latentstudio.face.placement import Placement
        from latentstudio.models.fetch import sha256_of

        alignment = align_face(rgb, landmarks)
        src = Source("photo", path.resolve(), sha256_of(path),
                     Placement(path.resolve(), (rgb.shape[1], rgb.shape[0]), alignment.quad, landmarks))
        src.remember(photo=rgb, aligned=alignment.image)
        return Document(code_of(alignment.image), src, dirs)

    def frame_task(self, k: int) -> Task:
        """Show frame ``k`` of the open clip (warm-started from the frame shown now); the edits and
        the history stay."""
        from latentstudio import video

        ctx, doc, runtime = self.video, self._doc(), self.runtime
        if ctx is None:
            raise DocumentError("no video is open")
        if not 0 <= k < len(ctx.track.found):
            raise DocumentError(f"the clip has frames 0 to {len(ctx.track.found) - 1}")
        if not ctx.track.found[k]:
            raise DocumentError(f"no face in frame {k}: it is exported unchanged")

        def run(progress: ProgressFn | None, cancelled: CancelFn | None) -> Document:
            fr = video.frame_at(ctx.path, k)
            return self._frame_document(ctx.path, fr.rgb, ctx.track.landmarks[k], doc.directions.values(),
                                        lambda aligned: video.invert_frame(aligned, doc.base, runtime=runtime,
                                                                           progress=progress, cancelled=cancelled))

        def finish(new: Document) -> str | None:
            if self.doc is not doc:
                return "Frame dropped: the document changed meanwhile"
            new.set_state(doc.state)
            new.runtime = self.runtime
            self.doc = new  # the history stays: the edits are the clip's, not the frame's
            ctx.frame = k
            return None

        return Task(f"Frame {k}", run, finish)

    def video_export_task(self, out: str | Path) -> Task:
        """Write the open clip with the document's edits and identity settings on every frame
        (``latentstudio.video``; resumable, Cancel keeps what is done)."""
        from dataclasses import replace

        from latentstudio import video
        from latentstudio.document import IdentityState

        ctx, doc, runtime = self.video, self._doc(), self.runtime
        if ctx is None:
            raise DocumentError("no video is open")
        ident = doc.state.identity
        blends = ident.other is not None and (ident.id_alpha or ident.attr_alpha)
        edit = video.VideoEdit(state=replace(doc.state, identity=IdentityState()),
                               identity=ident.other.code if blends else None,  # type: ignore[union-attr]
                               id_alpha=ident.id_alpha, attr_alpha=ident.attr_alpha,
                               deidentify=ident.deid_strength, deid_seed=ident.deid_seed)
        dirs, preset, steps, p = doc.directions, self.invert_preset, self.invert_steps, Path(out)

        def run(progress: ProgressFn | None, cancelled: CancelFn | None) -> Any:
            return video.edit_clip(ctx.path, p, edit, runtime=runtime, directions=dirs, preset=preset, steps=steps,
                                   progress=progress, cancelled=cancelled)

        def finish(rep: Any) -> str | None:
            gone = f"; no face in {len(rep.passed_through)} frame(s), left unchanged" if rep.passed_through else ""
            return f"Exported {p} ({rep.edited} of {rep.frames} frames edited{gone})"

        return Task(f"Exporting {p.name}", run, finish)

    # ================================================================= export
    def export(self, path: str | Path, mode: str = "aligned", aligned_rgb: np.ndarray | None = None,
               state: EditState | None = None) -> Path:
        """Write the edited face (``mode`` "aligned" or "photo": pasted back) with the edits as
        metadata; ``aligned_rgb``: the 1024² render of ``state`` when it is already there."""
        doc = self._doc()
        doc.export(path, self.runtime.generator(), mode, aligned_rgb=aligned_rgb, state=state)
        return Path(path)

    def export_code(self, path: str | Path, state: EditState | None = None) -> Path:
        """Write the edited W+ code (with its placement and tuned weights) as ``.npz``."""
        self._doc().export_code(path, state)
        return Path(path)

    def open_task(self, path: str | Path) -> Task:
        """A project, a code file, a video or a photo, by extension (a photo's task ends in a
        ``PendingPhoto``)."""
        p = Path(path)
        if p.suffix.lower() in VIDEO_SUFFIXES:
            return self.video_task(p)
        if p.suffix.lower() == PROJECT_SUFFIX:
            return self.project_task(p)
        if p.suffix.lower() in CODE_SUFFIXES:
            return self.code_task(p)
        return self.photo_task(p)


__all__ = ["Session", "Task", "PendingPhoto", "FrameGate", "VideoContext", "VIDEO_SUFFIXES", "DEMO_SEED", "DEMO_PSI", "IMAGE_SUFFIXES", "AMOUNT_TEXT"]
