"""The quality score: truncated samples beat wild ones, corrupted faces score lower, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentstudio.edit import quality as Q

SEEDS = (500, 8)  # first seed, count


@pytest.fixture(scope="module")
def samples(generator) -> dict[float, tuple[np.ndarray, torch.Tensor]]:
    """The same 8 seeds at psi 0.5 and 1.2: psi -> (faces (8, 256, 256, 3) uint8, w (8, 512))."""
    from latentstudio.models.generator import to_uint8

    z = generator.sample_z(*SEEDS)
    out = {}
    for psi in (0.5, 1.2):
        w = generator.map(z, psi)
        out[psi] = (to_uint8(generator.synthesize(w, size=256)), w)
    return out


def test_truncated_samples_score_higher(samples: dict[float, tuple[np.ndarray, torch.Tensor]]) -> None:
    tame_faces, tame_w = samples[0.5]
    wild_faces, wild_w = samples[1.2]
    tame, wild = Q.quality_scores(tame_faces), Q.quality_scores(wild_faces)  # from the images alone
    assert tame.mean() > wild.mean() + 0.5
    assert (tame > wild).sum() >= 6
    tame_c, wild_c = Q.quality_scores(tame_faces, tame_w), Q.quality_scores(wild_faces, wild_w)
    assert tame_c.mean() > wild_c.mean() + 0.5
    assert np.all(np.isfinite(tame_c)) and tame_c.shape == (SEEDS[1],)


def test_noise_blocks_over_the_face_lower_the_score(samples: dict[float, tuple[np.ndarray, torch.Tensor]]) -> None:
    faces = samples[0.5][0][:4]
    rng = np.random.default_rng(0)
    broken = faces.copy()
    for x, y in ((96, 121), (160, 121), (128, 152), (128, 186)):  # eyes, nose, mouth of the FFHQ layout
        broken[:, y - 18:y + 18, x - 18:x + 18] = rng.integers(0, 256, (len(faces), 36, 36, 3), np.uint8)
    clean, noisy = Q.quality_scores(faces), Q.quality_scores(broken)
    assert np.all(noisy < clean - 0.5)


def test_code_distance_scales_with_truncation(generator) -> None:
    """|w_psi - w_avg| = psi |w - w_avg| (truncation is linear), and a W+ code of one repeated w
    measures like that w."""
    z = generator.sample_z(3, 4)
    full = Q.code_distance(generator.map(z, 1.0))
    assert np.allclose(Q.code_distance(generator.map(z, 0.5)), 0.5 * full, rtol=1e-4)
    w_plus = generator.map(z, 1.0)[:, None].expand(4, 23, 512)
    assert np.allclose(Q.code_distance(w_plus), full, rtol=1e-6)
    assert Q.code_distance(generator.w_avg[None]).item() < 1e-5


def test_scores_are_the_mean_of_reference_z_scores(samples: dict[float, tuple[np.ndarray, torch.Tensor]]) -> None:
    faces, w = samples[1.2]
    signals = Q.quality_signals(faces[:2], w[:2])
    assert set(signals) == set(Q.REFERENCE)
    by_hand = np.mean([ref.sign * (signals[k] - ref.median) / ref.scale for k, ref in Q.REFERENCE.items()], 0)
    assert np.allclose(Q.quality_scores(faces[:2], w[:2]), by_hand)


@pytest.mark.parametrize("images, codes", [
    (np.zeros((2, 64, 64, 3), np.float32), None),            # not uint8
    (np.zeros((2, 64, 80, 3), np.uint8), None),              # not square
    (np.zeros((2, 64, 64, 3), np.uint8), np.zeros((3, 512), np.float32)),   # count mismatch
    (np.zeros((2, 64, 64, 3), np.uint8), np.zeros((2, 256), np.float32)),   # wrong width
    (np.zeros((2, 64, 64, 3), np.uint8), np.full((2, 512), np.nan, np.float32)),
])
def test_bad_input_is_a_quality_error(images: np.ndarray, codes: np.ndarray | None) -> None:
    with pytest.raises(Q.QualityError):
        Q.quality_scores(images, codes)
