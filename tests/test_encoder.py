"""The linear inversion encoder: it guesses w better than the average face, and bad files are
reported, never crash an inversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentstudio import encoder as E


@pytest.fixture(scope="module")
def held_out(generator) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """8 generated faces (seeds far from the fitting seeds 0 … 14 999) and their w."""
    from latentstudio.models.generator import to_uint8

    w = torch.stack([generator.seed_w(s, 0.7) for s in range(910_000, 910_008)])
    with torch.no_grad():
        images = to_uint8(generator.synthesize(w, size=256))
    return images, w.numpy()


def test_shipped_encoder_beats_the_average_face(generator, held_out) -> None:  # noqa: ANN001
    from latentstudio.losses.lpips import load_lpips
    from latentstudio.models.generator import from_uint8, to_uint8

    images, w = held_out
    enc = E.load_encoder()
    guess = enc(images)
    assert guess.shape == (8, 512) and guess.dtype == np.float32
    assert np.allclose(enc(images[0]), guess[0], atol=1e-5)
    avg = generator.w_avg.numpy()
    err_enc = np.sum((guess - w) ** 2, axis=1)
    err_avg = np.sum((avg - w) ** 2, axis=1)
    # held-out relative error when fitted: ~0.5 (the average face is 1 by definition)
    assert err_enc.mean() < 0.75 * err_avg.mean() and np.sum(err_enc < err_avg) >= 6
    lp = load_lpips("alex")
    with torch.no_grad():
        from_guess = to_uint8(generator.synthesize(torch.from_numpy(guess), size=256))
        from_avg = to_uint8(generator.synthesize(torch.from_numpy(np.tile(avg, (8, 1))), size=256))
        d_guess = lp(from_uint8(from_guess), from_uint8(images)).flatten()
        d_avg = lp(from_uint8(from_avg), from_uint8(images)).flatten()
    assert d_guess.mean() < d_avg.mean() - 0.05, (d_guess, d_avg)


def test_fit_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (600, 64, 64, 3), dtype=np.uint8)
    hidden = rng.standard_normal((3 * 8 * 8, 512)) * 0.1
    w = E.features(images, 8) @ hidden + 1.0  # an exactly linear target at 8²
    enc = E.fit_encoder(images, w, ridge=1e-3, size=8, held_out=100)
    assert float(enc.info["relative_error"]) < 1e-3
    E.save_encoder(enc, tmp_path / "enc.safetensors", note="test")
    back = E.load_encoder(tmp_path / "enc.safetensors")
    assert back.size == 8 and back.info["note"] == "test"
    assert np.allclose(back(images[:3]), enc(images[:3]), atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["enc.safetensors"]  # no temp files left


def test_bad_encoder_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(E.EncoderError, match="no encoder weights"):
        E.load_encoder(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00not a safetensors file" * 10)
    with pytest.raises(E.EncoderError, match="not a readable"):
        E.load_encoder(junk)
    from safetensors.numpy import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weight": np.zeros((4, 4), np.float32)}, str(other), metadata={"format": "something else"})
    with pytest.raises(E.EncoderError, match="not a LatentStudio encoder"):
        E.load_encoder(other)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"weight": np.zeros((12, 512), np.float32), "pixel_mean": np.zeros(12, np.float32),
               "w_mean": np.zeros(512, np.float32)}, str(wrong),
              metadata={"format": E.FORMAT, "version": E.VERSION, "size": "32"})
    with pytest.raises(E.EncoderError, match="do not fit"):
        E.load_encoder(wrong)
    with pytest.raises(ValueError, match="uint8"):
        E.features(np.zeros((2, 8, 8, 3), np.float32))


def test_inversion_without_a_usable_encoder_starts_from_the_average(generator, held_out,  # noqa: ANN001
                                                                     monkeypatch, tmp_path: Path) -> None:
    from dataclasses import replace

    from latentstudio.invert import PRESETS, invert

    monkeypatch.setattr(E, "ASSET", tmp_path / "gone.safetensors")
    with pytest.warns(UserWarning, match="average face"):
        out = invert(held_out[0][0], preset=replace(PRESETS["fast"], start="encoder"), steps=1,
                     generator=generator)
    assert out.w_plus.shape == (23, 512) and np.isfinite(out.w_plus).all()
