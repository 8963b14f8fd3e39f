"""A transferred face in the attribute face's own hair and background (``identity.surroundings``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentstudio.face.detect import aligned_landmarks
from latentstudio.face.parsing import BLOCKS, FaceParsing
from latentstudio.identity import api
from latentstudio.identity.surroundings import InSurroundings
from latentstudio.models.generator import to_uint8
from latentstudio.render import render_scene

A_SEED, B_SEED = 11, 24


@pytest.fixture(scope="module")
def models(generator):  # noqa: ANN001, ANN201
    return api.IdentityModels.load(generator)


@pytest.fixture(scope="module")
def pair(generator) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    return tuple(np.repeat(generator.seed_w(s, 0.7).numpy()[None], 23, 0) for s in (A_SEED, B_SEED))


def test_styles_mixed_over_the_image_are_each_codes_own_where_the_mask_is_whole(generator, pair) -> None:  # noqa: ANN001
    syn = generator.synthesis
    a, b = (torch.from_numpy(c)[None] for c in pair)
    with torch.no_grad():
        x = syn.features(a, 5)
        ones, zeros = torch.ones(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
        torch.testing.assert_close(syn.tail_mixed(x, a, b, ones, 5), syn.tail(x, a, 5), atol=2e-4, rtol=0)
        torch.testing.assert_close(syn.tail_mixed(x, a, b, zeros, 5), syn.tail(x, b, 5), atol=2e-4, rtol=0)
        half = syn.tail_mixed(x, a, b, torch.full((1, 1, 64, 64), 0.5), 5)
        assert not torch.allclose(half, syn.tail(x, a, 5), atol=1e-2)


def test_the_fast_twins_mixed_styles_and_surroundings_match_the_reference_modules(generator, models, pair,  # noqa: ANN001
                                                                                     monkeypatch) -> None:
    a, b = (torch.from_numpy(c)[None] for c in pair)
    fast = generator.fast()
    assert fast is not None
    mask = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = generator.synthesis.tail_mixed(generator.synthesis.features(a, 5), a, b, mask, 5)
        got = fast.tail_mixed(fast.features(a, 5), a, b, mask, 5)
        torch.testing.assert_close(got, want, atol=2e-4, rtol=0)
        by = models.surroundings
        t = api.transfer(pair[0], pair[1], lock=False, models=models)
        twin = {size: by.render(generator, t, pair[1], size) for size in (128, 256, 1024)}
        monkeypatch.setattr(generator, "fast", lambda: None)  # as on CUDA: the reference modules
        for size, img in twin.items():  # the parsing follows the twin's channel order
            torch.testing.assert_close(img, by.render(generator, t, pair[1], size), atol=2e-3, rtol=0)


def test_the_face_parsing_finds_the_face_and_not_its_surroundings(generator) -> None:  # noqa: ANN001
    parsing = FaceParsing.load()
    assert parsing is not None and parsing.centres.shape[0] == len(parsing.face) and 0 < int(parsing.face.sum()) < 8
    codes = torch.stack([generator.seed_w(s, 0.7) for s in (3, 5, 9)])[:, None].repeat(1, 23, 1)
    with torch.no_grad():
        cells = parsing.face_cells(generator.synthesis.features(codes, BLOCKS))
        images = to_uint8(generator.synthesize(codes, 256))
    side = cells.shape[-1]
    for face, img in zip(cells, images):
        lm = aligned_landmarks(img) * side / 256
        for point in (27, 30, 33, 39, 42, 62):  # the nose, the eyes' inner corners, the mouth
            x, y = np.clip(np.rint(lm[point]).astype(int), 0, side - 1)
            assert face[y, x] == 1, point
        assert face[:8, :8].sum() == face[:8, -8:].sum() == face[:4].sum() == 0  # corners, the top of the head
        assert 0.08 < face.mean() < 0.5


def test_a_result_is_shown_in_the_attribute_faces_hair_and_background(generator, models, pair) -> None:  # noqa: ANN001
    a, b = pair
    t = api.transfer(a, b, lock=False, models=models)
    by = models.surroundings
    assert by is not None
    shown = render_scene(generator, InSurroundings(t, b, by), 1024).astype(np.float32)
    own, attrs = (render_scene(generator, c, 1024).astype(np.float32) for c in (t, b))
    lm = aligned_landmarks(own.astype(np.uint8))
    top = slice(0, int(lm[17:27, 1].min() - 0.45 * (lm[8, 1] - lm[17:27, 1].min())))  # above the forehead
    sides = np.r_[0:int(lm[:, 0].min()) - 60, int(lm[:, 0].max()) + 60:1024]
    for region in ((top, slice(None)), (slice(None), sides)):
        assert np.abs(shown[region] - attrs[region]).mean() < 0.25 * np.abs(own[region] - attrs[region]).mean()
    face = (slice(int(lm[36, 1]), int(lm[57, 1])), slice(int(lm[36, 0]), int(lm[45, 0])))  # eyes to mouth
    assert np.abs(shown[face] - own[face]).mean() < 0.25 * np.abs(attrs[face] - own[face]).mean()
    same = render_scene(generator, InSurroundings(b, b, by), 1024).astype(np.float32)
    assert np.abs(same - attrs).max() <= 2  # one code everywhere: its own render
    for size in (128, 256, 512):  # the drag previews show the same picture
        small = render_scene(generator, InSurroundings(t, b, by), size)
        assert small.shape == (size, size, 3)


def test_the_result_styles_the_attribute_faces_ears_and_neck_too(generator, models, pair) -> None:  # noqa: ANN001
    from latentstudio.identity.surroundings import FIRST_BLOCK, MASK_FRAME, masks, outside_masks

    by = models.surroundings
    t = api.transfer(pair[0], pair[1], lock=False, models=models)
    with torch.no_grad():
        f_in, f_out = (generator.synthesis.features(torch.from_numpy(c)[None], FIRST_BLOCK) for c in (t, pair[1]))
        points_in, points_out = (by.landmark_net(generator.synthesize(torch.from_numpy(c)[None], 256).clamp(-1, 1))
                                 .float()[0].numpy() * MASK_FRAME for c in (t, pair[1]))
    skin = by.parsing.face[by.parsing.labels(f_out)][0].numpy()  # 128²: the outside face's skin, every part
    skin = np.kron(skin, np.ones((2, 2), bool))  # at MASK_FRAME²
    inner, _ = outside = outside_masks(by.parsing, f_out, points_out, MASK_FRAME)
    _, plain = masks(by.parsing, f_in, points_in, MASK_FRAME, (inner, np.zeros_like(inner)))
    _, styled = masks(by.parsing, f_in, points_in, MASK_FRAME, outside)
    plain, styled = plain[0, 0].numpy(), styled[0, 0].numpy()
    assert (styled >= plain - 1e-6).all()  # only more of the result's styles
    assert (plain[skin] < 0.5).mean() > 0.02  # skin the landmark regions miss (ears, neck) ...
    assert (styled[skin] >= 0.5).mean() > 0.95  # ... takes the result's styles, so its skin tone


@pytest.mark.parametrize("size", [128, 256])
def test_a_drag_preview_borrows_the_last_renders_mask(generator, models, pair, size: int) -> None:  # noqa: ANN001
    from latentstudio.identity.surroundings import Surroundings

    by = Surroundings(models.surroundings.parsing, models.surroundings.landmark_net)  # nothing rendered yet
    a, b = pair
    t = api.transfer(a, b, lock=False, models=models)
    exact = by.render(generator, t, b, size)
    torch.testing.assert_close(by.render(generator, t, b, size, draft=True), exact, atol=1e-5, rtol=0)  # its own mask
    by.render(generator, a, b, 512)  # the last render in these surroundings: another code
    borrowed = by.render(generator, t, b, size, draft=True)
    assert not torch.allclose(borrowed, exact, atol=1e-3)  # its mask, borrowed
    by.render(generator, t, b, 512)  # the last render: this code's own mask
    torch.testing.assert_close(by.render(generator, t, b, size, draft=True), exact, atol=1e-5, rtol=0)
    by.render(generator, a, b, 512)
    torch.testing.assert_close(by.render(generator, t, b, size), exact, atol=1e-5, rtol=0)  # not a draft: measured
    by.render(generator, a, b, 512)
    fresh = by.render(generator, t, a, size, draft=True)  # other surroundings: nothing to borrow
    torch.testing.assert_close(fresh, by.render(generator, t, a, size), atol=1e-5, rtol=0)


def test_a_drag_preview_borrows_the_mask_while_a_slider_moves_both_faces_a_little(generator, models, pair) -> None:  # noqa: ANN001
    """An attribute slider edits the inside and the outside code alike: a draft borrows the last
    render's mask while the outside face stays where it was, and measures its own once the face
    has moved (a turn of the head) or the outside is another person."""
    from latentstudio.edit.boundaries import load_all
    from latentstudio.identity.surroundings import Surroundings

    b = load_all()
    a, c = pair
    t = api.transfer(a, c, lock=False, models=models)
    by = Surroundings(models.surroundings.parsing, models.surroundings.landmark_net)

    def edited(code: np.ndarray, name: str, alpha: float) -> np.ndarray:
        lo, hi = b[name].layers
        out = code.copy()
        out[lo:hi + 1] += alpha * b[name].normal
        return out

    for name, alpha, borrows in (("age", 0.1, True), ("yaw", 3.0, False)):
        by.render(generator, t, c, 512)  # the last full render: unedited
        ti, co = edited(t, name, alpha), edited(c, name, alpha)
        exact = by.render(generator, ti, co, 256)
        by.render(generator, t, c, 512)
        draft = by.render(generator, ti, co, 256, draft=True)
        if borrows:  # the unedited face's mask: not the exact render, but near it
            assert not torch.allclose(draft, exact, atol=1e-4)
            assert float((draft - exact).abs().mean()) < 0.01
        else:
            torch.testing.assert_close(draft, exact, atol=1e-5, rtol=0)


def test_cli_results_keep_the_attribute_faces_surroundings_unless_told(tmp_path: Path, generator, pair, models) -> None:  # noqa: ANN001
    from PIL import Image

    from latentstudio.cli import main
    from latentstudio.codes import load_code_extras, save_code

    save_code(tmp_path / "a.npz", pair[0])
    save_code(tmp_path / "b.npz", pair[1])
    args = ["transfer", "--identity", str(tmp_path / "a.npz"), "--attributes", str(tmp_path / "b.npz"), "--no-lock"]
    assert main([*args, "--size", "256", "-o", str(tmp_path / "kept.png"), "--save-code", str(tmp_path / "t.npz")]) == 0
    assert main([*args, "--size", "256", "--own-surroundings", "-o", str(tmp_path / "own.png")]) == 0
    kept, own = (np.asarray(Image.open(tmp_path / f"{n}.png")).astype(np.float32) for n in ("kept", "own"))
    attrs = render_scene(generator, pair[1], 256).astype(np.float32)
    assert np.abs(kept[:40] - attrs[:40]).mean() < 0.25 * np.abs(own[:40] - attrs[:40]).mean()
    np.testing.assert_array_equal(load_code_extras(tmp_path / "t.npz")["surroundings"], pair[1])
    assert main(["render", "--code", str(tmp_path / "t.npz"), "--size", "256", "-o", str(tmp_path / "again.png")]) == 0
    again = np.asarray(Image.open(tmp_path / "again.png")).astype(np.float32)
    assert np.abs(again - kept).max() <= 2  # the code file shows what the command wrote


def test_batch_results_keep_each_inputs_edited_surroundings_unless_told(tmp_path: Path, generator, pair) -> None:  # noqa: ANN001
    from PIL import Image

    from latentstudio import batch
    from latentstudio.codes import save_code
    from latentstudio.edit.apply import apply_edits
    from latentstudio.edit.boundaries import load_all

    (tmp_path / "in").mkdir()
    save_code(tmp_path / "in" / "b.npz", pair[1])
    save_code(tmp_path / "a.npz", pair[0])
    shown = {}
    for name, kept in (("kept", True), ("own", False)):
        opts = batch.Options(op="transfer", identity=str(tmp_path / "a.npz"), alphas={"hair_color": 2.0}, size=256,
                             surroundings=kept)
        [result] = batch.run(batch.plan([str(tmp_path / "in" / "b.npz")], tmp_path / name, "transfer"), opts, tmp_path / name)
        assert result.status == "ok", result.error
        shown[name] = np.asarray(Image.open(result.output)).astype(np.float32)
    edited = apply_edits(pair[1], {"hair_color": 2.0}, load_all())  # the input, with the same edit
    attrs, unedited = (render_scene(generator, c, 256).astype(np.float32)[:40] for c in (edited, pair[1]))
    kept, own = shown["kept"][:40], shown["own"][:40]  # above the forehead
    assert np.abs(kept - attrs).mean() < 0.25 * np.abs(own - attrs).mean()
    assert np.abs(kept - attrs).mean() < 0.25 * np.abs(kept - unedited).mean()  # the input's hair, edited too


def test_the_document_shows_an_identity_result_in_its_attribute_faces_surroundings(generator, pair, tmp_path: Path) -> None:  # noqa: ANN001
    from latentstudio.document import (Document, IdentityRefinement, OtherFace, RepairOffset, Source,
                                       load_default_directions)
    from latentstudio.project import load_project, save_project
    from latentstudio.runtime import Runtime

    dirs, _ = load_default_directions()
    doc = Document(pair[1], Source("seed", seed=B_SEED, psi=0.7), dirs,
                   runtime=Runtime("cpu", generator_factory=lambda: generator))
    edits = doc.state.with_value("smile", 1.0)
    assert isinstance(doc.scene(edits), np.ndarray)  # no identity panel: the code itself
    st = edits.with_identity(other=OtherFace(pair[0], "seed", {"kind": "seed", "seed": A_SEED}), id_alpha=1.0)
    scene = doc.scene(st, draft=True)
    assert isinstance(scene, InSurroundings)
    np.testing.assert_allclose(scene.outside, doc.code(edits), atol=1e-6)  # this face, with the same edits
    np.testing.assert_allclose(scene.code, doc.code(st, draft=True), atol=1e-6)
    giving = st.with_identity(attr_alpha=1.0)  # the second face gives the attributes: its surroundings
    np.testing.assert_allclose(doc.surroundings_code(giving), doc._edited(pair[0], giving), atol=1e-6)
    rep = RepairOffset(1.0, np.full((23, 512), 0.01, np.float32))  # a repair changes the face only:
    repaired = doc.scene(st.with_repair(rep), draft=True)  # around it, the attribute face without it
    np.testing.assert_allclose(repaired.outside, doc.code(edits), atol=1e-6)
    np.testing.assert_allclose(repaired.code, scene.code + 0.01, atol=1e-5)
    refined = st.with_identity(refined=IdentityRefinement(np.zeros((23, 512), np.float32), 3))
    own = refined.with_identity(surroundings=False)
    assert own.identity.refined is not None and isinstance(doc.scene(own, draft=True), np.ndarray)
    own_repaired = doc.scene(own.with_repair(rep), draft=True)  # the result's own surroundings, unrepaired
    np.testing.assert_allclose(own_repaired.outside, doc.code(own, draft=True), atol=1e-6)
    doc.set_state(own)
    save_project(doc, tmp_path / "p.lsproj")
    back = load_project(tmp_path / "p.lsproj", dirs).state.identity
    assert back.surroundings is False and back.refined == own.identity.refined  # a refined panel reopens too


def test_a_result_whose_face_sits_elsewhere_is_shown_as_its_own_render() -> None:
    from latentstudio.identity.surroundings import FIT_FAR, FIT_NEAR, surroundings_weight

    rng = np.random.default_rng(0)
    face = rng.uniform(0.3, 0.7, (68, 2))
    face[36:42], face[42:48] = (0.4, 0.45), (0.6, 0.45)  # eyes 0.2 apart
    assert surroundings_weight(face, face) == 1.0
    for off, weight in ((FIT_NEAR * 0.2, 1.0), (FIT_FAR * 0.2, 0.0), ((FIT_NEAR + FIT_FAR) / 2 * 0.2, 0.5)):
        assert surroundings_weight(face + (off, 0.0), face) == pytest.approx(weight, abs=1e-6)


def _chroma(image: torch.Tensor) -> torch.Tensor:
    from latentstudio.face.colour import chroma

    return chroma(image)


def _chroma_on(image: torch.Tensor, mask: np.ndarray) -> float:
    """Mean |(Cb, Cr)| of ``image`` (1,3,S,S) where ``mask`` (S,S) is."""
    return float(_chroma(image)[0].norm(dim=0)[torch.from_numpy(mask > 0.5)].mean())


def _same_brightness(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Brightness kept but where a colour was clipped to the RGB range (a few pixels)."""
    from latentstudio.face.colour import luma

    return float(torch.quantile((luma(a) - luma(b)).abs().flatten(), 0.99)) < 2e-3


def test_a_photos_colour_is_its_lighting_not_its_persons(generator, pair) -> None:  # noqa: ANN001
    """A grey face (a black-and-white photo's) put into a colour face takes that face's colour; a
    colour face put into a grey photo turns grey; between two colour faces nothing changes."""
    from latentstudio.face.colour import face_colour, photo_colour
    from latentstudio.face.pasteback import aligned_face_mask

    colour = generator.synthesize(torch.from_numpy(pair[1])[None], 256)
    grey = colour.mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()  # the same face in black and white
    points = aligned_landmarks(to_uint8(colour)[0]) / 256
    face = aligned_face_mask(points * 256, 256, 0.0, 0.0)
    of_colour, of_grey = face_colour(colour, points), face_colour(grey, points)
    assert (of_colour.grey, of_grey.grey) == (0.0, 1.0)
    everywhere = torch.ones(1, 1, 64, 64)

    coloured = photo_colour(grey, everywhere, of_grey, of_colour)
    assert _same_brightness(coloured, grey)
    wanted = _chroma_on(colour, face)
    error = float((_chroma(coloured) - _chroma(colour))[0].norm(dim=0)[torch.from_numpy(face > 0.5)].mean())
    assert error < 0.35 * wanted  # most of the colour comes back from the tint alone
    assert _chroma_on(coloured, face) > 0.6 * wanted

    greyed = photo_colour(colour, everywhere, of_colour, of_grey)
    assert _chroma_on(greyed, face) < 0.1 * wanted
    assert _same_brightness(greyed, colour)

    other = face_colour(generator.synthesize(torch.from_numpy(pair[0])[None], 256), points)
    assert photo_colour(colour, everywhere, of_colour, other) is colour  # two colour faces: untouched


def test_a_result_put_into_a_grey_photo_is_grey_inside_its_face_only(generator, models, pair, monkeypatch) -> None:  # noqa: ANN001
    from latentstudio.face.colour import FaceColour
    from latentstudio.face.pasteback import aligned_face_mask
    from latentstudio.identity import surroundings
    from latentstudio.identity.surroundings import Surroundings

    by = Surroundings(models.surroundings.parsing, models.surroundings.landmark_net)  # nothing cached
    t = api.transfer(pair[0], pair[1], lock=False, models=models)
    plain = by.render(generator, t, pair[1], 256)
    read = surroundings.face_colour
    calls: list[int] = []

    def outside_grey(preview: torch.Tensor, *args: object) -> FaceColour:  # the outside face's is read first
        calls.append(1)
        c = read(preview, *args)
        return FaceColour(0.0, torch.zeros_like(c.tint), torch.zeros_like(c.strength)) if len(calls) == 1 else c

    monkeypatch.setattr(surroundings, "face_colour", outside_grey)
    by = Surroundings(models.surroundings.parsing, models.surroundings.landmark_net)
    shown = by.render(generator, t, pair[1], 256)
    points = aligned_landmarks(to_uint8(plain)[0]) / 256
    face = aligned_face_mask(points * 256, 256, 0.0, 0.0)
    assert _chroma_on(shown, face) < 0.1 * _chroma_on(plain, face)
    torch.testing.assert_close(shown[..., :24, :24], plain[..., :24, :24], atol=1e-5, rtol=0)  # the background stays
    assert len(calls) == 2
