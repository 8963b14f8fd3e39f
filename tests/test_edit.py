"""Editing: conditional projection math, boundary files and index, edits, training, import, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from latentstudio.edit import train
from latentstudio.progress import Cancelled
from latentstudio.edit.apply import apply_edits, edit_delta, edit_directions
from latentstudio.edit.boundaries import (SHIPPED_DIR, Boundary, BoundaryError, load_index, parse_layers,
                                          read_vector, save_index)
from latentstudio.edit.train import import_boundary
from latentstudio.edit.conditional import condition, orthogonal_component

REFERENCE = Path("/work/shared/reference-boundaries")
D = 16  # the projection maths does not care about the dimension; small keeps hypothesis fast

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=32)


def _vectors(k: int):  # noqa: ANN202
    return arrays(np.float64, (k, D), elements=finite).filter(
        lambda a: np.linalg.matrix_rank(a, tol=1e-3) == len(a) and np.all(np.linalg.norm(a, axis=1) > 1e-2))


def _rng_unit(rng: np.random.Generator, k: int = 1, d: int = 512) -> np.ndarray:
    v = rng.standard_normal((k, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------- projection
@settings(max_examples=60, deadline=None)
@given(n=arrays(np.float64, (D,), elements=finite), c=st.integers(1, 5).flatmap(_vectors))
def test_projection_is_orthogonal_to_every_condition(n: np.ndarray, c: np.ndarray) -> None:
    resid = orthogonal_component(n, c)
    scale = 1.0 + np.linalg.norm(n)
    for row in c:
        assert abs(resid @ row) / np.linalg.norm(row) < 1e-6 * scale
    # projecting twice changes nothing, and n = resid + (part in the span of c)
    np.testing.assert_allclose(orthogonal_component(resid, c), resid, atol=1e-6 * scale)
    x, *_ = np.linalg.lstsq(c.T, n - resid, rcond=None)
    np.testing.assert_allclose(c.T @ x, n - resid, atol=1e-5 * scale)


@settings(max_examples=60, deadline=None)
@given(n=arrays(np.float64, (D,), elements=finite).filter(lambda a: np.linalg.norm(a) > 1e-2),
       c=_vectors(2))
def test_two_condition_closed_form_matches_least_squares(n: np.ndarray, c: np.ndarray) -> None:
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    x, *_ = np.linalg.lstsq(c.T, n, rcond=None)
    np.testing.assert_allclose(orthogonal_component(n, c), n - c.T @ x, atol=1e-6 * (1 + np.linalg.norm(n)))


@settings(max_examples=40, deadline=None)
@given(n=arrays(np.float64, (D,), elements=finite).filter(lambda a: np.linalg.norm(a) > 1e-2),
       c=arrays(np.float64, (D,), elements=finite).filter(lambda a: np.linalg.norm(a) > 1e-2))
def test_one_condition_formula(n: np.ndarray, c: np.ndarray) -> None:
    expected = n - (n @ c) / (c @ c) * c
    np.testing.assert_allclose(orthogonal_component(n, c[None]), expected, atol=1e-9 * (1 + np.linalg.norm(n)))


def test_condition_returns_unit_vector_and_handles_dependent_conditions() -> None:
    rng = np.random.default_rng(0)
    n, c1, c2 = _rng_unit(rng, 3)
    c = np.stack([c1, c2, c1 + 2 * c2, -c1])  # rank 2
    out = condition(n, c)
    assert out.dtype == np.float32 and abs(np.linalg.norm(out) - 1) < 1e-5
    np.testing.assert_allclose(out, condition(n, c[:2]), atol=1e-5)
    assert abs(out @ c1) < 1e-5 and abs(out @ c2) < 1e-5
    # already orthogonal: unchanged; no conditions: unchanged
    n_orth = condition(n, c[:2])
    np.testing.assert_allclose(condition(n_orth, c[:2]), n_orth, atol=1e-6)
    np.testing.assert_allclose(condition(n, np.zeros((0, 512))), n, atol=1e-6)


def test_condition_refuses_direction_in_span_of_kept() -> None:
    rng = np.random.default_rng(1)
    c1, c2 = _rng_unit(rng, 2)
    with pytest.raises(BoundaryError, match="span"):
        condition(0.3 * c1 - 2 * c2, np.stack([c1, c2]))


# -------------------------------------------------------------------------------------- apply
def _toy_boundaries(rng: np.random.Generator) -> dict[str, Boundary]:
    vecs = _rng_unit(rng, 3)
    return {"a": Boundary("a", vecs[0], layers=(4, 9)), "b": Boundary("b", vecs[1]),
            "c": Boundary("c", vecs[2] + 0.5 * vecs[0])}


def test_apply_edits_respects_slot_ranges_and_types() -> None:
    rng = np.random.default_rng(2)
    bs = _toy_boundaries(rng)
    w = rng.standard_normal((23, 512)).astype(np.float32)
    out = apply_edits(w, {"a": 2.0}, bs)
    assert out.dtype == np.float32 and out.shape == (23, 512)
    np.testing.assert_array_equal(out[:4], w[:4])
    np.testing.assert_array_equal(out[10:], w[10:])
    np.testing.assert_allclose(out[4:10] - w[4:10], np.tile(2 * bs["a"].normal, (6, 1)), atol=1e-5)
    # explicit range overrides the default, for every edit
    out2 = apply_edits(w, {"a": 1.0, "b": -1.0}, bs, layers=(0, 2))
    np.testing.assert_array_equal(out2[3:], w[3:])
    np.testing.assert_allclose(out2[0] - w[0], bs["a"].normal - bs["b"].normal, atol=1e-5)
    # torch in, torch out
    t = apply_edits(torch.from_numpy(w), {"b": 1.5}, bs)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), apply_edits(w, {"b": 1.5}, bs), atol=1e-6)


def test_keep_makes_the_offset_orthogonal_to_kept_directions() -> None:
    rng = np.random.default_rng(3)
    bs = _toy_boundaries(rng)
    delta = edit_delta({"c": 3.0}, bs, keep=["a"])
    assert abs(delta[0] @ bs["a"].normal) < 1e-4
    assert np.linalg.norm(delta[0]) == pytest.approx(3.0, rel=1e-4)
    plain = edit_delta({"c": 3.0}, bs)
    assert abs(plain[0] @ bs["a"].normal) > 0.5  # c leans on a without the condition
    dirs = edit_directions({"c": 1.0, "b": 1.0}, bs, keep=["a"])
    assert set(dirs) == {"b", "c"}


@pytest.mark.parametrize("alphas, keep, match", [
    ({"nope": 1.0}, [], "unknown direction 'nope'"),
    ({"a": 1.0}, ["nope"], "unknown kept direction"),
    ({"a": 1.0}, ["a"], "edit and keep the same"),
    ({"a": float("nan")}, [], "finite number"),
])
def test_apply_edits_bad_requests(alphas: dict, keep: list, match: str) -> None:
    bs = _toy_boundaries(np.random.default_rng(4))
    with pytest.raises(BoundaryError, match=match):
        apply_edits(np.zeros((23, 512), np.float32), alphas, bs, keep=keep)
    with pytest.raises(BoundaryError, match="shape"):
        apply_edits(np.zeros((18, 512), np.float32), {"a": 1.0}, bs)


def test_parse_layers() -> None:
    assert parse_layers("0-6") == (0, 6) and parse_layers("7") == (7, 7)
    for bad in ("6-2", "0-23", "a-b", "1-2-3", ""):
        with pytest.raises(BoundaryError):
            parse_layers(bad)


# ------------------------------------------------------------------------------ files / index
def test_index_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    b = Boundary("smile", rng.standard_normal(512) * 3, label="Smile", sign="+ = more smiling",
                 layers=(2, 9), val_accuracy=0.97, n=1234, predictor="p", command="cmd")
    save_index(tmp_path, [b])
    save_index(tmp_path, [Boundary("age", rng.standard_normal(512))])  # merges
    got = load_index(tmp_path)
    assert sorted(got) == ["age", "smile"]
    s = got["smile"]
    np.testing.assert_allclose(s.normal, b.normal, atol=1e-7)
    assert abs(np.linalg.norm(s.normal) - 1) < 1e-6
    assert (s.layers, s.val_accuracy, s.n, s.label, s.command) == ((2, 9), 0.97, 1234, "Smile", "cmd")
    assert np.load(tmp_path / "smile.npy").shape == (512,)


def _write_index(folder: Path, entry: dict) -> None:
    (folder / "index.json").write_text(json.dumps({"format": "latentstudio-boundaries", "version": 1,
                                                   "boundaries": [entry]}))


@pytest.mark.parametrize("content, match", [
    (np.zeros(512, np.float32), "zero vector"),
    (np.full(512, np.nan, np.float32), "NaN"),
    (np.ones((2, 256), np.float32), "shape"),
    (np.ones(511, np.float32), "shape"),
    (np.array(["x"] * 512), "numeric"),
    (np.stack([np.ones(512), -np.ones(512)]).reshape(1, 2, 512), "different rows"),
])
def test_bad_npy_boundaries(tmp_path: Path, content: np.ndarray, match: str) -> None:
    p = tmp_path / "b.npy"
    np.save(p, content)
    with pytest.raises(BoundaryError, match=match):
        read_vector(p)


def test_bad_boundary_files(tmp_path: Path) -> None:
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(BoundaryError, match="readable"):
        read_vector(tmp_path / "junk.npy")
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04junk")
    with pytest.raises(BoundaryError, match="readable"):
        read_vector(tmp_path / "junk.pt")
    torch.save({"a": torch.ones(512), "b": torch.ones(512)}, tmp_path / "two.pt")
    with pytest.raises(BoundaryError, match="one tensor"):
        read_vector(tmp_path / "two.pt")
    with pytest.raises(BoundaryError, match="no such"):
        read_vector(tmp_path / "missing.npy")
    with pytest.raises(BoundaryError, match=r"\.npy or \.pt"):
        (tmp_path / "b.txt").write_text("1 2 3")
        read_vector(tmp_path / "b.txt")
    # e4e-style (1,18,512) tensor with identical rows is accepted
    v = torch.randn(512)
    torch.save(v.expand(1, 18, 512).clone(), tmp_path / "pose.pt")
    np.testing.assert_allclose(read_vector(tmp_path / "pose.pt"), (v / v.norm()).numpy(), atol=1e-6)


@pytest.mark.parametrize("entry, match", [
    ({"name": "x", "file": "../x.npy"}, "inside the folder"),
    ({"name": "Bad Name", "file": "x.npy"}, "bad boundary name"),
    ({"name": "x", "file": "x.npy", "layers": [5, 30]}, "layer range"),
    ({"name": "x", "file": "x.npy", "range": [3, -3]}, "range"),
    ({"name": "x", "file": "x.npy", "space": "z"}, "W space"),
    ({"name": "x", "file": "missing.npy"}, "no such"),
    ({"name": "x"}, "'file'"),
])
def test_bad_index_entries(tmp_path: Path, entry: dict, match: str) -> None:
    np.save(tmp_path / "x.npy", np.ones(512, np.float32))
    _write_index(tmp_path, entry)
    with pytest.raises(BoundaryError, match=match):
        load_index(tmp_path)


def test_bad_index_file(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(BoundaryError, match="JSON"):
        load_index(tmp_path)
    (tmp_path / "index.json").write_text('{"boundaries": []}')
    with pytest.raises(BoundaryError, match="not a boundary index"):
        load_index(tmp_path)


# ----------------------------------------------------------------------------------- training
def test_fit_boundary_recovers_a_planted_direction() -> None:
    rng = np.random.default_rng(6)
    truth = _rng_unit(rng)[0]
    w = rng.standard_normal((3000, 512)).astype(np.float32)
    scores = w @ truth + 0.3 * rng.standard_normal(3000)
    valid = np.ones(3000, bool)
    valid[:100] = False
    fit = train.fit_boundary(w, scores, valid, ratio=0.1)
    assert fit.n_pos == fit.n_neg == 290
    assert fit.val_accuracy > 0.95
    assert float(fit.normal @ truth) > 0.8  # 512-d with 400 training samples: close, not exact
    flipped = train.fit_boundary(w, -scores, valid, ratio=0.1)
    assert float(flipped.normal @ truth) < -0.8
    with pytest.raises(BoundaryError, match="too few"):
        train.fit_boundary(w[:50], scores[:50], valid[:50], ratio=0.02)


def _anisotropic_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n codes (n,512) whose variances span three orders of magnitude in random axes, like W's
    (whose covariance has eigenvalues 0.002 … 3.9 at ψ 0.7)."""
    basis = np.linalg.qr(rng.standard_normal((512, 512)))[0]
    return rng.standard_normal((n, 512)) @ (basis * np.geomspace(2.0, 0.05, 512)).T


def test_whitening_decorrelates_and_stays_conditioned_for_few_samples() -> None:
    rng = np.random.default_rng(8)
    w = _anisotropic_codes(rng, 40000)
    assert np.linalg.cond(np.cov(w, rowvar=False)) > 1e3
    a = train.whitening(w)
    np.testing.assert_allclose(a, a.T, atol=1e-8)
    white = np.linalg.eigvalsh(np.cov(w @ a, rowvar=False))
    assert white.min() > 0.4 and white.max() < 1.1  # from 1 : 1600 to ≈ 1 : 2 (the shrinkage)
    few = train.whitening(w[:20])  # 20 codes in 512-d: shrunk towards a multiple of the identity
    assert np.all(np.isfinite(few)) and np.linalg.cond(few) < 100
    with pytest.raises(BoundaryError, match="whitening"):
        train.whitening(w[:1])


def test_whitened_fit_recovers_the_score_direction_in_anisotropic_codes() -> None:
    """Scores linear in anisotropic codes along t: the extremes differ in mean along Σ·t, not t,
    and a regularised SVM in raw coordinates follows the mean shift; whitened, it finds t."""
    rng = np.random.default_rng(9)
    w = _anisotropic_codes(rng, 40000)
    truth = _rng_unit(rng)[0]
    scores = w @ truth + 0.02 * rng.standard_normal(len(w))
    valid = np.ones(len(w), bool)
    raw = train.fit_boundary(w, scores, valid, ratio=0.05)
    white = train.fit_boundary(w, scores, valid, ratio=0.05, whiten=train.whitening(w))
    assert float(white.normal @ truth) > 0.85
    assert float(white.normal @ truth) > float(raw.normal @ truth) + 0.1
    assert white.val_accuracy > 0.95


def test_train_attributes_whitens_per_attribute(monkeypatch) -> None:  # noqa: ANN001
    rng = np.random.default_rng(10)
    w = _anisotropic_codes(rng, 8000)
    truth = _rng_unit(rng)[0]
    scores = {name: w @ truth + 0.02 * rng.standard_normal(len(w)) for name in ("gender", "yaw")}
    seeds = np.arange(len(w))
    monkeypatch.setattr(train, "score_samples", lambda spec, **kw: train.Scores(seeds, scores, np.ones(len(w), bool)))
    monkeypatch.setattr(train, "sample_w", lambda g, s, psi: w[s])
    spec = train.SampleSpec(n=len(w))
    auto = train.train_attributes(["gender", "yaw"], spec, generator=object(), ratio=0.05)
    none = train.train_attributes(["gender", "yaw"], spec, generator=object(), ratio=0.05, whiten="none")
    assert train.whitened("gender") and not train.whitened("yaw") and train.whitened("yaw", "all")
    np.testing.assert_allclose(auto["yaw"].normal, none["yaw"].normal)  # yaw: raw W under "auto"
    assert float(auto["gender"].normal @ truth) > float(none["gender"].normal @ truth) + 0.05
    with pytest.raises(BoundaryError, match="whiten"):
        train.train_attributes(["gender"], spec, generator=object(), whiten="sometimes")


def test_labelled_folders_of_codes(tmp_path: Path) -> None:
    from latentstudio.codes import save_code

    rng = np.random.default_rng(7)
    truth = _rng_unit(rng)[0]
    for side, sign in (("pos", 1), ("neg", -1)):
        (tmp_path / side).mkdir()
        for i in range(30):
            w = 0.2 * rng.standard_normal(512) + sign * 1.5 * truth
            if i % 2:
                np.save(tmp_path / side / f"{i}.npy", w.astype(np.float32))
            else:
                save_code(tmp_path / side / f"{i}.npz", np.tile(w, (23, 1)))
    def no_generator():  # noqa: ANN202 - codes only: nothing to invert
        raise AssertionError("codes need no generator")

    fit = train.fit_labelled(tmp_path / "pos", tmp_path / "neg", generator=no_generator)
    assert (fit.n_pos, fit.n_neg) == (30, 30)
    assert fit.val_accuracy >= 0.9 and float(fit.normal @ truth) > 0.5
    (tmp_path / "empty").mkdir()
    with pytest.raises(BoundaryError, match="no codes"):
        train.fit_labelled(tmp_path / "pos", tmp_path / "empty", generator=no_generator)


def test_scoring_cache_resumes_after_cancel(tmp_path: Path, generator, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(train, "CHUNK", 3)
    renders = []
    real = generator.synthesize

    def counting(code, size=1024, **kw):  # noqa: ANN001, ANN202
        renders.append(len(code))
        return real(code, size=size, **kw)

    monkeypatch.setattr(generator, "synthesize", counting)
    spec = train.SampleSpec(n=6, seed=123, psi=0.7, size=256)
    polls = iter([False, True])  # batch=3: one poll per chunk; cancel before the second
    with pytest.raises(Cancelled):
        train.score_samples(spec, generator=generator, batch=3, cache_dir=tmp_path,
                            cancelled=lambda: next(polls, True))
    assert sum(renders) == 3
    first = train.score_samples(spec, generator=generator, batch=3, cache_dir=tmp_path)
    assert sum(renders) == 6  # only the missing chunk was rendered
    again = train.score_samples(spec, generator=generator, batch=3, cache_dir=tmp_path)
    assert sum(renders) == 6
    np.testing.assert_array_equal(first.seeds, np.arange(123, 129))
    np.testing.assert_array_equal(first.scores["age"], again.scores["age"])
    assert set(train.ATTRIBUTES) <= set(first.scores)


# --------------------------------------------------------------------------------- import Z→W
@pytest.mark.skipif(not REFERENCE.is_dir(), reason="reference boundaries not available")
def test_import_z_boundary_gives_w_boundary(generator) -> None:  # noqa: ANN001
    path = REFERENCE / "interfacegan_stylegan2_ffhq_z" / "boundary_Smiling.npy"
    b = import_boundary(path, "smiling_z", "z", generator=generator, samples=6000)
    assert b.space == "w" and b.source == "imported" and b.normal.shape == (512,)
    assert b.val_accuracy is not None and b.val_accuracy > 0.85
    # the W boundary is a different vector from the Z one (the mapping is non-linear) …
    z_vec = read_vector(path)
    assert abs(float(b.normal @ z_vec)) < 0.9
    # … but separates mapped samples the way the Z boundary labels them
    z = torch.randn(2000, 512, generator=torch.Generator().manual_seed(99))
    w = generator.map(z, 1.0).numpy()
    label = z.numpy() @ z_vec > 0
    proj = (w - generator.w_avg.numpy()) @ b.normal
    assert np.corrcoef(proj, z.numpy() @ z_vec)[0, 1] > 0.5
    assert ((proj > np.median(proj)) == label).mean() > 0.65


# ------------------------------------------------------------------------- shipped boundaries
def _shipped() -> dict[str, Boundary]:
    return load_index(SHIPPED_DIR)


def test_shipped_set_is_complete() -> None:
    shipped = _shipped()
    assert len(shipped) >= 12
    for name in ("yaw", "smile", "gender", "age", "eyeglasses"):
        b = shipped[name]
        assert b.val_accuracy is not None and b.n and b.predictor and b.command and b.sign
    from latentstudio.edit.pca import load_pca

    pca = load_pca()
    gram = pca.components @ pca.components.T
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-4)
    assert np.all(np.diff(pca.std) <= 1e-6)


#: minimum mean change of the predictor from α = −2 to α = +2 (degrees, P(happy), years)
MIN_MOVE = {"yaw": 8.0, "smile": 0.3, "age": 8.0}


@pytest.mark.parametrize("name", ["smile", "age", "yaw"])
def test_edit_moves_its_predictor(name: str, generator) -> None:  # noqa: ANN001
    from latentstudio.edit.predictors import predict_all, probability
    from latentstudio.models.generator import to_uint8

    b = _shipped()[name]
    seeds = [900_001, 900_002, 900_003, 900_004]  # not among the training seeds (0 … N-1)
    codes = np.stack([np.tile(generator.seed_w(s).numpy(), (23, 1)) for s in seeds])
    scores = []
    for alpha in (-2.0, 2.0):
        edited = apply_edits(codes, {name: alpha}, {name: b})
        s = predict_all(to_uint8(generator.synthesize(edited, size=256)))[name]
        scores.append(probability(s) if name == "smile" else s)  # smile: log-odds of P(happy)
    low, high = scores
    # the predictors are noisy per face (and saturate, e.g. P(happy) near 1): demand a clear mean
    # move in the right direction and the right sign on at least 3 of the 4 faces
    assert np.mean(high - low) > MIN_MOVE[name], f"{name}: −2 → {low}, +2 → {high}"
    assert np.sum(high > low) >= 3, f"{name}: −2 → {low}, +2 → {high}"


# ---------------------------------------------------------------------------------------- CLI
def test_cli_edit_code_and_errors(tmp_path: Path, generator, capsys) -> None:  # noqa: ANN001
    from latentstudio.cli import main
    from latentstudio.codes import save_code
    from latentstudio.face.image_io import load_image

    code = tmp_path / "c.npz"
    save_code(code, np.tile(generator.seed_w(5).numpy(), (23, 1)))
    out = tmp_path / "out.png"
    assert main(["edit", "--code", str(code), "--set", "smile=1.5", "--set", "age=-1",
                 "--keep", "gender", "--layers", "0-12", "--size", "256", "--device", "cpu",
                 "-o", str(out)]) == 0
    assert load_image(out).shape == (256, 256, 3)
    assert main(["edit", "--code", str(code), "--set", "smile", "-o", str(out)]) == 2
    assert main(["edit", "--code", str(code), "--set", "nonexistent=1", "-o", str(out)]) == 2
    assert main(["edit", "--code", str(code), "--set", "smile=1", "--paste-back", str(out),
                 "-o", str(tmp_path / "pasted.png")]) == 2  # the code holds no quad
    assert main(["edit", "--code", str(code), "--set", "smile=1", "--paste-back", str(out),
                 "-o", str(out)]) == 2  # the output would replace an input
    err = capsys.readouterr().err
    assert "NAME=NUMBER" in err and "unknown direction 'nonexistent'" in err and "quad" in err
    assert "refusing to overwrite" in err
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"garbage")
    assert main(["boundaries", "import", str(bad), "--name", "x", "--space", "w"]) == 2
    assert "readable" in capsys.readouterr().err
    assert main(["boundaries", "list"]) == 0
    table = capsys.readouterr().out
    assert "smile" in table and "val.acc" in table


def test_cli_edit_pastes_back_with_the_stored_quad(tmp_path: Path, generator) -> None:  # noqa: ANN001
    skimage_data = pytest.importorskip("skimage.data")
    from latentstudio.cli import main
    from latentstudio.codes import save_code
    from latentstudio.face.align import ffhq_quad
    from latentstudio.face.detect import detect_faces, pick_face
    from latentstudio.face.image_io import load_image, save_image

    photo = np.ascontiguousarray(skimage_data.astronaut())
    save_image(tmp_path / "photo.png", photo)
    face = pick_face(detect_faces(photo))
    code = tmp_path / "c.npz"
    # no landmarks stored: the command finds the face whose FFHQ quad matches the stored one
    save_code(code, np.tile(generator.seed_w(11).numpy(), (23, 1)), quad=ffhq_quad(face.landmarks))
    out = tmp_path / "pasted.png"
    assert main(["edit", "--code", str(code), "--set", "pc01=5", "--size", "256", "--device", "cpu",
                 "--paste-back", str(tmp_path / "photo.png"), "-o", str(out)]) == 0
    result = load_image(out)
    assert result.shape == photo.shape
    changed = np.any(result != photo, axis=2)
    ys, xs = np.nonzero(changed)
    box = face.box  # the change stays around the face
    assert changed.mean() > 0.01
    assert xs.min() > box[0] - 0.6 * (box[2] - box[0]) and xs.max() < box[2] + 0.6 * (box[2] - box[0])
    assert not changed[-50:].any()  # the bottom of the photo is untouched


def test_scoring_on_a_local_ray_cluster_matches_local_scoring(tmp_path: Path, generator) -> None:  # noqa: ANN001
    """``boundaries train --ray``: the same seeds scored by Ray actors (a local cluster started
    here) give the same chunk caches as scoring here, up to float rounding."""
    pytest.importorskip("ray")
    spec = train.SampleSpec(n=6, seed=4242, psi=0.7, size=256)
    local = train.score_samples(spec, generator=generator, cache_dir=tmp_path / "local")
    remote = train.score_samples(spec, generator=generator, cache_dir=tmp_path / "ray", ray=True, workers=2)
    assert np.array_equal(local.seeds, remote.seeds) and np.array_equal(local.valid, remote.valid)
    for name in local.scores:
        np.testing.assert_allclose(remote.scores[name], local.scores[name], atol=0.05, equal_nan=True)
    again = train.score_samples(spec, generator=generator, cache_dir=tmp_path / "ray", ray=True)  # all cached
    np.testing.assert_array_equal(again.scores["age"], remote.scores["age"])
