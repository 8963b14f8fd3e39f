"""Artifact repair along the shipped quality boundary (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentstudio.edit.boundaries import BoundaryError, load_all
from latentstudio.edit.quality import quality_scores
from latentstudio.edit.repair import repair, repair_direction
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


def test_repair_direction_keeps_identity_attributes(generator, boundaries) -> None:  # noqa: ANN001
    code = _codes(generator, 5, 1, 1.0)[0]
    for d in (repair_direction(boundaries), repair_direction(boundaries, code, generator.w_avg.numpy())):
        assert abs(np.linalg.norm(d) - 1) < 1e-5
        for name in ("gender", "age", "eyeglasses", "beard"):
            if name in boundaries:
                assert abs(float(d @ boundaries[name].normal)) < 1e-5


def test_repair_fixes_broken_samples_and_keeps_the_person(generator, boundaries) -> None:  # noqa: ANN001
    codes = _codes(generator, 700_000, 24, 1.0)
    scores = quality_scores(_render(generator, codes))
    broken = np.argsort(scores)[:3]  # the worst of a fixed set of ψ = 1 samples
    threshold = float(boundaries["quality"].details["threshold"])
    assert (scores[broken] < threshold).all()
    from latentstudio.face.chip import IdentityNet

    idnet = IdentityNet.load("cpu")
    for i in broken:
        r = repair(codes[i], boundaries, generator=generator)
        assert r.alpha > 0 and r.score_after > r.score_before
        before, after = _render(generator, codes[i][None]), _render(generator, r.w_plus[None])
        with torch.no_grad():
            e = idnet.embed_aligned(from_uint8(np.concatenate([before, after])))
        assert float((e[0] - e[1]).norm()) <= 0.45


def test_repair_leaves_clean_faces_alone(generator, boundaries) -> None:  # noqa: ANN001
    # ψ = 0.5 faces are cleaner than the threshold (the 10th percentile of ψ = 0.7 faces), so
    # repair must not move them at all: identical codes.
    for code in _codes(generator, 31, 3, 0.5):
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


def test_repair_reports_progress_and_cancels_with_the_one_cancelled(generator, boundaries) -> None:  # noqa: ANN001
    from latentstudio.progress import Cancelled, Progress

    code = _codes(generator, 700_000, 1, 1.0)[0]
    seen: list[Progress] = []
    with pytest.raises(Cancelled, match="repair cancelled"):
        repair(code, boundaries, generator=generator, threshold=1e9, progress=seen.append,
               cancelled=lambda: len(seen) >= 2)
    assert [(p.stage, p.done) for p in seen] == [("repair", 1), ("repair", 2)]
    assert len({p.total for p in seen}) == 1
