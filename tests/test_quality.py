"""The quality signals and the shipped score: truncated samples beat wild ones, corrupted faces
score lower, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentstudio.edit import quality as Q
from latentstudio.edit.boundaries import load_all
from latentstudio.edit.repair import measure_samples, quality_model

SEEDS = (500, 8)  # first seed, count


@pytest.fixture(scope="module")
def samples(generator) -> dict[float, np.ndarray]:
    """The same 8 seeds at psi 0.5 and 1.2: psi -> faces (8, 256, 256, 3) uint8."""
    from latentstudio.models.generator import to_uint8

    z = generator.sample_z(*SEEDS)
    with torch.no_grad():
        return {psi: to_uint8(generator.synthesize(generator.map(z, psi), size=256)) for psi in (0.5, 1.2)}


@pytest.fixture(scope="module")
def score():  # noqa: ANN201
    model = quality_model(load_all())
    return lambda faces: model.score(measure_samples(faces))


def test_truncated_samples_score_higher(samples: dict[float, np.ndarray], score) -> None:  # noqa: ANN001
    tame, wild = score(samples[0.5]), score(samples[1.2])
    assert tame.mean() > wild.mean() + 0.5
    assert (tame > wild).sum() >= 6
    assert np.all(np.isfinite(tame)) and tame.shape == (SEEDS[1],)


def test_noise_blocks_over_the_face_lower_the_signals_and_the_score(samples: dict[float, np.ndarray], score) -> None:  # noqa: ANN001
    faces = samples[0.5][:4]
    rng = np.random.default_rng(0)
    broken = faces.copy()
    for x, y in ((96, 121), (160, 121), (128, 152), (128, 186)):  # eyes, nose, mouth of the FFHQ layout
        broken[:, y - 18:y + 18, x - 18:x + 18] = rng.integers(0, 256, (len(faces), 36, 36, 3), np.uint8)
    clean, noisy = Q.quality_signals(faces), Q.quality_signals(broken)
    assert set(clean) == {"detector", "identity_norm", "identity_mirror"}
    assert clean["detector"].mean() > noisy["detector"].mean()
    assert np.all(score(broken) < score(faces) - 0.5)


def test_landmark_mirror_is_zero_for_a_symmetric_fit() -> None:
    """Landmarks whose mirror image's fit maps back onto them disagree by nothing."""
    pts = np.random.default_rng(1).uniform(60, 200, (1, 68, 2))
    mirrored = pts[:, Q.MIRROR_68].copy()
    mirrored[..., 0] = 255 - mirrored[..., 0]
    assert Q.landmark_mirror(pts, mirrored, 256)[0] < 1e-9
    shifted = mirrored + 5.0
    assert Q.landmark_mirror(pts, shifted, 256)[0] > 0.01


@pytest.mark.parametrize("images", [
    np.zeros((2, 64, 64, 3), np.float32),  # not uint8
    np.zeros((2, 64, 80, 3), np.uint8),    # not square
])
def test_bad_input_is_a_quality_error(images: np.ndarray) -> None:
    with pytest.raises(Q.QualityError):
        Q.quality_signals(images)
