"""The one placement value: stored in code files, checked against the photo, pasted through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentstudio.face.pasteback import paste_back
from latentstudio.face.placement import Placement, PlacementError
from latentstudio.safety import InputError, explain

QUAD = np.array([[40.0, 30.0], [40.0, 170.0], [180.0, 170.0], [180.0, 30.0]])


def _landmarks() -> np.ndarray:
    """68 points on an ellipse inside QUAD, enough for the paste mask."""
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([110 + 45 * np.cos(t), 105 + 55 * np.sin(t)], axis=1)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (200, 240, 3), dtype=np.uint8)).save(p)
    return p


def test_arrays_round_trip_and_paste_matches_paste_back(photo: Path) -> None:
    place = Placement(photo, (240, 200), QUAD, _landmarks(), face_index=2)
    back = Placement.from_arrays(place.arrays())
    assert back.photo == photo.resolve() and back.size == (240, 200) and back.face_index == 2
    np.testing.assert_allclose(back.quad, QUAD)
    np.testing.assert_allclose(back.landmarks, _landmarks(), atol=1e-4)  # stored as float32
    face = np.full((64, 64, 3), 200, np.uint8)
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    out = back.paste(face)
    np.testing.assert_array_equal(out, paste_back(rgb, face, back.quad, back.landmarks))
    assert (out != rgb).any() and out[0, 0].tolist() == rgb[0, 0].tolist()


def test_wrong_size_missing_photo_and_missing_quad_are_clear_input_errors(photo: Path, tmp_path: Path) -> None:
    arrays = Placement(photo, (240, 200), QUAD, _landmarks()).arrays()
    other = tmp_path / "other.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(other)
    with pytest.raises(PlacementError, match="100x100 but the face was aligned in a 240x200 photo"):
        Placement.from_arrays(arrays, other).paste(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(PlacementError, match="gone"):
        Placement.from_arrays(arrays, tmp_path / "nope.png").paste(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(PlacementError, match="latentstudio invert"):
        Placement.from_arrays({"photo": arrays["photo"]})
    with pytest.raises(PlacementError, match="non-finite"):
        Placement(photo, (240, 200), QUAD * np.nan, _landmarks())
    exc = PlacementError("x")
    assert isinstance(exc, InputError) and explain(exc).exit_code == 2


def test_scaled_placement_pastes_into_a_reduced_photo(photo: Path) -> None:
    place = Placement(photo, (240, 200), QUAD, _landmarks())
    small = place.scaled(0.5, 0.5)
    assert small.size == (120, 100)
    np.testing.assert_allclose(small.quad, (QUAD + 0.5) * 0.5 - 0.5)
    reduced = np.random.default_rng(1).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    face = np.full((32, 32, 3), 255, np.uint8)
    out = small.paste(face, reduced)
    np.testing.assert_array_equal(out, paste_back(reduced, face, small.quad, small.landmarks))
    changed = np.argwhere((out != reduced).any(-1))
    assert len(changed) and abs(changed[:, 0].mean() - 52) < 8 and abs(changed[:, 1].mean() - 55) < 8
    with pytest.raises(PlacementError):
        small.paste(np.zeros((8, 8, 3), np.uint8), np.zeros((200, 240, 3), np.uint8))
