"""The desktop app through its real widgets (pytest-qt, QT_QPA_PLATFORM=offscreen).

A photo is opened, aligned and inverted (2 steps), a slider is dragged, undone, exported; a storm
of slider events must end on the last value with no stale frame after it; bad files give error
dialogs and leave the document alone.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
skimage_data = pytest.importorskip("skimage.data")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from latentstudio.document import EditState, identity_available, load_default_directions  # noqa: E402
from latentstudio.edit.boundaries import Boundary, save_index  # noqa: E402
from latentstudio.progress import Progress  # noqa: E402
from latentstudio.project import Autosave  # noqa: E402
from latentstudio.safety import load_npz  # noqa: E402

WAIT = 180_000  # ms; the machine may be busy


@pytest.fixture()
def boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two random unit directions instead of whatever is installed (fast and deterministic)."""
    rng = np.random.default_rng(0)
    vecs = [rng.standard_normal(512) for _ in range(2)]
    save_index(tmp_path / "bnd", [Boundary("smile", vecs[0], label="Smile"),
                                  Boundary("age", vecs[1], label="Age")])
    folder = tmp_path / "bnd"
    import latentstudio.session as session_mod

    monkeypatch.setattr(session_mod, "load_default_directions",
                        lambda: load_default_directions([folder]))
    return folder


@pytest.fixture()
def window(qtbot, generator, boundaries: Path, tmp_path: Path):  # noqa: ANN001, ANN201
    from latentstudio.gui.main_window import MainWindow
    from latentstudio.gui.session import EditorSession

    session = EditorSession(device="cpu", generator_factory=lambda: generator,
                            autosave=Autosave(tmp_path / "autosave"))
    session.full_size = 512  # the real full-size path, smaller: keeps the tests quick
    session.settle_ms = 50
    session.invert_steps = 2
    win = MainWindow(session, QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    win.confirm_close = False
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    with qtbot.waitSignal(session.documentChanged, timeout=WAIT):
        session.start()  # the demo face: seed 42
    yield win
    win.close()


def open_photo_and_wait(qtbot, window, photo: Path) -> None:  # noqa: ANN001
    """Open a photo: it shows at once as the encoder's first guess, then its inversion replaces it."""
    s = window.session
    with qtbot.waitSignal(s.documentChanged, timeout=WAIT):
        window.open_path(photo)
    assert s.doc.source.path == photo.resolve()  # the first guess, before the inversion
    qtbot.waitUntil(lambda: not s.core.guess_pending() and s.task is None, timeout=WAIT)


def wait_full_frame(qtbot, win) -> None:  # noqa: ANN001
    """Until the renderer is idle and the canvas shows a full-size frame of the current state."""
    s = win.session

    def done() -> bool:
        f = s.last_frame
        return (f is not None and f.size == s.full_size and f.tag[1] == s.doc.state
                and win.canvas.painted_seq == f.seq and s.bridge.renderer.wait_idle(0))

    qtbot.waitUntil(done, timeout=WAIT)


def drag(row, values) -> None:  # noqa: ANN001
    """A real slider drag: press, move through ``values``, release."""
    row.slider.setSliderDown(True)
    for v in values:
        row.slider.setValue(v)
    row.slider.setSliderDown(False)


def test_starts_on_demo_face(qtbot, window) -> None:  # noqa: ANN001
    s = window.session
    assert s.doc.source.kind == "seed" and s.doc.source.seed == 42
    assert set(window.attributes.rows) == {"smile", "age"}
    wait_full_frame(qtbot, window)
    assert window.canvas.frame_seq > 0 and window.errors == []
    reason = identity_available()
    if reason is not None:  # the mapper is optional: its panel says why it is off
        assert not window.identity.load.isEnabled() and reason in window.identity.load.toolTip()
    doc = s.doc
    with qtbot.waitSignal(s.generatorReady, timeout=WAIT):  # a new render thread, same document
        s.set_device("auto")
    wait_full_frame(qtbot, window)
    assert s.doc is doc and window.errors == []


def test_photo_slider_undo_export(qtbot, window, tmp_path: Path) -> None:  # noqa: ANN001
    from PIL import Image

    from latentstudio.face.image_io import load_metadata

    s = window.session
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    progress = []
    s.taskProgress.connect(lambda p: progress.append((p.done, p.preview is not None)))
    open_photo_and_wait(qtbot, window, photo)
    assert s.doc.source.kind == "photo" and s.doc.source.path == photo.resolve()
    assert any(has for _, has in progress), "the inversion preview reached the canvas"
    assert window.errors == []
    wait_full_frame(qtbot, window)
    before_img = s.last_frame.image.copy()
    base = s.doc.base.copy()

    row = window.attributes.rows["smile"]
    drag(row, np.linspace(0, 2.5, 40))
    wait_full_frame(qtbot, window)
    n = s.doc.directions["smile"].normal
    np.testing.assert_allclose(s.doc.code(), base + 2.5 * n[None], atol=1e-5)
    np.testing.assert_allclose(s.last_frame.code, s.doc.code(), atol=0)
    changed = np.abs(s.last_frame.image.astype(int) - before_img).mean()
    assert changed > 1.0, f"the rendered image should change (mean |Δ| = {changed:.2f})"
    assert s.history.count() == 1, "one drag is one undo step"

    window.act_undo.trigger()
    assert s.doc.state == EditState()
    np.testing.assert_array_equal(s.doc.code(), base)
    wait_full_frame(qtbot, window)
    np.testing.assert_array_equal(s.last_frame.image, before_img)  # exactly the pre-edit pixels
    assert row.slider.value() == 0.0
    window.act_redo.trigger()
    assert s.doc.state.value("smile") == pytest.approx(2.5)

    # the "In photo" view pastes the render back into the original photo
    window.view_box.setCurrentIndex(1)
    assert s.view == "photo"
    wait_full_frame(qtbot, window)
    assert s.last_frame.image.shape == (512, 512, 3) and s.logical_size() == (512, 512)
    window.view_box.setCurrentIndex(0)

    # export: aligned crop and pasted back at the photo's full resolution, with the edits recorded
    for mode, name, size in (("aligned", "face.webp", (1024, 1024)), ("photo", "photo.jpg", (512, 512))):
        out = tmp_path / name
        with qtbot.waitSignal(s.status, timeout=WAIT, check_params_cb=lambda t: t.startswith("Exported")):
            s.export(out, mode)
        with Image.open(out) as im:
            im.load()
            assert im.size == size
        meta = json.loads(load_metadata(out)["latentstudio"])
        assert meta["edits"] == {"smile": 2.5} and meta["mode"] == mode


def test_slider_storm_ends_on_last_value_without_stale_frames(qtbot, window) -> None:  # noqa: ANN001
    s = window.session
    wait_full_frame(qtbot, window)
    painted: list[tuple[int, object]] = []
    window.canvas.painted.connect(lambda seq: painted.append((seq, s.last_frame.tag[1])))
    row = window.attributes.rows["age"]
    values = 2.5 * np.sin(np.linspace(0, 40, 10_000))
    row.slider.setSliderDown(True)
    for i, v in enumerate(values):
        row.slider.setValue(float(v))
        if i % 250 == 0:
            qtbot.wait(1)  # let frames arrive in the middle of the storm
    row.slider.setSliderDown(False)
    last = float(values[-1])
    wait_full_frame(qtbot, window)
    qtbot.wait(200)  # anything stale would arrive now
    assert s.doc.state.value("age") == pytest.approx(last)
    assert s.last_frame.tag[1] == s.doc.state and s.last_frame.size == s.full_size
    np.testing.assert_allclose(s.last_frame.code, s.doc.code(), atol=0)
    seqs = [q for q, _ in painted]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    first_final = next(i for i, (_, st) in enumerate(painted) if st == s.doc.state)
    assert all(st == s.doc.state for _, st in painted[first_final:]), "a stale frame followed the last one"
    assert s.history.count() == 1
    stats = s.bridge.renderer.stats
    assert stats.skipped > 9000, "superseded requests are skipped, not rendered"


def test_damaged_project_and_bad_photos_show_errors(qtbot, window, tmp_path: Path) -> None:  # noqa: ANN001
    s = window.session
    doc = s.doc
    bad = tmp_path / "broken.lsproj"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    window.open_path(bad)
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "errorDialog") is not None, timeout=WAIT)
    box = window.findChild(QMessageBox, "errorDialog")
    assert box is not None and box.isVisible()
    assert "broken.lsproj" in box.informativeText() and "damaged" in box.informativeText()
    assert s.doc is doc and window.errors[-1][0] == "Cannot open the project"
    box.close()

    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank)
    window.open_path(blank)
    qtbot.waitUntil(lambda: len(window.errors) == 2, timeout=WAIT)
    assert window.errors[-1][0] == "No usable face" and "no face" in window.errors[-1][1]
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 not a jpeg")
    window.open_path(junk)
    qtbot.waitUntil(lambda: len(window.errors) == 3, timeout=WAIT)
    assert window.errors[-1][0] == "Cannot read the image" and "junk.jpg" in window.errors[-1][1]
    assert s.doc is doc


def test_drop_and_face_picker(qtbot, window, tmp_path: Path) -> None:  # noqa: ANN001
    from PIL import Image
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    from latentstudio.gui.dialogs import FacePicker

    s = window.session
    doc = s.doc
    two = tmp_path / "two.png"
    face = skimage_data.astronaut()
    Image.fromarray(np.concatenate([face, face[:, ::-1]], axis=1)).save(two)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(two))])
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(s.facesFound, timeout=WAIT):
        window.dropEvent(drop)
    picker = window.findChild(FacePicker)
    assert picker is not None and picker.isVisible() and picker.list.count() >= 2
    assert str(two.resolve()) in window._recent()
    with qtbot.waitSignal(s.taskEnded, timeout=WAIT) as ended:
        picker.reject()  # the user changes their mind: nothing happens to the document
    assert ended.args == ["cancelled"] and s.doc is doc and window.errors == []


def test_cancel_inversion_keeps_the_first_guess(qtbot, window, tmp_path: Path) -> None:  # noqa: ANN001
    """A photo shows at once (the encoder's guess); cancelling its inversion keeps that guess, with
    the edits made meanwhile."""
    from PIL import Image

    s = window.session
    s.invert_steps = 500  # would take minutes: it must stop at the next step
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    steps = []
    s.taskProgress.connect(lambda p: steps.append(p.done))
    window.open_path(photo)
    qtbot.waitUntil(lambda: any(st > 0 for st in steps), timeout=WAIT)
    guess = s.doc
    assert guess.source.path == photo.resolve() and s.core.guess_pending()
    s.set_value("smile", 1.0)  # the sliders work while the inversion runs
    assert window.progress.isVisible() and window.cancel_button.isVisible()
    with qtbot.waitSignal(s.taskEnded, timeout=WAIT) as ended:
        window.cancel_button.click()
    assert ended.args == ["cancelled"] and max(steps) < 500
    assert s.doc is guess and s.doc.state.values == {"smile": 1.0} and window.errors == []
    assert not window.progress.isVisible()


def test_high_fidelity_photo_project_and_code_file(qtbot, window, tmp_path: Path) -> None:  # noqa: ANN001
    """Inversion quality ▸ High fidelity tunes the generator after the inversion (one progress
    bar for both); the document renders, saves and reopens with its tuned weights, and so does
    its exported code file (the format of ``latentstudio invert --tune``)."""
    from PIL import Image

    from latentstudio.models.generator import to_uint8
    from latentstudio.tune import TuneSettings, tuned_generator

    s = window.session
    hifi = window.findChild(type(window.act_undo), "highFidelity")
    hifi.trigger()
    assert s.tune_steps == TuneSettings().steps
    s.tune_steps = 2  # the real path, short
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    progress = []
    s.taskProgress.connect(lambda p: progress.append((p.done, p.total)))
    open_photo_and_wait(qtbot, window, photo)
    assert progress[-1] == (4, 4) and [p for p, _ in progress] == sorted(p for p, _ in progress)
    doc = s.doc
    assert doc.tuning and window.errors == []
    wait_full_frame(qtbot, window)
    tuned = tuned_generator(window.session.bridge.renderer.generator, doc.tuning)
    np.testing.assert_array_equal(s.last_frame.face, to_uint8(tuned.synthesize(doc.code(), size=512))[0])

    path = tmp_path / "hifi.lsproj"
    assert s.save_project(path)
    with qtbot.waitSignal(s.documentChanged, timeout=WAIT):
        window.open_path(path)
    assert s.doc is not doc and sorted(s.doc.tuning) == sorted(doc.tuning)
    wait_full_frame(qtbot, window)
    np.testing.assert_array_equal(s.last_frame.face, to_uint8(tuned.synthesize(doc.code(), size=512))[0])

    code = tmp_path / "hifi.npz"  # File ▸ Export code: the edited code, its photo and tuned weights
    with qtbot.waitSignal(s.status, timeout=WAIT, check_params_cb=lambda t: t.startswith("Exported the code")):
        s.export_code(code)
    with qtbot.waitSignal(s.documentChanged, timeout=WAIT):
        window.open_path(code)
    assert s.doc.source.can_paste_back and sorted(s.doc.tuning) == sorted(doc.tuning)
    wait_full_frame(qtbot, window)
    np.testing.assert_array_equal(s.last_frame.face, to_uint8(tuned.synthesize(doc.code(), size=512))[0])
    hifi.trigger()
    assert s.tune_steps == 0 and window.errors == []


def test_project_save_open_and_keep_lock(qtbot, window, tmp_path: Path) -> None:  # noqa: ANN001
    s = window.session
    np.save(tmp_path / "glasses.npy", np.random.default_rng(3).standard_normal(512).astype(np.float32))
    s.add_directions_from(tmp_path / "glasses.npy")  # File ▸ Import direction…
    assert "glasses" in window.attributes.rows and s.doc.directions["glasses"].source == "user"
    s.add_directions_from(tmp_path / "nothing.npy")
    assert window.errors[-1][0] == "Cannot import the direction" and "nothing.npy" in window.errors[-1][1]
    drag(window.attributes.rows["glasses"], [-1.0])
    window.attributes.rows["age"].keep.click()
    drag(window.attributes.rows["smile"], [0.5, 1.0, 1.5])
    n_age = s.doc.directions["age"].normal.astype(np.float64)
    assert abs((s.doc.code() - s.doc.base)[0] @ n_age) < 1e-5  # the locked attribute did not move
    assert s.history.count() == 3 and window.isWindowModified()
    path = tmp_path / "p.lsproj"
    assert s.save_project(path) and not window.isWindowModified()
    state = s.doc.state
    window.attributes.reset_all.click()
    assert s.doc.state.values == {}
    with qtbot.waitSignal(s.documentChanged, timeout=WAIT):
        window.open_path(path)
    assert s.doc.state == state and window.attributes.rows["age"].keep.isChecked()
    assert window.attributes.rows["glasses"].slider.value() == pytest.approx(-1.0)  # saved with the project
    assert window.attributes.rows["smile"].slider.value() == pytest.approx(1.5)
    assert str(path.resolve()) in window._recent()


def test_identity_panel_through_the_mapper_api(qtbot, window, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                              tmp_path: Path) -> None:
    """The panel's wiring, with a stand-in for ``latentstudio.identity.api`` (the trained mapper
    is optional): amounts, swap, de-identify and undo all reach the code."""
    import sys
    import types

    fake = types.ModuleType("latentstudio.identity.api")
    # what the session's runtime hands the api (every call must get it); no face parsing: the
    # frames show the codes themselves
    models = types.SimpleNamespace(surroundings=None)
    fake.available = lambda weights=None: None
    drafts: list[bool] = []  # a preview's blend is a draft (measures nothing), a full frame's is not

    def blend(base, other, ia, aa, draft, models):  # noqa: ANN001, ANN202
        drafts.append(draft)
        return base + (0.3 * ia + 0.7 * aa) * (other - base) + (1e-3 if draft else 0.0)

    fake.blend = blend
    fake.deidentify = lambda code, strength, seed, draft, models: code + strength * 0.01 * (seed % 7 + 1)
    fake.even_amount = lambda base, other, ia, aa, models: ia ** 2  # the blend's point of the line

    def refine_transfer(start, attrs, *, identity_code, steps, progress, cancelled, models):  # noqa: ANN001, ANN202
        for i in range(steps):
            progress(Progress("refine", i + 1, steps))
        return start + 0.02 * (identity_code - attrs)

    fake.refine_transfer = refine_transfer
    poses: list[object] = []  # the pose check once a full frame has stayed on screen

    def pose_note(code, attrs, *, models):  # noqa: ANN001, ANN202
        poses.append(models)
        return "the head pose is 9° off"

    fake.pose_note = pose_note
    from latentstudio.identity.api import attribute_face, blend_sources

    fake.blend_sources, fake.attribute_face = blend_sources, attribute_face  # plain numpy: the real ones
    monkeypatch.setitem(sys.modules, "latentstudio.identity.api", fake)
    import latentstudio.identity

    monkeypatch.setattr(latentstudio.identity, "api", fake, raising=False)
    s, panel = window.session, window.identity
    monkeypatch.setattr(s.runtime, "identity", lambda: models)
    notes: list[str] = []
    s.status.connect(notes.append)
    panel.set_unavailable(s.identity_reason())
    assert panel.generated.isEnabled()
    panel.seed.setValue(11)
    with qtbot.waitSignal(s.otherChanged, timeout=WAIT, check_params_cb=lambda img: img is not None):
        panel.generated.click()
    ident = s.doc.state.identity
    assert ident.other.label == "seed 11" and (ident.role, ident.id_alpha, ident.attr_alpha) == ("identity", 1.0, 0.0)
    base, other = s.doc.base, ident.other.code
    np.testing.assert_allclose(s.doc.code(), base + 0.3 * (other - base), atol=1e-5)
    panel.attr_amount.setSliderDown(True)
    panel.attr_amount.setValue(0.5)
    panel.attr_amount.setSliderDown(False)
    np.testing.assert_allclose(s.doc.code(), base + (0.3 + 0.35) * (other - base), atol=1e-5)
    wait_full_frame(qtbot, window)
    np.testing.assert_array_equal(s.last_frame.code, s.doc.code())  # the full frame is exact
    qtbot.waitUntil(lambda: "Identity: the head pose is 9° off" in notes, timeout=WAIT)  # a hint, once
    assert poses and all(m is models for m in poses)
    seq = s._request(s.preview_size)  # a drag's preview: a draft, which measures nothing
    qtbot.waitUntil(lambda: s.last_frame.seq == seq, timeout=WAIT)
    np.testing.assert_allclose(s.last_frame.code, s.doc.code() + 1e-3, atol=1e-6)
    assert drafts[-2:] == [True, False], drafts
    # the autosave writes the code of the last full frame, never running the identity models itself
    panel.id_amount.setValue(0.7)  # a new state, whose full frame is not there yet
    s._autosave_dirty = True
    s.write_autosave()
    assert s._autosave_dirty  # put off until its full frame
    wait_full_frame(qtbot, window)
    calls = len(drafts)
    s.write_autosave()
    qtbot.waitUntil(lambda: not s._autosave_dirty and s.autosave.path.is_file(), timeout=WAIT)
    with zipfile.ZipFile(s.autosave.path) as z:
        saved = load_npz(z.read("arrays.npz"), "arrays.npz")
    np.testing.assert_array_equal(saved["code"], s.last_full.code)
    assert len(drafts) == calls  # no blend ran for it
    assert panel.surroundings.isChecked()  # the attribute face's hair and background, by default
    panel.surroundings.click()
    assert s.doc.state.identity.surroundings is False
    window.act_undo.trigger()
    assert s.doc.state.identity.surroundings and panel.surroundings.isChecked()
    panel.id_amount.setValue(1.0)
    panel.swap.click()
    ident = s.doc.state.identity
    assert (ident.role, ident.id_alpha, ident.attr_alpha) == ("attributes", 0.5, 1.0)
    # Refine: a background task, one undo step, dropped when the panel changes
    before = s.doc.code()
    assert panel.refine.isEnabled()
    with qtbot.waitSignal(s.taskEnded, timeout=WAIT, check_params_cb=lambda how: how == "done"):
        panel.refine.click()
    qtbot.waitUntil(lambda: s.doc.state.identity.refined is not None, timeout=WAIT)
    assert "refined (60 steps)" in panel.refined.text()  # identity.REFINE_STEPS
    who, attrs = base + 0.25 * (other - base), other  # id_alpha 0.5 (its point 0.25), attr_alpha 1
    np.testing.assert_allclose(s.doc.code(), before + 0.02 * (who - attrs), atol=1e-5)
    window.act_undo.trigger()
    assert s.doc.state.identity.refined is None
    window.act_redo.trigger()
    assert s.doc.state.identity.refined is not None
    panel.deid.click()
    assert s.doc.state.identity.refined is None
    assert s.doc.state.identity.deid_strength == 1.0
    wait_full_frame(qtbot, window)
    np.testing.assert_allclose(s.last_frame.code, s.doc.code(), atol=0)
    # the second face can also be a code file (e.g. from `latentstudio invert`)
    np.save(tmp_path / "other.npy", (base + 0.5).astype(np.float32))
    with qtbot.waitSignal(s.otherChanged, timeout=WAIT, check_params_cb=lambda img: img is not None):
        s.open_other(tmp_path / "other.npy")
    assert s.doc.state.identity.other.label == "other.npy"
    np.testing.assert_allclose(s.doc.state.identity.other.code, base + 0.5)
    (tmp_path / "bad.npz").write_bytes(b"not a code")
    state = s.doc.state
    s.open_other(tmp_path / "bad.npz")
    qtbot.waitUntil(lambda: bool(window.errors), timeout=WAIT)
    assert window.errors[-1][0] == "Cannot read the latent code" and "bad.npz" in window.errors[-1][1]
    assert s.doc.state == state
    window.errors.clear()
    steps = s.history.count()
    for _ in range(steps):
        window.act_undo.trigger()
    assert s.doc.state == EditState()
    np.testing.assert_array_equal(s.doc.code(), base)


def test_recover_autosave(qtbot, window, tmp_path: Path) -> None:  # noqa: ANN001
    from latentstudio.project import recoverable

    s = window.session
    drag(window.attributes.rows["age"], [0.7])
    s.write_autosave()
    qtbot.waitUntil(lambda: s.autosave.path.is_file(), timeout=10_000)
    crashed = s.autosave.folder / "session-999999999.lsproj"  # as if its process had died
    s.autosave.path.rename(crashed)
    assert recoverable(s.autosave.folder) == [crashed]
    state = s.doc.state
    window.attributes.reset_all.click()
    with qtbot.waitSignal(s.documentChanged, timeout=WAIT):
        s.recover(crashed)
    assert s.doc.state == state and not crashed.exists()
    assert s.project_path is None and window.isWindowModified()


def test_missing_models_offer_fetch(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    from latentstudio.gui.main_window import MainWindow
    from latentstudio.gui.session import EditorSession
    from latentstudio.models.fetch import FetchError

    def missing():  # noqa: ANN202
        raise FetchError("model 'mobilestylegan' is not installed; run: latentstudio models fetch")

    session = EditorSession(generator_factory=missing, autosave=Autosave(tmp_path / "a"))
    win = MainWindow(session, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.show()
    session.start()
    qtbot.waitUntil(lambda: win.findChild(QMessageBox, "fetchDialog") is not None, timeout=10_000)
    box = win.findChild(QMessageBox, "fetchDialog")
    assert "not installed" in box.informativeText()
    box.close()
    win.close()


def test_canvas_zoom_and_before_after(qtbot) -> None:  # noqa: ANN001
    from PySide6.QtCore import QPointF

    from latentstudio.gui.canvas import Canvas

    c = Canvas()
    qtbot.addWidget(c)
    c.resize(600, 400)
    c.show()
    c.set_after(np.zeros((256, 256, 3), np.uint8), 1, (1024, 1024))
    c.set_before(np.full((1024, 1024, 3), 255, np.uint8))
    qtbot.waitUntil(lambda: c.painted_seq == 1)
    assert c.zoom == pytest.approx((400 - 16) / 1024)
    c.actual_size()
    assert c.zoom == pytest.approx(1.0 / c.devicePixelRatioF())
    c.set_zoom(2.0, anchor=QPointF(100, 100))
    assert c.zoom == 2.0
    c.fit()
    assert c.zoom == pytest.approx((400 - 16) / 1024)
    centre = (c.width() // 2, c.height() // 2)
    assert c.grab().toImage().pixelColor(*centre).red() == 0  # after (black)
    qtbot.keyPress(c, Qt.Key.Key_Backslash)
    assert c.show_before and c.grab().toImage().pixelColor(*centre).red() == 255  # before (white)
    qtbot.keyRelease(c, Qt.Key.Key_Backslash)
    assert not c.show_before
    c.split = True
    img = c.grab().toImage()
    assert img.pixelColor(c.width() // 2 - 40, centre[1]).red() == 255  # before on the left
    assert img.pixelColor(c.width() // 2 + 40, centre[1]).red() == 0  # after on the right


def test_repair_artifacts_action(qtbot, window, generator, tmp_path: Path,  # noqa: ANN001
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Edit ▸ Repair artifacts on a broken ψ = 1 face: one undoable step along the shipped
    quality direction that raises the quality score; saved with the project; a clean face is
    left alone."""
    from latentstudio.document import Document
    from latentstudio.edit.boundaries import load_all
    from latentstudio.edit.repair import KEEP, measure_codes, quality_model

    def score(code: np.ndarray) -> float:  # as the document shows a repair: in the unrepaired face's surroundings
        return float(quality_model(shipped).score(measure_codes(generator, np.asarray(code, np.float32)[None],
                                                                scene=s.doc.repair_scene()))[0])

    s = window.session
    assert not window.attributes.repair.isEnabled()  # the fixture's directions have no quality boundary
    s.repair_artifacts()
    assert window.errors[-1][0] == "Cannot repair artifacts" and "quality" in window.errors[-1][1]
    shipped = load_all()
    folder = tmp_path / "bnd_q"
    save_index(folder, [shipped["quality"]] + [shipped[k] for k in KEEP if k in shipped])  # what repair keeps
    import latentstudio.session as session_mod

    monkeypatch.setattr(session_mod, "load_default_directions", lambda: load_default_directions([folder]))
    dirs, _ = session_mod.load_default_directions()
    codes = np.stack([Document.from_seed(generator, 700_000 + i, 1.0, dirs).base for i in range(24)])
    m = measure_codes(generator, codes.astype(np.float32))
    scores = np.where(m["valid"] > 0.5, quality_model(shipped).score(m), np.inf)  # a face must be found
    seed = 700_000 + int(np.argmin(scores))  # the worst of seeds 700000…700023 (as in test_repair)
    broken = Document.from_seed(generator, seed, 1.0, dirs)
    s.set_document(broken, None)
    before = score(broken.base)
    assert before < quality_model(shipped).threshold
    assert window.attributes.repair.isEnabled() and window.act_repair.isEnabled()
    wait_full_frame(qtbot, window)
    window.attributes.repair_strength.setValue(1.5)  # the most the walk may move
    with qtbot.waitSignal(s.taskEnded, timeout=WAIT) as ended:
        window.attributes.repair.click()
    assert ended.args == ["done"] and window.errors[-1][0] == "Cannot repair artifacts"  # no new error
    r = s.doc.state.repair
    assert r is not None and r.alpha > 0 and r.score_after > r.score_before
    assert r.score_before == pytest.approx(before, abs=1e-4)
    np.testing.assert_allclose(s.doc.code(), broken.base + r.alpha * r.direction, atol=1e-5)
    assert score(s.doc.code()) == pytest.approx(r.score_after, abs=1e-4)
    assert r.alpha <= 1.5
    assert s.history.count() == 1 and window.attributes.repair_note.isVisibleTo(window)
    wait_full_frame(qtbot, window)
    np.testing.assert_allclose(s.last_frame.code, s.doc.code(), atol=0)

    path = tmp_path / "repaired.lsproj"  # the repair is part of the project
    assert s.save_project(path)
    state = s.doc.state
    window.act_undo.trigger()
    assert s.doc.state.repair is None
    np.testing.assert_array_equal(s.doc.code(), broken.base)
    with qtbot.waitSignal(s.documentChanged, timeout=WAIT):
        window.open_path(path)
    assert s.doc.state == state and s.doc.warnings == []
    window.act_reset.trigger()
    assert s.doc.state.repair is None

    s.set_document(Document.from_seed(generator, 42, 0.7, dirs), None)  # clean: nothing to do
    with qtbot.waitSignal(s.status, timeout=WAIT, check_params_cb=lambda t: t.startswith("Nothing to repair")):
        window.act_repair.trigger()
    assert s.doc.state.repair is None and s.history.count() == 0


def test_inversion_choices_are_remembered(qtbot, generator, tmp_path: Path) -> None:  # noqa: ANN001
    """View ▸ Inversion quality (preset, high fidelity) persists like the render device."""
    from latentstudio.gui.main_window import MainWindow
    from latentstudio.gui.session import EditorSession

    def window() -> MainWindow:
        session = EditorSession(device="cpu", generator_factory=lambda: generator,
                                autosave=Autosave(tmp_path / "autosave"))
        win = MainWindow(session, QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
        win.confirm_close = False
        qtbot.addWidget(win)
        return win

    first = window()
    assert first.session.invert_preset == "fast" and first.session.tune_steps == 0
    first._set_preset("quality")
    first.findChild(type(first.act_undo), "highFidelity").trigger()
    first.settings.sync()
    second = window()
    assert second.session.invert_preset == "quality" and second.session.tune_steps > 0
    assert second.act_high_fidelity.isChecked()


def test_video_open_frame_slider_and_export(qtbot, window, generator, tmp_path: Path,  # noqa: ANN001
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """File ▸ Open video: a document of the clip's first frame, a frame slider, and File ▸ Export
    video writing every frame with the edit, in the background."""
    pytest.importorskip("av")
    from latentstudio import video
    from test_video import _make_clip

    monkeypatch.setattr(video, "WARM_STEPS", 2)
    s = window.session
    s.invert_steps = 3
    clip = _make_clip(generator, tmp_path / "clip.mp4", n=3, audio=False)
    with qtbot.waitSignal(s.documentChanged, timeout=WAIT):
        window.open_path(clip)
    qtbot.waitUntil(lambda: s.task is None, timeout=WAIT)
    assert window.frame_bar.isVisibleTo(window) and window.act_export_video.isEnabled()
    assert window.frame_slider.maximum() == 2 and s.core.video.frame == 0
    s.set_value("smile", 1.0)
    with qtbot.waitSignal(s.documentChanged, timeout=WAIT):
        window.frame_slider.setValue(2)
    qtbot.waitUntil(lambda: s.task is None, timeout=WAIT)
    assert s.core.video.frame == 2 and s.doc.state.values == {"smile": 1.0} and window.errors == []
    out = tmp_path / "out.mp4"
    with qtbot.waitSignal(s.taskEnded, timeout=WAIT) as ended:
        s.export_video(out)
    assert ended.args == ["done"] and out.is_file() and len(list(video.frames(out))) == 3
    assert window.errors == []
