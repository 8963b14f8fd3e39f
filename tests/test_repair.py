"""Artifact repair along the shipped, pose-relative quality boundary (issues 8 and 26)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentstudio.edit.boundaries import BoundaryError, load_all
from latentstudio.edit.repair import KEEP, POSE_GUARD, measure_codes, quality_model, repair, repair_direction
from latentstudio.models.generator import from_uint8, to_uint8


@pytest.fixture(scope="module")
def boundaries():  # noqa: ANN201
    b = load_all()
    if "quality" not in b:
        pytest.fail("the shipped quality boundary (boundaries/quality.npy) is missing")
    return b


def _codes(generator, first: int, n: int, psi: float) -> np.ndarray:  # noqa: ANN001
    w = generator.map(generator.sample_z(first, n), psi).numpy()
    return np.repeat(w[:, None], 23, axis=1)


def _render(generator, codes: np.ndarray) -> np.ndarray:  # noqa: ANN001
    return to_uint8(generator.synthesize(torch.from_numpy(np.asarray(codes)), size=256))


def _scores(generator, boundaries, codes: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # noqa: ANN001
    m = measure_codes(generator, np.asarray(codes, np.float32))
    return quality_model(boundaries).score(m), m


def test_repair_direction_keeps_pose_glasses_and_identity_attributes(generator, boundaries) -> None:  # noqa: ANN001
    from latentstudio.edit.repair import REPAIR_SLOTS

    code = _codes(generator, 5, 1, 1.0)[0]
    d = repair_direction(boundaries, code, generator.w_avg.numpy())
    lo, hi = REPAIR_SLOTS
    assert d.shape == (23, 512) and not d[:lo].any() and lo >= 4  # pose, outline and hats stay
    np.testing.assert_allclose(np.linalg.norm(d[lo:hi + 1], axis=1), 1.0, atol=1e-5)
    assert {"yaw", "pitch", "eyeglasses", "gender", "age"} <= set(KEEP)
    for name in KEEP:
        if name in boundaries:
            assert np.abs(d @ boundaries[name].normal).max() < 1e-5, name


def test_quality_score_is_relative_to_the_pose_and_glasses() -> None:
    """Signals that fall with |yaw| and with glasses (as dlib's detector does) give a score that
    does not: a profile face is judged against profile faces. A damaged face still scores low."""
    from latentstudio.edit.repair import QualityModel

    rng = np.random.default_rng(0)
    n = 4000
    yaw, pitch, glasses = rng.uniform(-40, 40, n), rng.uniform(-20, 20, n), rng.uniform(4, 35, n)
    damage = np.where(rng.random(n) < 0.05, 3.0, 0.0)  # 5 % damaged faces
    noise = lambda: rng.normal(0, 1, n)  # noqa: E731
    m = {"yaw": yaw, "pitch": pitch, "roll": rng.normal(0, 2, n), "eyeglasses": glasses, "valid": np.ones(n),
         "detector": 2.0 - 0.04 * np.abs(yaw) - 0.03 * glasses + 0.3 * (noise() - damage),
         "identity_norm": 1.5 - 0.002 * np.abs(yaw) + 0.05 * (noise() - damage),
         "identity_mirror": 0.2 + 0.003 * np.abs(yaw) + 0.03 * (noise() + damage),
         "landmark_mirror": np.exp(-4 + 0.02 * np.abs(yaw) + 0.3 * (noise() + damage))}
    assert np.corrcoef(m["detector"], np.abs(yaw))[0, 1] < -0.7  # the raw signal rewards frontal faces
    model = QualityModel.fit(m, {k: v[damage == 0] for k, v in m.items()})  # threshold: from clean faces
    score = model.score(m)
    assert abs(np.corrcoef(score, np.abs(yaw))[0, 1]) < 0.05 and abs(np.corrcoef(score, glasses)[0, 1]) < 0.05
    assert score[damage > 0].mean() < score[damage == 0].mean() - 2  # damage still reads as damage
    assert (score[damage > 0] < model.threshold).mean() > 0.9


def test_repair_fixes_broken_samples_and_keeps_the_person_and_pose(generator, boundaries) -> None:  # noqa: ANN001
    """The worst of a fixed set of ψ = 1 samples: most are moved, each moved one scores cleaner and
    keeps its pose *on the full render* (the face the user exports) and its person; a face no step
    of which stays within the guards comes back unchanged."""
    codes = _codes(generator, 700_000, 48, 1.0)
    scores, m0 = _scores(generator, boundaries, codes)
    found = m0["valid"] > 0.5  # (a render in which dlib finds no face is never moved)
    broken = [i for i in np.argsort(scores) if found[i]][:4]
    assert (scores[broken] < quality_model(boundaries).threshold).all()
    from latentstudio.face.chip import IdentityNet

    idnet = IdentityNet.load("cpu")
    results = [repair(codes[i], boundaries, generator=generator) for i in broken]
    assert sum(r.alpha > 0 for r in results) >= 2
    for i, r in zip(broken, results):
        if r.alpha == 0:
            np.testing.assert_array_equal(r.w_plus, codes[i])
            continue
        assert r.score_after > r.score_before
        after, _ = _scores(generator, boundaries, r.w_plus[None])
        assert after[0] == pytest.approx(r.score_after, abs=1e-6)
        f = measure_codes(generator, np.stack([codes[i], r.w_plus]).astype(np.float32), full=True)
        for k in ("yaw", "pitch"):
            assert abs(f[k][1] - f[k][0]) <= POSE_GUARD
        before, after_img = _render(generator, codes[i][None]), _render(generator, r.w_plus[None])
        with torch.no_grad():
            e = idnet.embed_aligned(from_uint8(np.concatenate([before, after_img])))
        assert float((e[0] - e[1]).norm()) <= 0.45


def test_repair_leaves_clean_faces_alone(generator, boundaries) -> None:  # noqa: ANN001
    # faces that score above the threshold (the 10th percentile of ψ = 0.7 faces) must not move
    # at all: identical codes
    codes = _codes(generator, 31, 6, 0.5)
    scores, _ = _scores(generator, boundaries, codes)
    clean = codes[scores >= quality_model(boundaries).threshold][:3]
    assert len(clean) >= 2
    for code in clean:
        r = repair(code, boundaries, generator=generator)
        assert r.alpha == 0.0 and np.array_equal(r.w_plus, code.astype(np.float32))


def test_repair_respects_the_strength_cap(generator, boundaries) -> None:  # noqa: ANN001
    code = _codes(generator, 700_000, 1, 1.0)[0]
    r = repair(code, boundaries, generator=generator, max_strength=0.5, threshold=1e9)
    assert r.alpha <= 0.5 and not r.satisfied


def test_repair_rejects_bad_codes(generator, boundaries) -> None:  # noqa: ANN001
    with pytest.raises(BoundaryError):
        repair(np.zeros((18, 512), np.float32), boundaries, generator=generator)
    with pytest.raises(BoundaryError):
        repair(np.full((23, 512), np.nan, np.float32), boundaries, generator=generator)


def test_edit_cli_repair_flag(generator, boundaries, tmp_path, capsys) -> None:  # noqa: ANN001
    from PIL import Image

    from latentstudio.cli import main

    code = _codes(generator, 31, 1, 0.5)[0]  # clean: repair must leave it as it is
    np.save(tmp_path / "c.npy", code)
    plain, fixed = tmp_path / "plain.png", tmp_path / "fixed.png"
    assert main(["edit", "--code", str(tmp_path / "c.npy"), "--size", "256", "-o", str(plain)]) == 0
    assert main(["edit", "--code", str(tmp_path / "c.npy"), "--size", "256", "--repair",
                 "-o", str(fixed)]) == 0
    assert "repair: moved 0" in capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(plain)), np.asarray(Image.open(fixed)))
    assert main(["edit", "--code", str(tmp_path / "c.npy"), "--repair", "-1", "-o", str(fixed)]) == 2


def test_edit_cli_repairs_the_face_only(generator, tmp_path, capsys) -> None:  # noqa: ANN001
    """``edit --repair`` on a broken ψ = 1 sample: the face changes, the top of the head and the
    sides are the unrepaired render's, and ``--save-code`` keeps those surroundings."""
    from PIL import Image

    from latentstudio.cli import main
    from latentstudio.codes import load_code_extras

    np.save(tmp_path / "c.npy", _codes(generator, 700_013, 1, 1.0)[0])  # broken: the repair moves it
    plain, fixed = tmp_path / "plain.png", tmp_path / "fixed.png"
    assert main(["edit", "--code", str(tmp_path / "c.npy"), "--size", "256", "-o", str(plain)]) == 0
    assert main(["edit", "--code", str(tmp_path / "c.npy"), "--size", "256", "--repair",
                 "--save-code", str(tmp_path / "r.npz"), "-o", str(fixed)]) == 0
    assert "repair: moved 0 " not in capsys.readouterr().err
    a, b = (np.asarray(Image.open(p)).astype(np.float32) for p in (plain, fixed))
    assert np.abs(a - b)[:32].mean() < 1.0 and np.abs(a - b)[:, :24].mean() < 1.0
    assert np.abs(a - b)[96:200, 80:176].mean() > 1.0
    extras = load_code_extras(tmp_path / "r.npz")
    np.testing.assert_allclose(extras["surroundings"], _codes(generator, 700_013, 1, 1.0)[0], atol=1e-6)


def test_repair_reports_progress_and_cancels_with_the_one_cancelled(generator, boundaries,  # noqa: ANN001
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import latentstudio.edit.repair as repair_module
    from latentstudio.progress import Cancelled, Progress

    monkeypatch.setattr(repair_module, "POSE_GUARD", np.inf)  # the walk must go on to be cancelled
    monkeypatch.setattr(repair_module, "GLASSES_GUARD", np.inf)

    code = _codes(generator, 700_000, 1, 1.0)[0]
    seen: list[Progress] = []
    with pytest.raises(Cancelled, match="repair cancelled"):
        repair(code, boundaries, generator=generator, threshold=1e9, progress=seen.append,
               cancelled=lambda: len(seen) >= 2)
    assert [(p.stage, p.done) for p in seen] == [("repair", 1), ("repair", 2)]
    assert len({p.total for p in seen}) == 1


def test_a_step_outside_the_guards_is_skipped_not_the_end_of_the_walk(generator, boundaries, monkeypatch) -> None:  # noqa: ANN001
    """dlib's pose reading of a damaged face jumps between neighbouring codes: a step read as
    turned is not kept, and the walk goes on to a later step that is within the guards."""
    import latentstudio.edit.repair as r

    model = quality_model(boundaries)
    code = _codes(generator, 900_003, 1, 1.0)[0].astype(np.float32)
    # (yaw read, score) for the original and for each step: step 1 is read as turned and would
    # score clean; step 2 is within the guards and better than the start; step 3 turned again
    # the score is read on the preview route, the guards on the full render: one of each per step
    readings = [(0.0, -3.0), (POSE_GUARD + 3, 5.0), (0.5, -2.0), (POSE_GUARD + 1, 4.0)]
    current, full_reads = [-1], []

    def fake_measure(_g, codes, full=False, scene=None):  # noqa: ANN001, ANN202
        current[0] += 0 if full else 1
        full_reads.append(full)
        yaw, score = readings[current[0]]
        return {"yaw": np.array([yaw]), "pitch": np.array([0.0]), "eyeglasses": np.array([0.0]),
                "valid": np.array([1.0]), "score": np.array([score])}

    monkeypatch.setattr(r, "measure_codes", fake_measure)
    monkeypatch.setattr(r.QualityModel, "score", lambda self, m: m["score"])
    out = repair(code, boundaries, generator=generator, max_strength=3 * r.STEP, threshold=model.threshold)
    assert out.alpha == pytest.approx(2 * r.STEP) and out.score_after == -2.0
    assert full_reads == [False, True] + [False, True] * 3  # each improving step's guards: full render
    np.testing.assert_allclose(out.w_plus, code + 2 * r.STEP * out.direction, atol=1e-5)


def test_a_repair_changes_the_face_only_in_the_app_and_the_cli(generator, boundaries, tmp_path) -> None:  # noqa: ANN001
    """A repair is shown inside the face, in the unrepaired code's hair, headwear and background:
    the document's render keeps the unrepaired render's top of the head and corners, where the
    repaired code's own render differs; its code file keeps those surroundings and
    ``render --code`` shows the same picture; the walk measures what is shown."""
    from PIL import Image

    from latentstudio.cli import main
    from latentstudio.codes import load_code_extras
    from latentstudio.document import Document, RepairOffset, Source
    from latentstudio.runtime import Runtime

    code = _codes(generator, 700_000, 1, 1.0)[0]
    direction = repair_direction(boundaries, code, generator.w_avg.numpy())
    runtime = Runtime("cpu", generator_factory=lambda: generator)
    doc = Document(code, Source("code"), boundaries.values(), runtime=runtime)
    doc.set_state(doc.state.with_repair(RepairOffset(3.0, direction)))
    shown = doc.render(generator, 256).astype(np.float32)
    plain = doc.render(generator, 256, doc.state.with_repair(None)).astype(np.float32)
    alone = _render(generator, doc.code()[None])[0].astype(np.float32)
    outside = np.zeros((256, 256), bool)
    outside[:40], outside[:, :32], outside[:, -32:] = True, True, True  # above the hairline, the sides
    assert np.abs(alone - plain)[outside].mean() > 4.0  # the repair moves the surroundings of a plain render
    assert np.abs(shown - plain)[outside].mean() < 0.15 * np.abs(alone - plain)[outside].mean()
    assert np.abs(shown - plain)[~outside].mean() > 2.0  # and changes the face

    path = tmp_path / "repaired.npz"
    doc.export_code(path)
    np.testing.assert_allclose(load_code_extras(path)["surroundings"], doc.code(doc.state.with_repair(None)), atol=1e-6)
    assert main(["render", "--code", str(path), "--size", "256", "-o", str(tmp_path / "r.png")]) == 0
    assert np.abs(np.asarray(Image.open(tmp_path / "r.png")).astype(np.float32) - shown).max() <= 2

    seen = []
    scene = doc.repair_scene()
    r = repair(code, boundaries, generator=generator, max_strength=0.5, threshold=1e9,
               scene=lambda c: seen.append(c) or scene(c))
    assert len(seen) >= 2 and r.alpha <= 0.5  # every step measured as it would be shown
