"""The headless editing session: code = f(state), projects (.lsproj), autosave, export."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from latentstudio.document import (
    NUM_SLOTS,
    Document,
    DocumentError,
    EditState,
    IdentityRefinement,
    OtherFace,
    RepairOffset,
    Source,
    identity_available,
    import_directions,
    load_default_directions,
    make_direction,
)
from latentstudio.edit.boundaries import Boundary, save_index
from latentstudio.face.placement import Placement
from latentstudio.project import Autosave, ProjectError, load_project, recoverable, save_project


def random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(512)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A tiny boundary folder: three random unit directions, one on a slot range."""
    rng = np.random.default_rng(0)
    bs = [Boundary("smile", random_unit(rng), label="Smile"),
          Boundary("age", random_unit(rng), label="Age", range=(-2.0, 4.0)),
          Boundary("pose", random_unit(rng), label="Pose", layers=(0, 6))]
    save_index(tmp_path / "bnd", bs)
    return tmp_path / "bnd"


@pytest.fixture()
def doc(folder: Path) -> Document:
    dirs, reason = load_default_directions([folder])
    assert reason is None and [d.name for d in dirs] == ["age", "pose", "smile"]
    base = np.random.default_rng(1).standard_normal((NUM_SLOTS, 512)).astype(np.float32)
    return Document(base, Source("seed", seed=3, psi=0.7), dirs)


def test_code_is_base_plus_alpha_n(doc: Document) -> None:
    n = doc.directions["smile"].normal
    doc.set_state(doc.state.with_value("smile", 1.5))
    np.testing.assert_allclose(doc.code(), doc.base + 1.5 * n[None], atol=1e-5)
    # a second slider adds its own offset, only on its slot range (0..6 inclusive)
    doc.set_state(doc.state.with_value("pose", -2.0))
    m = doc.directions["pose"].normal
    expect = doc.base + 1.5 * n[None]
    expect[:7] += -2.0 * m
    np.testing.assert_allclose(doc.code(), expect, atol=1e-5)
    # the state is immutable: the earlier state still gives the earlier code
    assert doc.state.value("pose") == -2.0 and EditState().value("pose") == 0.0


def test_slot_range_override_and_reset(doc: Document) -> None:
    n = doc.directions["age"].normal
    st = doc.state.with_value("age", 2.0).with_layers("age", (8, 10))
    doc.set_state(st)
    delta = doc.code() - doc.base
    assert np.allclose(delta[:8], 0) and np.allclose(delta[11:], 0)
    np.testing.assert_allclose(delta[8:11], np.repeat(2.0 * n[None], 3, 0), atol=1e-5)
    doc.set_state(doc.state.reset_sliders())
    np.testing.assert_array_equal(doc.code(), doc.base)
    with pytest.raises(DocumentError, match="slot range"):
        doc.state.with_layers("age", (5, 30))
    with pytest.raises(DocumentError, match="unknown slider"):
        doc.set_state(EditState().with_value("nope", 1.0))
    with pytest.raises(DocumentError, match="finite"):
        doc.state.with_value("age", float("nan"))


def test_keep_lock_conditions_the_other_sliders(doc: Document) -> None:
    n_age = doc.directions["age"].normal.astype(np.float64)
    doc.set_state(doc.state.with_value("smile", 2.0))
    free = (doc.code() - doc.base)[0] @ n_age
    assert abs(free) > 1e-3  # random directions are not orthogonal
    doc.set_state(doc.state.with_keep("age", True))
    kept = (doc.code() - doc.base)[0] @ n_age
    assert abs(kept) < 1e-5
    # a locked slider that was moved keeps its own offset along its direction
    doc.set_state(doc.state.with_value("age", 1.0))
    assert (doc.code() - doc.base)[0] @ n_age == pytest.approx(1.0, abs=1e-4)


def test_identity_state_roles_and_missing_mapper(doc: Document) -> None:
    other = OtherFace(doc.base + 1, "seed 7", {"kind": "seed", "seed": 7})
    st = doc.state.with_identity(other=other, id_alpha=1.0, attr_alpha=0.25)
    sw = st.swapped_roles()
    assert sw.identity.role == "attributes" and (sw.identity.id_alpha, sw.identity.attr_alpha) == (0.25, 1.0)
    assert sw.swapped_roles().identity == st.identity
    reason = identity_available()
    if reason is not None:  # the mapper is optional: a clear error with the reason, no crash
        with pytest.raises(DocumentError, match=re.escape(reason)):
            doc.code(st)
    assert not EditState().identity.active and st.identity.active
    refined = st.with_identity(refined=IdentityRefinement(np.full((23, 512), 0.01, np.float32), 40))
    assert refined.identity.refined.steps == 40
    assert refined.with_identity(id_alpha=0.5).identity.refined is None  # any panel change drops it
    with pytest.raises(DocumentError):
        IdentityRefinement(np.full((23, 512), np.nan, np.float32), 40)


def test_project_round_trip(doc: Document, tmp_path: Path, folder: Path) -> None:
    user = make_direction("mine", np.ones(512), label="Mine", kind="user")
    doc.add_directions([user])
    direction = np.zeros((23, 512), np.float32)
    direction[4:] = 512 ** -0.5  # a W+ repair: slots 4–22 only
    rep = RepairOffset(0.75, direction, -0.4, 0.1)
    doc.set_state(doc.state.with_value("smile", 0.5).with_value("mine", -1.25).with_keep("age", True)
                  .with_layers("pose", (2, 5)).with_value("pose", 1.0).with_repair(rep))
    plain = doc.code(doc.state.with_repair(None))
    np.testing.assert_allclose(doc.code(), plain + 0.75 * direction, atol=1e-6)
    np.testing.assert_array_equal(doc.code()[:4], plain[:4])
    old = RepairOffset(0.5, np.full(512, 512 ** -0.5))  # a (512,) one (older projects): every slot
    assert old.offset.shape == (23, 512) and np.allclose(old.offset, 0.5 * 512 ** -0.5)
    path = tmp_path / "a.lsproj"
    save_project(doc, path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    dirs, _ = load_default_directions([folder])
    back = load_project(path, dirs)
    assert back.state == doc.state and back.warnings == []
    np.testing.assert_array_equal(back.base, doc.base)
    np.testing.assert_allclose(back.code(), doc.code(), atol=1e-6)
    assert back.directions["mine"].label == "Mine" and back.source.seed == 3
    # opened without the installed boundaries, the used ones come from the project itself
    alone = load_project(path)
    np.testing.assert_allclose(alone.code(), doc.code(), atol=1e-6)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "schema", "newer", "shape", "nan", "json",
                                    "repair"])
def test_damaged_project_gives_clear_error(doc: Document, tmp_path: Path, damage: str) -> None:
    good = tmp_path / "good.lsproj"
    doc.set_state(doc.state.with_value("smile", 1.0).with_repair(RepairOffset(1.0, np.eye(512)[0])))
    save_project(doc, good)
    bad = tmp_path / "bad.lsproj"
    data = good.read_bytes()
    if damage == "garbage":
        bad.write_bytes(b"\x00not a zip" * 50)
    elif damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    else:
        with zipfile.ZipFile(good) as z:
            meta = json.loads(z.read("project.json"))
            npz = z.read("arrays.npz")
        if damage == "schema":
            meta["schema"] = "something-else"
        elif damage == "newer":
            meta["version"] = 99
        elif damage == "repair":
            meta["state"]["repair"]["alpha"] = "lots"
        elif damage in ("shape", "nan"):
            import io

            arrays = dict(np.load(io.BytesIO(npz)))
            arrays["base"] = arrays["base"][:5] if damage == "shape" else arrays["base"] * np.nan
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            npz = buf.getvalue()
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("project.json", "{not json" if damage == "json" else json.dumps(meta))
            z.writestr("arrays.npz", npz)
    with pytest.raises(ProjectError) as info:
        load_project(bad)
    msg = str(info.value)
    assert str(bad) in msg
    expected = {"garbage": "not a LatentStudio project", "truncated": "damaged",
                "schema": "not a LatentStudio project", "newer": "newer LatentStudio",
                "shape": "'base'", "nan": "'base'", "json": "not valid JSON",
                "repair": "artifact repair"}[damage]
    assert expected in msg


def test_missing_photo_opens_with_warning(doc: Document, tmp_path: Path) -> None:
    photo = tmp_path / "face.png"
    photo.write_bytes(b"x")
    src = Source("photo", photo, "0" * 64, Placement(photo, (10, 10), np.zeros((4, 2)), np.zeros((68, 2))))
    d = Document(doc.base, src, doc.directions.values())
    save_project(d, tmp_path / "p.lsproj")
    photo.unlink()
    back = load_project(tmp_path / "p.lsproj")
    assert not back.source.can_paste_back
    assert any("not found" in w for w in back.warnings)
    with pytest.raises(DocumentError, match="original photo"):
        back.compose(np.zeros((256, 256, 3), np.uint8))


def test_import_directions(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    np.save(tmp_path / "My Dir.npy", rng.standard_normal((1, 512)).astype(np.float32))
    (d,) = import_directions(tmp_path / "My Dir.npy")
    assert d.name == "my_dir" and d.source == "user" and np.linalg.norm(d.normal) == pytest.approx(1, abs=1e-6)
    comp = np.linalg.qr(rng.standard_normal((512, 4)))[0].T
    np.savez(tmp_path / "pca.npz", comp=comp, std=np.array([2.0, 1.5, 1.0, 0.5]))
    pcs = import_directions(tmp_path / "pca.npz", max_components=3)
    assert [p.label for p in pcs] == ["PCA 1", "PCA 2", "PCA 3"] and pcs[0].range == (-6.0, 6.0)
    (tmp_path / "bad.npy").write_bytes(b"junk")
    with pytest.raises(DocumentError, match="bad.npy"):
        import_directions(tmp_path / "bad.npy")
    np.save(tmp_path / "zero.npy", np.zeros(512, np.float32))
    with pytest.raises(DocumentError, match="zero"):
        import_directions(tmp_path / "zero.npy")


def test_autosave_and_recovery(doc: Document, tmp_path: Path) -> None:
    auto = Autosave(tmp_path / "auto")
    doc.set_state(doc.state.with_value("age", 1.0))
    path = auto.write(doc)
    assert path.is_file() and recoverable(tmp_path / "auto") == []  # our own session is alive
    dead = tmp_path / "auto" / "session-999999999.lsproj"  # a pid that cannot be running
    os.replace(path, dead)
    assert recoverable(tmp_path / "auto") == [dead]
    assert load_project(dead).state == doc.state
    auto.write(doc)
    auto.clear()
    assert not auto.path.exists()


def test_a_snapshot_writes_the_state_it_was_asked_for(doc: Document, tmp_path: Path) -> None:
    """The autosave runs on a thread while the user goes on editing: it writes the state (and
    that state's code) it was given, never a mix of the state then and the edits made since."""
    from latentstudio.safety import load_npz

    asked = doc.state.with_value("age", 1.0)
    code = doc.code(asked)
    doc.set_state(asked.with_value("smile", -2.0))  # edited meanwhile
    path = Autosave(tmp_path / "auto").write(doc, asked, code)
    back = load_project(path)
    assert back.state == asked
    np.testing.assert_array_equal(back.code(), code)
    with zipfile.ZipFile(path) as z:
        np.testing.assert_array_equal(load_npz(z.read("arrays.npz"), "arrays.npz")["code"], code)


def test_export_writes_image_with_edit_metadata(doc: Document, generator, tmp_path: Path) -> None:
    from PIL import Image

    from latentstudio.face.image_io import load_metadata

    doc.set_state(doc.state.with_value("smile", 1.0))
    face = np.full((1024, 1024, 3), 128, np.uint8)  # a stand-in render keeps this test fast
    out = tmp_path / "out.jpg"
    doc.export(out, generator, "aligned", aligned_rgb=face)
    with Image.open(out) as im:
        assert im.size == (1024, 1024) and im.format == "JPEG"
    meta = json.loads(load_metadata(out)["latentstudio"])
    assert meta["edits"] == {"smile": 1.0} and meta["mode"] == "aligned"
    with pytest.raises(DocumentError, match="not opened from a photo"):
        doc.export(tmp_path / "x.png", generator, "photo", aligned_rgb=face)
    with pytest.raises(DocumentError, match="extension"):
        doc.export(tmp_path / "x.bmpx", generator, "aligned", aligned_rgb=face)


# ----------------------------------------------------------------------------- renderer
class _GatedGenerator:
    """Stands in for Generator: each render waits for ``gate`` and records what it drew."""

    def __init__(self) -> None:
        import threading

        self.gate = threading.Event()
        self.drawn: list[tuple[float, int]] = []

    def synthesize(self, code, size=256):  # noqa: ANN001, ANN201
        import torch

        self.gate.wait(10)
        value = float(np.asarray(code)[0, 0])
        self.drawn.append((value, size))
        if value < 0:
            raise MemoryError("out of memory (simulated)")
        return torch.full((1, 3, size, size), value / 1000.0)


def _until(cond, timeout: float = 10.0) -> None:  # noqa: ANN001
    import time

    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.001)


def _code(v: float) -> np.ndarray:
    c = np.zeros((NUM_SLOTS, 512), np.float32)
    c[0, 0] = v
    return c


def test_renderer_newest_request_wins_and_nothing_stale_is_delivered() -> None:
    from latentstudio.render import Renderer

    gen = _GatedGenerator()
    frames, errors = [], []
    r = Renderer(gen, on_frame=frames.append, on_error=lambda s, c, e: errors.append((s, e)))
    r.start()
    assert r.wait_ready(5)
    r.request(_code(0), 256)
    _until(lambda: r._current is not None)  # the first request is now on the worker
    seqs = [r.request(_code(i), 256) for i in range(1, 201)]
    gen.gate.set()
    assert r.wait_idle(10)
    assert [v for v, _ in gen.drawn] == [0, 200]  # everything in between was skipped unrendered
    assert r.stats.skipped == 199 and not errors
    assert [f.seq for f in frames] == sorted(f.seq for f in frames) and frames[-1].seq == seqs[-1]
    assert frames[-1].code[0, 0] == 200
    # a failure is reported and the worker keeps serving
    r.request(_code(-1), 256)
    assert r.wait_idle(10) and len(errors) == 1 and "out of memory" in str(errors[0][1])
    r.request(_code(7), 256)
    assert r.wait_idle(10) and frames[-1].code[0, 0] == 7
    r.stop()


def test_renderer_drops_full_render_overtaken_by_preview() -> None:
    from latentstudio.render import Renderer

    gen = _GatedGenerator()
    frames = []
    r = Renderer(gen, on_frame=frames.append)
    r.start()
    r.wait_ready(5)
    full = r.request(_code(1), 1024)
    _until(lambda: r._current is not None)
    preview = r.request(_code(2), 256)  # the user grabbed a slider again
    gen.gate.set()
    assert r.wait_idle(10)
    assert [f.seq for f in frames] == [preview] and full < preview and r.stats.dropped == 1
    r.stop()


def test_renderer_start_failure_is_reported() -> None:
    from latentstudio.render import Renderer

    failures = []

    def broken():  # noqa: ANN202
        raise RuntimeError("model 'mobilestylegan' is not installed")

    r = Renderer(broken, on_frame=lambda f: None, on_start_failed=failures.append)
    r.start()
    assert not r.wait_ready(5) and "not installed" in str(failures[0])


def test_interruptible_synthesis_matches_generator(generator) -> None:
    from latentstudio.models.generator import to_uint8
    from latentstudio.render import Renderer, _Superseded, synthesize_uint8

    code = np.repeat(generator.seed_w(42).cpu().numpy()[None], NUM_SLOTS, 0)
    for size in (256, 512):
        np.testing.assert_array_equal(synthesize_uint8(generator, code, size),
                                      to_uint8(generator.synthesize(code, size=size))[0])
    with pytest.raises(_Superseded):
        synthesize_uint8(generator, code, 256, should_stop=lambda: True)
    frames = []
    r = Renderer(generator, on_frame=frames.append)
    r.start()
    r.request(lambda: code, 256, post=lambda img: img[:10])  # callable codes run on the worker
    assert r.wait_idle(30) and frames[0].image.shape == (10, 256, 3) and frames[0].face.shape == (256, 256, 3)
    r.stop()


def test_open_photo_headless_and_paste_back(generator, tmp_path: Path) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    photo = tmp_path / "astronaut.png"
    rgb = skimage_data.astronaut()
    Image.fromarray(rgb).save(photo)
    from latentstudio.runtime import Runtime
    from latentstudio.session import Session

    session = Session(Runtime("cpu", generator_factory=lambda: generator))
    session.invert_steps = 1
    doc = session.open_photo(photo)  # the app's photo pipeline, without Qt
    assert session.doc is doc and session.history.count() == 0
    assert doc.source.kind == "photo" and doc.source.can_paste_back and doc.source.placement.size == (512, 512)
    assert doc.source.aligned().shape == (1024, 1024, 3)
    face = np.zeros((256, 256, 3), np.uint8)  # any edited crop: a black face makes the paste visible
    out = doc.compose(face)
    assert out.shape == rgb.shape
    changed = np.any(out != rgb, axis=2)
    assert 0.02 < changed.mean() < 0.5  # the face region, not the whole photo
    assert not changed[:, :20].any() and not changed[-20:].any()  # far from the face: untouched
    save_project(doc, tmp_path / "p.lsproj")
    back = load_project(tmp_path / "p.lsproj")
    assert back.source.can_paste_back and back.source.sha256 == doc.source.sha256
    np.testing.assert_array_equal(back.compose(face), out)
