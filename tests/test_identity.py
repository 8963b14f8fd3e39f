"""The identity mapper: network, weight file, API (transfer / blend / deidentify / refine), CLI,
the landmark net, and resumable training. Behaviour tests use the committed weights on generated
faces at 256²; real photos are measured in bench/transfer.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentstudio.edit.predictors import interocular
from latentstudio.identity import api
from latentstudio.progress import Cancelled
from latentstudio.identity.mapper import (
    Mapper,
    MapperConfig,
    MapperError,
    load_mapper,
    pca_basis,
    save_mapper,
)

# generated test faces: seeds far from the training chunks and the benchmark
SEEDS = (3_000_001, 3_000_002, 3_000_003, 3_000_004, 3_000_005, 3_000_006, 3_000_007, 3_000_008)


def _random_mapper(seed: int = 0, rank: int = 0) -> Mapper:
    g = torch.Generator().manual_seed(seed)
    basis = pca_basis(np.random.default_rng(seed).standard_normal((600, 512)).astype(np.float32))
    m = Mapper(MapperConfig(bands=8, rank=rank), basis)
    with torch.no_grad():
        m.gate.copy_(torch.randn(m.gate.shape, generator=g))
        m.up.normal_(0, 0.01, generator=g)
    return m.eval()


# ----------------------------------------------------------------------------- network
@pytest.mark.parametrize("rank", [0, 4])
def test_mapper_maps_a_face_onto_itself_exactly(rank: int) -> None:
    m = _random_mapper(rank=rank)
    x = torch.randn(3, 23, 512)
    torch.testing.assert_close(m(x, x), x, rtol=0, atol=1e-5)


def test_gated_mapper_mixes_per_slot_and_band_and_corrects_at_low_rank() -> None:
    m = _random_mapper()
    a, b = torch.randn(2, 23, 512), torch.randn(2, 23, 512)
    out = m(a, b)
    g = torch.sigmoid(m.gate).repeat_interleave(64, 1)  # (23, 512) gates on the principal axes
    expect = b + (g * ((a - b) @ m.basis)) @ m.basis.T
    torch.testing.assert_close(out, expect, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # gates fully open: A; fully closed: B
        m.gate.fill_(30.0)
        torch.testing.assert_close(m(a, b), a, rtol=1e-4, atol=1e-4)
        m.gate.fill_(-30.0)
        torch.testing.assert_close(m(a, b), b, rtol=1e-4, atol=1e-4)
    r = _random_mapper(rank=4)
    g = (torch.sigmoid(r.gate).repeat_interleave(64, 1) * ((a - b) @ r.basis)) @ r.basis.T
    z = (g[:, None] * r.down[None]).sum((2, 3))  # (N, R): the gated difference read by each rank
    torch.testing.assert_close(r(a, b), b + g + (z[:, :, None, None] * r.up[None]).sum(1), rtol=1e-4, atol=1e-4)


def test_kept_attribute_directions_always_come_from_b() -> None:
    basis = pca_basis(np.random.default_rng(1).standard_normal((600, 512)).astype(np.float32))
    m = Mapper(MapperConfig(bands=8, rank=4, keep=3), basis)
    keep, _ = torch.linalg.qr(torch.randn(512, 3))
    with torch.no_grad():
        m.keep.copy_(keep)
        m.gate.fill_(3.0)
        m.gate[:, ::2] = -2.0  # unequal gates mix directions: the result is projected again
        m.up.normal_(0, 0.01)
    a, b = torch.randn(2, 23, 512), torch.randn(2, 23, 512)
    out = m(a, b)
    torch.testing.assert_close(out @ keep, b @ keep, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(out, b, atol=1e-2)


@pytest.mark.parametrize("a, b", [((2, 23, 512), (3, 23, 512)), ((2, 22, 512), (2, 22, 512)), ((23, 512), (23, 512))])
def test_mapper_rejects_bad_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    with pytest.raises(MapperError):
        _random_mapper()(torch.zeros(a), torch.zeros(b))


def test_weight_file_round_trip_and_damage(tmp_path: Path) -> None:
    m = _random_mapper(rank=4)
    path = tmp_path / "m.safetensors"
    save_mapper(m, path, {"note": "test"})
    back = load_mapper(path)
    a, b = torch.randn(2, 23, 512), torch.randn(2, 23, 512)
    torch.testing.assert_close(back(a, b), m(a, b))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(MapperError):
        load_mapper(path)
    with pytest.raises(MapperError, match="no mapper weights"):
        load_mapper(tmp_path / "missing.safetensors")


# ----------------------------------------------------------------------------- API
@pytest.fixture(scope="module")
def models(generator):  # noqa: ANN001, ANN201
    return api.IdentityModels.load(generator)


@pytest.fixture(scope="module")
def faces(generator) -> np.ndarray:  # noqa: ANN001
    """W+ codes (8, 23, 512) of the test seeds."""
    w = torch.stack([generator.seed_w(s, 0.7) for s in SEEDS]).numpy()
    return np.repeat(w[:, None], 23, 1)


def _render(generator, codes: np.ndarray, full: bool = False) -> np.ndarray:  # noqa: ANN001
    """256² renders: the preview route's, or the full 1024² network's area-reduced (``full``)."""
    return generator.predictor_images(np.asarray(codes, np.float32), full)


def _landmarks(images: np.ndarray) -> np.ndarray:
    from latentstudio.edit import predictors

    return predictors.find_landmarks(images, predictors.load_models()).points


def _descriptors(models, images: np.ndarray) -> np.ndarray:  # noqa: ANN001
    from latentstudio.models.generator import from_uint8

    with torch.no_grad():
        return models.identity_net.embed_aligned(from_uint8(images)).numpy()


def test_transfer_takes_identity_from_a_and_landmarks_from_b(models, faces, generator) -> None:  # noqa: ANN001
    a, b = faces[:4], faces[4:]
    out = np.stack([api.transfer(x, y, models=models) for x, y in zip(a, b)])
    assert out.shape == (4, 23, 512) and out.dtype == np.float32
    np.testing.assert_allclose(api.transfer(a[0], a[0], models=models), a[0], atol=1e-4)
    images = _render(generator, np.concatenate([out, a, b]))
    e = _descriptors(models, images)
    to_a, to_b = np.linalg.norm(e[:4] - e[4:8], axis=1), np.linalg.norm(e[:4] - e[8:], axis=1)
    assert to_a.mean() < to_b.mean() - 0.1 and (to_a < to_b).sum() >= 3, (to_a, to_b)  # 13 of 14 real pairs
    lm = _landmarks(images)
    err_b = np.linalg.norm(lm[:4, 17:] - lm[8:, 17:], axis=-1).mean()
    err_a = np.linalg.norm(lm[:4, 17:] - lm[4:8, 17:], axis=-1).mean()
    assert err_b < err_a, (err_b, err_a)


def test_blend_end_points_and_a_monotonic_identity_sweep(models, faces, generator) -> None:  # noqa: ANN001
    base, other = faces[0], faces[5]
    np.testing.assert_array_equal(api.blend(base, other, 0, 0, models=models), base)
    np.testing.assert_allclose(api.blend(base, other, 1, 1, models=models), other, atol=1e-4)
    np.testing.assert_allclose(api.blend(base, other, 1, 0, models=models),
                               api.transfer(other, base, models=models), atol=1e-5)
    sweep = np.stack([api.blend(base, other, t, 0, models=models) for t in (0, 0.25, 0.5, 0.75, 1)])
    e = _descriptors(models, _render(generator, np.concatenate([sweep, other[None]])))
    d = np.linalg.norm(e[:5] - e[5], axis=1)
    assert (np.diff(d) < 0.02).all() and d[-1] < d[0] - 0.1, d  # towards the other face, step by step


def test_the_id_amount_is_the_share_of_the_way_by_the_recogniser(models, faces) -> None:  # noqa: ANN001
    """``even_amount`` maps the id amount to the point of the line where our dlib descriptor has
    covered that share of its way to the other face: ends fixed, monotone, evener than the plain
    line, and the plain amount for two codes of one person."""
    base, other = faces[1], faces[6]
    amounts = (0.0, 0.25, 0.5, 0.75, 1.0)
    ts = [api.even_amount(base, other, a, 0.0, models=models) for a in amounts]
    assert ts[0] == 0.0 and ts[-1] == 1.0 and (np.diff(ts) > 0).all(), ts

    def shares(even: bool) -> np.ndarray:
        e_o = models.embedding(other)
        d = np.array([np.linalg.norm(models.embedding(api.blend(base, other, a, 0.0, even=even, models=models)) - e_o)
                      for a in amounts])
        return (d[0] - d) / (d[0] - d[-1])

    off_even, off_plain = np.abs(shares(True) - amounts).max(), np.abs(shares(False) - amounts).max()
    assert off_even < 0.1 and off_even < off_plain / 2, (off_even, off_plain)  # 0.04 against 0.22 here
    near = (base + 0.01 * np.random.default_rng(0).standard_normal(base.shape)).astype(np.float32)
    assert api.even_amount(base, near, 0.3, 0.0, models=models) == pytest.approx(0.3)


def test_a_draft_blend_measures_nothing_and_borrows_the_nearest_measured_amount(models, faces,  # noqa: ANN001
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A drag's previews (``draft``) cost the mapper only: nothing new is measured. Before any
    measurement for the pair the draft is the plain blend; once an attribute amount has been
    measured, a nearby amount borrows its lock and id curve; the measured amount itself is exact."""
    import latentstudio.identity.lock as lock_module

    base, other = faces[3], faces[7]
    exact_mid = api.blend(base, other, 0.5, 0.4, models=models)  # measures the lock and curve at 0.4
    calls: list[int] = []
    real = lock_module.lock_offset
    monkeypatch.setattr(lock_module, "lock_offset", lambda *a, **k: calls.append(1) or real(*a, **k))
    np.testing.assert_array_equal(api.blend(base, other, 0.5, 0.4, draft=True, models=models), exact_mid)
    near = api.blend(base, other, 0.5, 0.45, draft=True, models=models)
    plain = api.blend(base, other, 0.5, 0.45, lock=False, even=False, models=models)
    assert not np.allclose(near, plain, atol=1e-4)  # the lock and curve of 0.4 were borrowed
    novel = (0.5 * (base + other)).astype(np.float32)  # a pair no test has measured
    fresh = api.blend(novel, base, 0.5, 0.2, draft=True, models=models)
    np.testing.assert_allclose(fresh, api.blend(novel, base, 0.5, 0.2, lock=False, even=False, models=models),
                               atol=1e-6)
    assert not calls  # no lock was measured for a draft
    exact = api.blend(base, other, 0.5, 0.45, models=models)
    assert calls and not np.allclose(exact, near, atol=1e-4)


def test_deidentify_changes_identity_not_pose(models, faces, generator) -> None:  # noqa: ANN001
    code = faces[2]
    np.testing.assert_array_equal(api.deidentify(code, 0.0, models=models), code)
    out = api.deidentify(code, 1.0, seed=3, models=models)
    assert np.array_equal(out, api.deidentify(code, 1.0, seed=3, models=models))
    assert not np.array_equal(out, api.deidentify(code, 1.0, seed=4, models=models))
    d = np.linalg.norm(models.embedding(out) - models.embedding(code))
    assert d > 0.6, d  # another person for dlib
    lm = _landmarks(_render(generator, np.stack([out, code])))
    iod = interocular(lm[1])
    assert np.linalg.norm(lm[0, 48:] - lm[1, 48:], axis=-1).mean() / iod < 0.08
    assert api.deidentify(code, 1.0, seed=None, models=models).shape == (23, 512)


def test_deidentify_goes_only_as_far_as_another_person_needs(models, faces) -> None:  # noqa: ANN001
    """The reach is the least of DEID_REACHES whose result our dlib descriptor calls far enough, and
    it is what strength 1 uses (a fixed 1.4 moved pose and mouth more than needed)."""
    for code in faces[:3]:
        other = api.random_identity(code, 3, models=models)
        k = api.deid_reach(code, other, models=models)
        assert k in api.DEID_REACHES
        e = models.embedding(code)

        def dist(reach: float) -> float:
            return float(np.linalg.norm(models.embedding(models.map(code + reach * (other - code), code)) - e))

        i = api.DEID_REACHES.index(k)
        assert dist(k) >= api.DEID_DISTANCE or k == api.DEID_REACHES[-1]
        assert all(dist(r) < api.DEID_DISTANCE for r in api.DEID_REACHES[:i])
        np.testing.assert_array_equal(api.deidentify(code, 1.0, seed=3, models=models),
                                      api.deidentify(code, 1.0, other=other, reach=k, models=models))
    with pytest.raises(api.IdentityError, match="reach"):
        api.deidentify(faces[0], 1.0, reach=-1.0, models=models)


def test_deidentify_skips_an_identity_whose_result_the_lock_cannot_bring_back(models, faces, monkeypatch) -> None:  # noqa: ANN001
    """Of the farthest candidates, the first whose locked result the lock's fit reports within
    DEID_POSE / DEID_MOUTH is used; none within: the nearest miss. The choice is cached, and a
    draft (check=False) measures nothing: the choice made, else the farthest."""
    from latentstudio.identity import lock

    code = faces[4]
    ranked = _ranked(models, code, 11)
    assert np.array_equal(api.random_identity(code, 11, check=False, models=models), ranked[0])

    def fake(errors: list[tuple[float, float]]):  # noqa: ANN202
        calls = iter(errors)
        return lambda full, target, m, dirs=None: lock.LockFit(np.zeros_like(full), *next(calls))

    monkeypatch.setattr(lock, "fit_lock", fake([(api.DEID_POSE + 2, 0.0), (1.0, 0.01)]))
    assert np.array_equal(api.random_identity(code, 11, models=models), ranked[1])  # the farthest turned the head
    assert np.array_equal(api.random_identity(code, 11, check=False, models=models), ranked[1])  # cached
    monkeypatch.setattr(lock, "fit_lock", fake([(9.0, 0.0), (0.0, 0.07), (4.0, 0.0)]))
    assert np.array_equal(api.random_identity(code, 12, models=models), _ranked(models, code, 12)[2])  # misses 3, 1.75, 1.33


def _ranked(models, code: np.ndarray, seed: int) -> list[np.ndarray]:  # noqa: ANN001
    """De-identification candidates of ``seed``, farthest from ``code`` by dlib first."""
    e = models.embedding(code)
    seeds = [api.DEID_SEED_BASE + api.DEID_CANDIDATES * seed + k for k in range(api.DEID_CANDIDATES)]
    cands = [np.repeat(models.generator.seed_w(s, api.DEID_PSI).numpy()[None], 23, 0) for s in seeds]
    return sorted(cands, key=lambda r: -np.linalg.norm(models.embedding(r) - e))


def _attribute_error(lm: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """dlib landmarks (N, 68, 2) against the reference's (N, 68, 2) at 256² → (N,): |yaw| + |pitch|
    errors in degrees / 5 plus the mouth's mean point error / 4 % of the inter-ocular distance."""
    from latentstudio.edit.predictors import head_pose

    (y, p, _), (y0, p0, _) = head_pose(lm), head_pose(ref)
    iod = interocular(ref)
    mouth = np.linalg.norm(lm[:, 48:] - ref[:, 48:], axis=-1).mean(1) / iod
    return (np.abs(y - y0) + np.abs(p - p0)) / 5 + mouth / 0.04


def test_attribute_lock_puts_pose_and_mouth_back_along_the_lock_boundaries(models, faces, generator) -> None:  # noqa: ANN001
    from latentstudio.identity.lock import lock_directions

    a, b = faces[:3], faces[5:8]
    free = np.stack([api.transfer(x, y, lock=False, models=models) for x, y in zip(a, b)])
    locked = np.stack([api.transfer(x, y, models=models) for x, y in zip(a, b)])
    lm = _landmarks(_render(generator, np.concatenate([free, locked, b]), full=True))  # what the user gets
    err_free, err_locked = _attribute_error(lm[:3], lm[6:]), _attribute_error(lm[3:6], lm[6:])
    assert err_locked.mean() < 0.8 * err_free.mean(), (err_free, err_locked)
    basis = np.stack([d.as_w_plus().ravel() for d in lock_directions()])  # only the lock's boundaries move
    moved = (locked - free).reshape(3, -1)
    coef = np.linalg.lstsq(basis.T, moved.T, rcond=None)[0]
    np.testing.assert_allclose(coef.T @ basis, moved, atol=1e-4)
    e = _descriptors(models, _render(generator, np.concatenate([locked, a, b])))
    assert (np.linalg.norm(e[:3] - e[3:6], axis=1) < np.linalg.norm(e[:3] - e[6:], axis=1)).all()


def test_attribute_lock_stops_before_a_face_melts(monkeypatch) -> None:  # noqa: ANN001
    """A target further along a boundary than a face survives (a turned real face: bench/RESULTS.md):
    the lock goes ``MAX_TOTAL`` along it and no further. The measurement is replaced by an exact
    linear one, so only the fit is under test."""
    import latentstudio.identity.lock as lock

    dirs = lock.lock_directions()
    basis = np.stack([d.as_w_plus().ravel() for d in dirs])

    seen: list[tuple[bool, np.ndarray | None]] = []

    def fake_landmarks(models, codes: np.ndarray, full: bool = True,  # noqa: ANN001
                       outside: np.ndarray | None = None) -> np.ndarray:
        seen.append((full, outside))
        lm = np.zeros((len(codes), 68, 2))
        lm[:, :len(dirs), 0] = np.linalg.lstsq(basis.T, codes.reshape(len(codes), -1).T, rcond=None)[0].T
        lm[:, 42:48, 0] = 1.0  # an inter-ocular distance of 1
        return lm

    monkeypatch.setattr(lock, "landmarks", fake_landmarks)
    monkeypatch.setattr(lock, "features", lambda lm, iod: 5.0 * lm[:, :len(dirs), 0])
    code = np.zeros((23, 512), np.float32)
    for far, expected in ((3.0, 3.0), (10.0, lock.MAX_TOTAL)):
        target = code + far * dirs[0].as_w_plus()
        coef = np.linalg.lstsq(basis.T, lock.lock_offset(code, target, None).ravel(), rcond=None)[0]
        assert coef[0] == pytest.approx(expected, abs=0.1) and np.abs(coef[1:]).max() < 1e-3, coef
        # every full measurement but the target's own is of the result in the target's surroundings,
        # the picture the user gets (identity.surroundings)
        full = [o for f, o in seen if f]
        assert full[0] is None and len(full) > 2 and all(o is target for o in full[1:])
        seen.clear()


def test_a_result_turned_away_from_the_attribute_face_gets_a_note(models, faces) -> None:  # noqa: ANN001
    from latentstudio.identity.lock import directions

    face = faces[1]
    assert api.pose_note(face, face, models=models) is None
    note = api.pose_note(face + 6.0 * directions(("yaw",))[0].as_w_plus(), face, models=models)
    assert note is not None and "away from the pose it should keep" in note, note


def test_refine_views_are_random_reproducible_and_differentiable() -> None:
    from latentstudio.identity.refine import random_view

    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    views = [random_view(x, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], views[1]) and not torch.equal(views[0], views[2])
    views[0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_refine_lowers_the_identity_loss_and_can_be_cancelled(models, faces) -> None:  # noqa: ANN001
    a, b = faces[0], faces[6]
    start = api.transfer(a, b, models=models)
    seen: list[int] = []
    out = api.refine_transfer(start, b, identity_code=a, steps=4, models=models,
                              progress=lambda p: seen.append(p.done))
    assert seen == [1, 2, 3, 4] and out.shape == (23, 512) and np.isfinite(out).all()
    e_a = models.embedding(a)
    assert np.linalg.norm(models.embedding(out) - e_a) < np.linalg.norm(models.embedding(start) - e_a)
    with pytest.raises(Cancelled):
        api.refine_transfer(start, b, identity_code=a, steps=4, models=models, cancelled=lambda: True)


@pytest.mark.parametrize("call", [
    lambda m, c: api.blend(c, c, 1.5, 0, models=m),
    lambda m, c: api.blend(c, c, float("nan"), 0, models=m),
    lambda m, c: api.blend(c[:5], c, 1, 0, models=m),
    lambda m, c: api.transfer(c, np.full((23, 512), np.inf, np.float32), models=m),
    lambda m, c: api.deidentify(c, -0.1, models=m),
    lambda m, c: api.deidentify(c, 1.0, seed=-3, models=m),
    lambda m, c: api.refine_transfer(c, c, identity_code=c, steps=0, models=m),
    lambda m, c: api.refine_transfer(c, c, identity_embedding=np.zeros(12), models=m),
    lambda m, c: api.refine_transfer(c, c, models=m),
])
def test_bad_input_is_a_clear_error(models, faces, call) -> None:  # noqa: ANN001
    with pytest.raises(api.IdentityError):
        call(models, faces[0])


# ----------------------------------------------------------------------------- landmark net
def test_landmark_net_follows_dlib_on_generated_faces(generator, faces) -> None:  # noqa: ANN001
    from latentstudio.face.landmark_net import load_landmark_net
    from latentstudio.models.generator import from_uint8

    images = _render(generator, faces)
    with torch.no_grad():
        pred = load_landmark_net()(from_uint8(images)).numpy() * 256
    ref = _landmarks(images)
    iod = interocular(ref)
    err = np.linalg.norm(pred - ref, axis=-1).mean(1) / iod
    assert err.mean() < 0.05, err


def test_hull_mask_is_zero_on_the_face_and_one_around_it() -> None:
    from latentstudio.identity.train import hull_masks

    t = np.linspace(0, np.pi, 17)
    jaw = np.stack([0.5 - 0.3 * np.cos(t), 0.45 + 0.3 * np.sin(t)], 1)
    brows = np.stack([np.linspace(0.25, 0.75, 10), np.full(10, 0.4)], 1)
    rest = np.tile([[0.5, 0.55]], (41, 1))
    m = hull_masks(np.concatenate([jaw, brows, rest])[None], 64)[0, 0].numpy()
    assert m[35, 32] == 0 and m[2, 2] == 1 and m[62, 5] == 1


# ----------------------------------------------------------------------------- CLI
def test_cli_transfer_refine_and_deidentify_codes(tmp_path: Path, faces, models) -> None:  # noqa: ANN001
    from PIL import Image

    from latentstudio.cli import main
    from latentstudio.codes import load_code, save_code

    save_code(tmp_path / "a.npz", faces[0])
    save_code(tmp_path / "b.npz", faces[4])
    out = tmp_path / "t.png"
    args = ["transfer", "--identity", str(tmp_path / "a.npz"), "--attributes", str(tmp_path / "b.npz")]
    assert main([*args, "--size", "256", "--save-code", str(tmp_path / "t.npz"), "-o", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (256, 256, 3)
    plain = load_code(tmp_path / "t.npz")
    assert main([*args, "--no-lock", "-o", str(tmp_path / "free.npz")]) == 0
    np.testing.assert_array_equal(load_code(tmp_path / "free.npz"), api.transfer(faces[0], faces[4], lock=False, models=models))
    assert not np.array_equal(load_code(tmp_path / "free.npz"), plain)
    assert main([*args, "--refine", "2", "-o", str(tmp_path / "r.npz")]) == 0
    refined = load_code(tmp_path / "r.npz")
    assert refined.shape == (23, 512) and not np.array_equal(refined, plain)
    assert main(["deidentify", str(tmp_path / "a.npz"), "--strength", "0.5", "-o", str(tmp_path / "d.npz")]) == 0
    assert load_code(tmp_path / "d.npz").shape == (23, 512)
    # bad input: exit code 2
    assert main([*args, "--id-alpha", "2", "-o", str(out)]) == 2
    assert main([*args, "--refine", "0", "-o", str(out)]) == 2
    assert main(["transfer", "--identity", str(tmp_path / "none.npz"), "--attributes", str(tmp_path / "b.npz"),
                 "-o", str(out)]) == 2
    assert main([*args, "--paste-back", "-o", str(out)]) == 2  # a bare code has no photo to paste into


# ----------------------------------------------------------------------------- training
def _tiny_data(folder: Path, generator) -> None:  # noqa: ANN001
    from latentstudio.atomic import save_npz

    w = torch.stack([generator.seed_w(s, 0.7) for s in range(8)]).numpy()
    save_npz(folder / "chunk000.npz", w1=w, w2=w[::-1].copy(), cross=np.array([23, 5, 23, 9, 23, 1, 23, 13]))


def test_training_is_cancellable_and_resumes(tmp_path: Path, generator) -> None:  # noqa: ANN001
    from latentstudio.face.chip import IdentityNet
    from latentstudio.face.landmark_net import load_landmark_net
    from latentstudio.identity.train import Nets, TrainConfig, train_mapper

    _tiny_data(tmp_path, generator)
    nets = Nets(generator, IdentityNet.load("cpu"), load_landmark_net())
    cfg = TrainConfig(steps=3, batch=2, bands=8)
    seen: list[int] = []
    with pytest.raises(Cancelled, match="checkpoint kept"):
        train_mapper(cfg, nets, data_folder=tmp_path, workdir=tmp_path / "w", log_every=1,
                     progress=lambda p: seen.append(p.done), cancelled=lambda: len(seen) >= 2)
    ck = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 2
    result = train_mapper(cfg, nets, data_folder=tmp_path, workdir=tmp_path / "w", log_every=1,
                          progress=lambda p: seen.append(p.done))
    assert seen[-1] == 3  # resumed: one more step
    assert not torch.equal(result.mapper.gate[:13], torch.zeros(13, 8))
    x = torch.randn(1, 23, 512)
    torch.testing.assert_close(result.mapper(x, x), x, rtol=0, atol=1e-4)


def test_training_can_start_from_trained_weights(tmp_path: Path, generator) -> None:  # noqa: ANN001
    from latentstudio.face.chip import IdentityNet
    from latentstudio.face.landmark_net import load_landmark_net
    from latentstudio.identity.data import DataError
    from latentstudio.identity.train import Nets, TrainConfig, train_mapper, write_result

    _tiny_data(tmp_path, generator)
    nets = Nets(generator, IdentityNet.load("cpu"), load_landmark_net())
    first = TrainConfig(steps=2, batch=2, bands=8, rank=4)
    start = train_mapper(first, nets, data_folder=tmp_path, workdir=tmp_path / "a")
    write_result(start, first, tmp_path / "start.safetensors")
    # zero steps: the result is the start file's mapper, whatever the new run's own init would be
    again = train_mapper(TrainConfig(steps=0, batch=2, bands=8, rank=4, size=256, seed=5,
                                     init=str(tmp_path / "start.safetensors")),
                         nets, data_folder=tmp_path, workdir=tmp_path / "b")
    for name, t in start.mapper.state_dict().items():
        torch.testing.assert_close(again.mapper.state_dict()[name], t, rtol=0, atol=0)
    fresh = train_mapper(TrainConfig(steps=0, batch=2, bands=8, rank=4, seed=5), nets,
                         data_folder=tmp_path, workdir=tmp_path / "c")
    assert not torch.equal(fresh.mapper.down, start.mapper.down)
    lit = train_mapper(TrainConfig(steps=0, batch=2, bands=8, rank=4, keep=(*first.keep, "lighting"),
                                   init=str(tmp_path / "start.safetensors")), nets, data_folder=tmp_path, workdir=tmp_path / "e")
    assert lit.mapper.keep.shape == (512, len(first.keep) + 1)  # its own kept boundaries, the rest from the file
    torch.testing.assert_close(lit.mapper.gate, start.mapper.gate, rtol=0, atol=0)
    torch.testing.assert_close(lit.mapper.keep[:, :len(first.keep)].abs(), start.mapper.keep.abs(), rtol=0, atol=1e-5)
    with pytest.raises(DataError, match="cannot start from"):  # another shape: a clear error
        train_mapper(TrainConfig(steps=1, batch=2, bands=16, rank=4, init=str(tmp_path / "start.safetensors")),
                     nets, data_folder=tmp_path, workdir=tmp_path / "d")


def test_inverted_training_codes_are_the_encoders_guesses_of_their_renders(generator) -> None:  # noqa: ANN001
    from latentstudio.encoder import load_encoder
    from latentstudio.face.chip import IdentityNet
    from latentstudio.face.landmark_net import load_landmark_net
    from latentstudio.identity.train import Nets, TrainConfig, _as_inverted, _encoder

    nets = Nets(generator, IdentityNet.load("cpu"), load_landmark_net())
    codes = torch.stack([generator.seed_w(s, 0.7) for s in range(4)])[:, None].repeat(1, 23, 1)
    enc = _encoder(torch.device("cpu"))
    rng = np.random.default_rng(0)
    assert _as_inverted(codes, None, nets, rng, 1.0) is codes  # no encoder: as they were
    inverted = _as_inverted(codes, enc, nets, rng, 1.0)
    with torch.no_grad():
        want = load_encoder()(generator.synthesize(codes, size=256))
    torch.testing.assert_close(inverted, want, rtol=1e-4, atol=1e-4)
    assert inverted[:, 0].sub(inverted[:, -1]).norm() > 0  # off W: each slot its own w, as an inversion's
    some = _as_inverted(codes, enc, nets, np.random.default_rng(1), 0.5)
    kept = [bool(torch.equal(some[i], codes[i])) for i in range(4)]
    assert any(kept) and not all(kept)
    with pytest.raises(ValueError, match="inverted"):
        TrainConfig(inverted=1.5)


def test_training_faces_build_locally_and_on_a_local_ray_cluster(tmp_path: Path, generator) -> None:  # noqa: ANN001
    """``identity data``: chunks are seeded (the same codes wherever they are made), measured, and
    resumable; ``--ray`` makes the missing ones on Ray actors (a local cluster started here)."""
    from latentstudio.face.chip import IdentityNet
    from latentstudio.identity import data

    net = IdentityNet.load("cpu")
    seen = []
    data.build(2, generator=generator, identity_net=net, folder=tmp_path / "local", chunk_size=8,
               progress=seen.append)
    local = data.load_chunks(tmp_path / "local")
    assert local["w1"].shape == (16, 512) and local["img128"].shape == (16, 128, 128, 3) and local["valid"].any()
    assert seen[-1].done == seen[-1].total == 2
    data.build(2, generator=generator, identity_net=net, folder=tmp_path / "local", chunk_size=8,
               cancelled=lambda: True)  # nothing left to do: no cancel, nothing rebuilt
    pytest.importorskip("ray")
    (tmp_path / "ray").mkdir()
    import shutil

    shutil.copy(tmp_path / "local" / "chunk000.npz", tmp_path / "ray" / "chunk000.npz")  # one done already
    data.build(2, generator=generator, identity_net=net, folder=tmp_path / "ray", chunk_size=8, ray=True, actors=1)
    remote = data.load_chunks(tmp_path / "ray")
    np.testing.assert_array_equal(remote["w1"], local["w1"])
    np.testing.assert_array_equal(remote["cross"], local["cross"])
    np.testing.assert_allclose(remote["emb"], local["emb"], atol=1e-3)
