"""Documents with pivotally tuned generator weights (high-fidelity mode): renders, projects,
code files of ``latentstudio invert --tune`` opened as documents, damaged weights."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from latentstudio.document import NUM_SLOTS, Document, DocumentError, OtherFace, Source
from latentstudio.models.generator import to_uint8
from latentstudio.project import ProjectError, load_project, save_project


@pytest.fixture(scope="module")
def deltas(generator) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Weight changes for every parameter of the first synthesis block (all sizes render it),
    a tenth of each parameter's spread: visible, like a real tuning's."""
    rng = np.random.default_rng(0)
    out = {}
    for name, p in generator.synthesis.named_parameters():
        if name.startswith("blocks.0."):
            spread = float(p.detach().float().std()) if p.numel() > 1 else 0.1
            out[name] = (0.1 * spread * rng.standard_normal(tuple(p.shape))).astype(np.float16)
    assert out
    return out


@pytest.fixture()
def tuned_doc(generator, deltas) -> Document:  # noqa: ANN001
    code = np.repeat(generator.seed_w(5, 0.7).cpu().numpy()[None], NUM_SLOTS, 0)
    return Document(code, Source("seed", seed=5, psi=0.7), tuning=deltas)


def _plain(generator, code: np.ndarray, size: int) -> np.ndarray:  # noqa: ANN001
    return to_uint8(generator.synthesize(code, size=size))[0]


def test_tuned_document_renders_with_its_weights(generator, deltas, tuned_doc: Document) -> None:  # noqa: ANN001
    from latentstudio.render import Renderer
    from latentstudio.tune import tuned_generator

    reference = _plain(tuned_generator(generator, deltas), tuned_doc.code(), 256)
    got = tuned_doc.render(generator, 256)
    np.testing.assert_array_equal(got, reference)
    assert np.abs(got.astype(int) - _plain(generator, tuned_doc.code(), 256)).mean() > 1.0
    assert tuned_doc.generator_for(generator) is tuned_doc.generator_for(generator)  # built once
    # the identity panel mixes in another face: its details must not be pulled back to this photo's
    other = OtherFace(tuned_doc.base + 0.1, "seed 6", {"kind": "seed", "seed": 6})
    mixed = tuned_doc.state.with_identity(other=other, id_alpha=1.0)
    assert tuned_doc.generator_for(generator, mixed) is generator
    # the app's renderer asks the document for its generator on the worker thread
    frames = []
    r = Renderer(generator, on_frame=frames.append)
    r.start()
    r.request(tuned_doc.code(), 256, generator_for=tuned_doc.generator_for)
    assert r.wait_idle(60) and len(frames) == 1
    np.testing.assert_array_equal(frames[0].face, reference)
    r.stop()
    assert tuned_doc.edits_summary()["tuned"] is True


def test_tuned_project_round_trip(generator, deltas, tuned_doc: Document, tmp_path: Path) -> None:  # noqa: ANN001
    save_project(tuned_doc, tmp_path / "t.lsproj")
    with zipfile.ZipFile(tmp_path / "t.lsproj") as z:
        assert json.loads(z.read("project.json"))["version"] == 2  # version-1 readers refuse it
    back = load_project(tmp_path / "t.lsproj")
    assert sorted(back.tuning) == sorted(deltas) and back.warnings == []
    for k, v in deltas.items():
        np.testing.assert_array_equal(back.tuning[k], v)
    np.testing.assert_array_equal(back.render(generator, 256), tuned_doc.render(generator, 256))
    plain = Document(tuned_doc.base, Source("seed", seed=5, psi=0.7))
    save_project(plain, tmp_path / "p.lsproj")
    with zipfile.ZipFile(tmp_path / "p.lsproj") as z:
        assert json.loads(z.read("project.json"))["version"] == 1  # untuned projects stay readable
    assert load_project(tmp_path / "p.lsproj").tuning == {}


def test_damaged_tuned_weights(generator, deltas, tuned_doc: Document, tmp_path: Path) -> None:  # noqa: ANN001
    name = next(iter(deltas))
    bad = dict(deltas)
    bad[name] = np.full_like(deltas[name], np.nan)
    with pytest.raises(DocumentError, match=re.escape(name)):
        Document(tuned_doc.base, tuned_doc.source, tuning=bad)
    # a project whose tuned array was damaged on disk
    path = tmp_path / "d.lsproj"
    save_project(tuned_doc, path)
    with zipfile.ZipFile(path) as z:
        meta, npz = z.read("project.json"), z.read("arrays.npz")
    import io

    with np.load(io.BytesIO(npz)) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["tuned/" + name] = np.array(["not", "numbers"])
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("project.json", meta)
        z.writestr("arrays.npz", buf.getvalue())
    with pytest.raises(ProjectError, match="damaged project file.*tuned weights"):
        load_project(path)
    # weights for another generator: one clear error, then the plain generator renders
    odd = Document(tuned_doc.base, tuned_doc.source, tuning={"blocks.0.nothing": np.zeros(3, np.float16)})
    with pytest.raises(DocumentError, match="unknown generator parameter"):
        odd.generator_for(generator)
    assert odd.generator_for(generator) is generator and odd.tuning == {}
    assert any("tuned weights dropped" in w for w in odd.warnings)


def test_code_file_opens_as_a_document(generator, deltas, tmp_path: Path) -> None:  # noqa: ANN001
    from PIL import Image

    from latentstudio.codes import save_code

    photo = tmp_path / "face.png"
    Image.fromarray(np.full((300, 200, 3), 128, np.uint8)).save(photo)
    code = np.repeat(generator.seed_w(8, 0.7).cpu().numpy()[None], NUM_SLOTS, 0)
    quad = np.array([[20, 40], [20, 260], [180, 260], [180, 40]], np.float64)
    lms = np.tile(np.array([[100.0, 150.0]], np.float32), (68, 1))
    path = tmp_path / "c.npz"
    save_code(path, code, quad=quad, landmarks=lms, source_size=np.array([200, 300]),
              photo=np.array(str(photo)), face_index=np.array(1), **{"tuned/" + k: v for k, v in deltas.items()})
    doc = Document.from_code_file(path)
    assert doc.source.placement.face_index == 1
    assert doc.source.kind == "photo" and doc.source.can_paste_back and doc.source.placement.size == (200, 300)
    np.testing.assert_array_equal(doc.source.placement.quad, quad)
    assert sorted(doc.tuning) == sorted(deltas) and doc.warnings == []
    np.testing.assert_array_equal(doc.base, code)
    Image.fromarray(np.full((100, 200, 3), 128, np.uint8)).save(photo)  # cropped since
    cropped = Document.from_code_file(path)
    assert cropped.source.kind == "code" and any("changed size" in w for w in cropped.warnings)
    photo.unlink()  # the photo moved: the code still opens, without paste-back
    gone = Document.from_code_file(path)
    assert gone.source.kind == "code" and not gone.source.can_paste_back
    assert any("source photo not found" in w for w in gone.warnings)
    np.save(tmp_path / "w.npy", code[0])  # a bare W code
    assert Document.from_code_file(tmp_path / "w.npy").tuning == {}
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DocumentError, match="bad.npz"):
        Document.from_code_file(tmp_path / "bad.npz")


def test_open_photo_with_tuning_headless(generator, tmp_path: Path) -> None:  # noqa: ANN001
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    from latentstudio.tune import TuneSettings

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    from latentstudio.photo import invert_photo

    seen = []
    code = invert_photo(photo, steps=2, tune=TuneSettings(steps=3, size=256), generator=generator,
                        progress=seen.append)
    assert seen[0].stage == "align" and seen[0].preview.shape == (1024, 1024, 3)
    assert [(p.done, p.total) for p in seen[1:]] == [(i, 5) for i in range(1, 6)]  # one scale for both phases
    doc = Document.from_photo(code)
    assert doc.tuning and doc.source.can_paste_back
    assert all(name in dict(generator.synthesis.named_parameters()) for name in doc.tuning)
    assert any(np.abs(d.astype(np.float32)).max() > 0 for d in doc.tuning.values())


def test_exported_code_renders_like_the_app(generator, tuned_doc: Document, tmp_path: Path) -> None:  # noqa: ANN001
    """File ▸ Export code: the command line renders the same face from the file."""
    from PIL import Image

    from latentstudio.cli import main
    from latentstudio.codes import load_code_extras

    path = tmp_path / "edited.npz"
    tuned_doc.export_code(path)
    assert sorted(k for k in load_code_extras(path) if k.startswith("tuned/")) == \
        sorted("tuned/" + k for k in tuned_doc.tuning)
    assert main(["render", "--code", str(path), "--size", "256", "-o", str(tmp_path / "cli.png")]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "cli.png").convert("RGB")),
                                  tuned_doc.render(generator, 256))
    back = Document.from_code_file(path)
    np.testing.assert_array_equal(back.base, tuned_doc.code())
    with pytest.raises(DocumentError, match="npz"):
        tuned_doc.export_code(tmp_path / "edited.png")
