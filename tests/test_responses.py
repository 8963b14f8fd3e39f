"""Measured conditional editing: response tables and the closed loop that holds kept scores.

The synthetic world below has what defeats InterFaceGAN's projection on our real predictors:
attribute ``b``'s score reacts to ``a`` itself (a confound, like the age score to a smile) and
saturates, while the two normals are orthogonal, so projecting ``b``'s normal out of ``a``'s
changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentstudio.edit.apply import apply_edits
from latentstudio.edit.boundaries import Boundary, BoundaryError
from latentstudio.edit.responses import FILE, Responses, hold_kept, measure
from latentstudio.progress import Cancelled

RNG = np.random.default_rng(7)
N_A, N_B, N_C = np.linalg.qr(RNG.standard_normal((512, 3)))[0].T.astype(np.float32)  # orthonormal
BOUNDARIES = {"a": Boundary("a", N_A, layers=(0, 22)), "b": Boundary("b", N_B, layers=(0, 6))}


def world(codes: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of codes (N,23,512): a saturates; b follows its own normal plus a confound of a
    whose strength differs from face to face (so the population's mean response is not enough)."""
    pa = codes[:, 10] @ N_A  # slot 10: only the a edit reaches it
    pb = codes[:, 3] @ N_B
    gain = 1 + 0.5 * np.tanh(3 * codes[:, 0] @ N_C)
    return {"a": 4 * np.tanh(pa / 2), "b": pb + 0.8 * gain * np.tanh(pa), "c": pa + pb}


def codes(n: int, seed: int) -> np.ndarray:
    w = np.random.default_rng(seed).standard_normal((n, 512)).astype(np.float32) * 0.3
    return np.repeat(w[:, None], 23, axis=1)


@pytest.fixture(scope="module")
def table() -> Responses:
    return measure(world, BOUNDARIES, ["a", "b"], codes(40, 0))


def test_measured_curves_follow_the_scores(table: Responses) -> None:
    assert table.predictors == ("a", "b", "c") and table.faces == 40
    assert table.response("a", "a", 0.0) == 0.0
    # b reacts to a (the confound) and to its own normal; a does not react to b
    assert table.response("a", "b", 3.0) > 0.3 and abs(table.response("b", "a", 3.0)) < 1e-6
    # a saturates: the second half of the range moves it less than the first
    assert table.response("a", "a", 3.0) - table.response("a", "a", 1.5) < table.response("a", "a", 1.5)
    # between and beyond the measured steps: linear
    mid = (table.response("b", "b", 0.5) + table.response("b", "b", 1.5)) / 2
    assert table.response("b", "b", 1.0) == pytest.approx(mid)
    assert table.response("b", "b", 4.0) == pytest.approx(
        table.response("b", "b", 3.0) + (table.response("b", "b", 3.0) - table.response("b", "b", 1.5)) / 1.5)


def test_hold_kept_cancels_a_confound_that_projection_leaves(table: Responses) -> None:
    start = []
    for w in codes(6, 1):
        plain = world(apply_edits(w, {"a": 2.5}, BOUNDARIES)[None])
        projected = world(apply_edits(w, {"a": 2.5}, BOUNDARIES, keep=["b"])[None])
        held = hold_kept(w, {"a": 2.5}, BOUNDARIES, ["b"], table, world)
        after = world(held.w_plus[None])
        before = world(w[None])
        drift = plain["b"] - before["b"]
        assert abs(projected["b"] - before["b"]) > 0.9 * abs(drift)  # orthogonal normals: no help
        assert abs(after["b"] - before["b"]) < 0.15 * abs(drift)
        assert after["a"] - before["a"] == pytest.approx(plain["a"] - before["a"], rel=0.1)
        assert held.steps["b"] < 0 and set(held.residual) == {"a", "b"}
        assert held.w_plus.shape == (23, 512) and held.w_plus.dtype == np.float32
        unscored = world(hold_kept(w, {"a": 2.5}, BOUNDARIES, ["b"], table, world, iterations=0).w_plus[None])
        start.append(abs(unscored["b"] - before["b"]) / abs(drift))
    assert min(start) > 0.9  # the loop starts from the projection, which does not hold b here


def test_hold_kept_leaves_faces_it_cannot_score_at_the_projection_edit(table: Responses) -> None:
    def blind(c: np.ndarray) -> dict[str, np.ndarray]:
        return {k: np.full(len(c), np.nan) for k in ("a", "b", "c")}

    w = codes(1, 2)[0]
    held = hold_kept(w, {"a": 2.0}, BOUNDARIES, ["b"], table, blind)
    projected = apply_edits(w, {"a": 2.0}, BOUNDARIES, keep=["b"])
    assert np.allclose(held.w_plus, projected, atol=1e-6) and np.isnan(held.residual["b"])


def test_table_round_trip_staleness_and_bad_files(table: Responses, tmp_path: Path) -> None:
    assert Responses.load(tmp_path) is None
    table.save(tmp_path)
    back = Responses.load(tmp_path)
    assert back is not None and back.names == table.names and np.array_equal(back.mean, table.mean)
    assert back.covers(BOUNDARIES, ["a", "b"]) and not back.covers(BOUNDARIES, ["a", "c"])
    moved = dict(BOUNDARIES, b=Boundary("b", N_A, layers=(0, 6)))  # retrained normal: stale
    assert not back.covers(moved, ["a", "b"])
    other = dict(BOUNDARIES, b=Boundary("b", N_B, layers=(0, 12)))  # other slot range: stale
    assert not back.covers(other, ["b"])
    with pytest.raises(BoundaryError, match="no measured responses"):
        hold_kept(codes(1, 3)[0], {"a": 1.0}, moved, ["b"], back, world)
    (tmp_path / FILE).write_bytes(b"not an npz")
    with pytest.raises(BoundaryError, match="cannot read response table"):
        Responses.load(tmp_path)
    np.savez(tmp_path / FILE, names=np.array(["a"]), layers=np.zeros((1, 2)), digests=np.array(["x"]),
             predictors=np.array(["a"]), std=np.ones(1), steps=np.array([0.0, 1.0]),
             mean=np.zeros((1, 3, 1)), faces=np.array(3))
    with pytest.raises(BoundaryError, match="inconsistent"):
        Responses.load(tmp_path)


def test_measure_rejects_unknown_names_and_can_be_cancelled() -> None:
    with pytest.raises(BoundaryError, match="unknown boundary"):
        measure(world, BOUNDARIES, ["a", "zz"], codes(2, 0))
    with pytest.raises(Cancelled, match="cancelled"):
        measure(world, BOUNDARIES, ["a"], codes(2, 0), cancelled=lambda: True)
    seen = []
    measure(world, BOUNDARIES, ["a"], codes(2, 0), progress=lambda p: seen.append((p.done, p.total)))
    assert seen == [(i, 7) for i in range(1, 8)]


def test_cli_keep_methods(tmp_path: Path, generator, capsys) -> None:  # noqa: ANN001
    from latentstudio.cli import main
    from latentstudio.codes import save_code

    code = tmp_path / "c.npz"
    save_code(code, np.tile(generator.seed_w(5).numpy(), (23, 1)))
    out = tmp_path / "out.png"
    # the shipped table covers smile and age: --keep holds the age score in a closed loop
    assert main(["edit", "--code", str(code), "--set", "smile=1.5", "--keep", "age", "--size", "256",
                 "--device", "cpu", "-o", str(out)]) == 0
    assert "keep (measured): steps smile" in capsys.readouterr().err
    assert main(["edit", "--code", str(code), "--set", "smile=1.5", "--keep", "age", "--keep-method",
                 "measured", "--layers", "0-6", "-o", str(out)]) == 2
    assert "--layers" in capsys.readouterr().err
    assert main(["edit", "--code", str(code), "--set", "smile=1.5", "--keep", "age", "--keep-method",
                 "projection", "--size", "256", "--device", "cpu", "-o", str(out)]) == 0
    assert "measured" not in capsys.readouterr().err


def test_hold_kept_never_ends_worse_than_the_projection(table: Responses) -> None:
    """A face whose kept score answers its normal the other way round from the table: every
    Newton step makes it worse, so the loop must return the projection edit it started from."""
    def contrary(c: np.ndarray) -> dict[str, np.ndarray]:
        s = world(c)
        return dict(s, b=s["b"] - 2 * (c[:, 3] @ N_B))

    w = codes(1, 4)[0]
    held = hold_kept(w, {"a": 2.5}, BOUNDARIES, ["b"], table, contrary)
    projected = apply_edits(w, {"a": 2.5}, BOUNDARIES, keep=["b"])
    assert np.allclose(held.w_plus, projected, atol=1e-6)


def test_the_scorer_reads_the_full_render_when_asked(generator) -> None:  # noqa: ANN001
    """``full=True`` (what the CLI's measured --keep loop uses) scores what the user exports: the
    full 1024² network's render area-reduced to the predictors' 256²; the default, the preview route."""
    import torch

    from latentstudio.edit.predictors import predict_all, working_images
    from latentstudio.models.generator import to_uint8
    from latentstudio.edit.responses import predictor_scorer

    code = np.repeat(generator.seed_w(3, 0.7).numpy()[None], 23, 0)[None].astype(np.float32)
    with torch.no_grad():  # what the predictors make of the exported 1024² image
        full = working_images(to_uint8(generator.synthesize(torch.from_numpy(code), size=1024)))[0]
        preview = to_uint8(generator.synthesize(torch.from_numpy(code), size=256))[0]
    np.testing.assert_array_equal(generator.predictor_images(code), full[None])
    want, other = predict_all(full[None]), predict_all(preview[None])
    got = predictor_scorer(generator, full=True)(code)
    assert got["yaw"][0] == pytest.approx(want["yaw"][0]) and got["smile"][0] == pytest.approx(want["smile"][0])
    assert predictor_scorer(generator)(code)["smile"][0] == pytest.approx(other["smile"][0])
    assert (full != preview).any()
