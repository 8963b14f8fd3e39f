"""The headless session (``latentstudio.session``): history, stale frames, repair, identity and
cancel, without Qt. The pure-state tests need no model files: their runtime has no generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentstudio.document import Document, DocumentError, OtherFace, Source, load_default_directions
from latentstudio.edit.boundaries import Boundary, save_index
from latentstudio.latent import NUM_SLOTS, W_DIM
from latentstudio.progress import Cancelled
from latentstudio.runtime import Runtime
from latentstudio.session import FrameGate, Session


def _no_models() -> object:
    raise AssertionError("this test must not load a model")


@pytest.fixture()
def session(tmp_path: Path) -> Session:
    rng = np.random.default_rng(0)
    unit = [v / np.linalg.norm(v) for v in rng.standard_normal((2, W_DIM))]
    save_index(tmp_path / "bnd", [Boundary("smile", unit[0], label="Smile"), Boundary("age", unit[1], label="Age")])
    dirs, reason = load_default_directions([tmp_path / "bnd"])
    assert reason is None
    s = Session(Runtime("cpu", generator_factory=_no_models))
    base = rng.standard_normal((NUM_SLOTS, W_DIM)).astype(np.float32)
    s.set_document(Document(base, Source("seed", seed=3, psi=0.7), dirs))
    return s


@pytest.mark.no_models
def test_a_drag_is_one_step_and_undo_redo_restore_states(session: Session) -> None:
    s, doc = session, session.doc
    changes = []
    s.history.listeners.append(lambda: changes.append(s.history.index))
    for v in (0.2, 0.5, 0.9):
        s.set_value("smile", v, merge_key=("drag", 1))
    assert s.history.count() == 1 and s.history.undo_text() == "Smile +0.90"
    s.set_value("age", 1.0)
    assert s.history.count() == 2 and not s.history.is_clean()
    assert s.undo() and doc.state.values == {"smile": 0.9}
    assert s.undo() and doc.state.values == {} and not s.undo()
    assert s.redo() and doc.state.values == {"smile": 0.9}
    s.set_value("age", -1.0)  # a new step drops the redo tail
    assert s.history.count() == 2 and not s.history.can_redo() and doc.state.values == {"smile": 0.9, "age": -1.0}
    assert changes, "the GUI is told about every change"
    # a drag that ends where it started leaves no step
    s.set_value("age", 0.5, merge_key=("drag", 2))
    s.set_value("age", -1.0, merge_key=("drag", 2))
    assert s.history.count() == 2
    assert s.go_to(0) and doc.state.values == {} and s.go_to(2) and doc.state.values["age"] == -1.0
    assert not s.push(doc.state, "nothing")  # no change, no step


@pytest.mark.no_models
def test_clean_mark_follows_saves_and_recovered_work(session: Session, tmp_path: Path) -> None:
    s = session
    assert s.history.is_clean()
    s.set_value("smile", 1.0)
    path = s.save_project(tmp_path / "p")  # the suffix is added
    assert path.suffix == ".lsproj" and s.project_path == path and s.history.is_clean()
    s.set_value("smile", 1.5)
    assert not s.history.is_clean()
    s.undo()
    assert s.history.is_clean()
    s.undo()
    s.set_value("age", 2.0)  # the saved state is now unreachable
    assert not s.history.is_clean() and s.history.clean_index is None
    msg = s.project_task(path, recovered=False)()
    assert msg is None and s.history.is_clean() and s.doc.state.values == {"smile": 1.0}


@pytest.mark.no_models
def test_bad_states_are_refused_and_leave_the_session_unchanged(session: Session) -> None:
    s, doc = session, session.doc
    before = doc.state
    with pytest.raises(DocumentError):
        s.push(doc.state.with_value("smile", float("nan")), "bad")
    with pytest.raises(KeyError):
        s.set_value("no-such-slider", 1.0)
    assert doc.state == before and s.history.count() == 0


@pytest.mark.no_models
def test_stale_frames_never_overwrite_newer_ones() -> None:
    gate = FrameGate()
    tag = gate.renew()
    assert gate.accept(tag, 5) and not gate.accept(tag, 4) and not gate.accept(tag, 5)
    assert gate.accept(tag, 9)
    old, new = tag, gate.renew()  # a new document or view
    assert not gate.accept(old, 10) and not gate.current(old) and gate.current(new)
    assert gate.accept(new, 11)


@pytest.mark.no_models
def test_identity_panel_state_and_a_refinement_that_arrives_too_late(session: Session) -> None:
    s, doc = session, session.doc
    other = OtherFace(doc.base + 0.5, "seed 7", {"kind": "seed", "seed": 7})
    assert s.can_refine_identity() == "load a second face and blend it first"
    s.set_other(other)
    ident = doc.state.identity
    assert ident.other is other and (ident.id_alpha, ident.attr_alpha) == (1.0, 0.0)
    s.set_amount("attr_alpha", 0.3, merge_key=("drag", 1))
    s.set_amount("attr_alpha", 0.4, merge_key=("drag", 1))
    assert s.history.count() == 2 and doc.state.identity.attr_alpha == 0.4
    assert s.swap_roles() and doc.state.identity.role == "attributes"
    assert s.can_refine_identity() is None
    task = s.refine_task(steps=3)  # captured now; the panel changes before it finishes
    s.set_amount("id_alpha", 0.5)
    steps = s.history.count()
    assert task.finish(np.zeros((NUM_SLOTS, W_DIM), np.float32)) == \
        "Refinement dropped: the identity panel changed meanwhile"
    assert s.history.count() == steps and doc.state.identity.refined is None
    s.deidentify(seed=5)
    assert doc.state.identity.deid_strength == 1.0 and doc.state.identity.deid_seed == 5
    assert "De-identify" in s.can_refine_identity()
    with pytest.raises(DocumentError):
        s.refine_task()
    s.set_other(None)
    assert doc.state.identity.other is None


@pytest.mark.no_models
def test_repair_needs_its_boundary(session: Session) -> None:
    assert "quality" in session.can_repair()
    with pytest.raises(DocumentError):
        session.repair_task()


@pytest.mark.no_models
def test_cancelled_photo_task_leaves_the_session_unchanged(session: Session, tmp_path: Path) -> None:
    from PIL import Image

    photo = tmp_path / "face.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(photo)
    doc, state = session.doc, session.doc.state
    with pytest.raises(Cancelled):
        session.photo_task(photo).run(None, lambda: True)
    assert session.doc is doc and session.doc.state == state


def test_repair_task_through_the_session(generator, tmp_path: Path) -> None:  # noqa: ANN001
    """With the shipped boundaries: a clean face needs no repair, and the session says so."""
    s = Session(Runtime("cpu", generator_factory=lambda: generator))
    s.set_document(s.demo(seed=31, psi=0.5))  # ψ 0.5: cleaner than the repair threshold
    if s.can_repair() is not None:
        pytest.skip(s.can_repair())
    seen = []
    message = s.repair_task()(progress=seen.append)
    assert message.startswith("Nothing to repair") and s.history.count() == 0
    assert seen and seen[0].stage == "repair"


def test_pure_state_tests_need_no_model_files(tmp_path: Path) -> None:
    """The ``no_models`` tests above, run in a fresh process with an empty model cache."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LATENTSTUDIO_HOME": str(tmp_path / "empty-home")}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "no_models",
                        __file__], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "7 passed" in r.stdout and not (tmp_path / "empty-home" / "models").exists()


def test_a_photo_opens_as_a_first_guess_and_the_inversion_keeps_the_edits(generator, tmp_path: Path) -> None:  # noqa: ANN001
    """The app's photo opening: the encoder's guess at once, sliders usable meanwhile, then the
    inversion replaces the code and keeps the edits and the history."""
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    s = Session(Runtime("cpu", generator_factory=lambda: generator))
    s.early_guess, s.invert_steps = True, 2
    pending = s.photo_task(photo).run(None, None)
    t = __import__("time").monotonic()
    message = s.face_task(pending)()
    assert __import__("time").monotonic() - t < 5 and "first guess" in message
    guess = s.doc
    assert s.guess_pending() and guess.base.shape == (23, 512)  # the encoder's W+ guess
    s.set_value(next(iter(guess.directions)), 1.0)
    task = s.inversion_task()
    with pytest.raises(Cancelled):
        task.run(None, lambda: True)
    assert s.doc is guess  # cancelled: the guess stays
    assert s.inversion_task()() == "Inverted astronaut.png"
    assert s.doc is not guess and not s.guess_pending()
    assert s.doc.state == guess.state and s.history.count() == 1  # the edit carried over
    assert not np.allclose(s.doc.base, guess.base) and s.doc.source.placement.size == (512, 512)
    assert s.runtime.loaded("lpips-alex")  # the inversion's loss net is the runtime's, not a hidden cache


def test_a_freezing_runtime_moves_what_it_loads_out_of_the_collectors_way() -> None:
    """The app's runtime freezes its models after loading (full collections walking them held
    the interpreter ~0.1 s and stalled the UI thread mid-drag); a plain runtime does not."""
    import gc

    gc.unfreeze()
    try:
        Runtime("cpu", generator_factory=lambda: object()).generator()
        assert gc.get_freeze_count() == 0
        model = object()
        assert Runtime("cpu", generator_factory=lambda: model, freeze=True).generator() is model
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
