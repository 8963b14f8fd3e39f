"""The inversion encoder: its W+ guess is closer than the average face on generated faces, files
round-trip, and bad files are reported, never crash an inversion. (On real photos the guess is
judged in bench/invert.py and bench/RESULTS.md: there it is closer by OpenFace on average but not
on every photo, so no single photo makes a fair unit test.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentstudio import encoder as E


@pytest.fixture(scope="module")
def held_out(generator) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """8 generated faces (seeds far from the training seeds, 2 000 000 on) and their w."""
    from latentstudio.models.generator import to_uint8

    w = torch.stack([generator.seed_w(s, 0.7) for s in range(910_000, 910_008)])
    with torch.no_grad():
        images = to_uint8(generator.synthesize(w, size=256))
    return images, w.numpy()


def _lpips_to(generator, codes: np.ndarray, images: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """LPIPS-Alex between the 256² renders of ``codes`` (N,23,512) and ``images`` (N,S,S,3) at 256²."""
    from latentstudio.losses.lpips import load_lpips
    from latentstudio.models.generator import from_uint8, resize

    with torch.no_grad():
        renders = generator.synthesize(torch.from_numpy(codes), size=256)
        return load_lpips("alex")(renders, resize(from_uint8(images), 256)).flatten().numpy()


def test_shipped_encoder_beats_the_average_face(generator, held_out) -> None:  # noqa: ANN001
    images, w = held_out
    enc = E.load_encoder()
    guess = enc.guess(images)
    assert guess.shape == (8, 23, 512) and guess.dtype == np.float32
    assert np.allclose(enc.guess(images[0]), guess[0], atol=1e-4)
    avg = generator.w_avg.numpy()
    err_enc = np.sum((guess - w[:, None]) ** 2, axis=(1, 2))
    err_avg = 23 * np.sum((avg - w) ** 2, axis=1)
    # held-out relative error when trained: well under 1 (the average face is 1 by definition)
    assert err_enc.mean() < 0.6 * err_avg.mean() and np.sum(err_enc < err_avg) >= 7
    d_guess = _lpips_to(generator, guess, images)
    d_avg = _lpips_to(generator, np.repeat(avg[None, None], 8, 0).repeat(23, 1), images)
    assert d_guess.mean() < d_avg.mean() - 0.1, (d_guess, d_avg)


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = E.Encoder().eval()
    enc.w_mean.normal_()
    E.save_encoder(enc, tmp_path / "enc.safetensors", note="test")
    back = E.load_encoder(tmp_path / "enc.safetensors")
    faces = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert np.allclose(back.guess(faces), enc.guess(faces), atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["enc.safetensors"]  # no temp files left
    with pytest.raises(ValueError, match="uint8"):
        back.guess(np.zeros((8, 8, 3), np.float32))


def test_bad_encoder_files_are_clear_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(E.EncoderError, match="no encoder weights"):
        E.load_encoder(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00not a safetensors file" * 10)
    with pytest.raises(E.EncoderError, match="not a readable"):
        E.load_encoder(junk)
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(4, 4)}, str(other), metadata={"format": "something else"})
    with pytest.raises(E.EncoderError, match="not a LatentStudio encoder"):
        E.load_encoder(other)
    old = tmp_path / "linear.safetensors"  # the linear encoder of version 1
    save_file({"weight": torch.zeros(12, 512)}, str(old), metadata={"format": "latentstudio-linear-encoder",
                                                                    "version": "1"})
    with pytest.raises(E.EncoderError, match="not a LatentStudio encoder"):
        E.load_encoder(old)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"w_mean": torch.zeros(512)}, str(wrong), metadata={"format": E.FORMAT, "version": E.VERSION})
    with pytest.raises(E.EncoderError, match="incomplete"):
        E.load_encoder(wrong)
    state = {k: v.clone() for k, v in E.Encoder().state_dict().items()}
    state["w_std"][0] = float("nan")
    nan = tmp_path / "nan.safetensors"
    save_file(state, str(nan), metadata={"format": E.FORMAT, "version": E.VERSION})
    with pytest.raises(E.EncoderError, match="non-finite"):
        E.load_encoder(nan)


def test_inversion_without_a_usable_encoder_starts_from_the_average(generator, held_out,  # noqa: ANN001
                                                                     monkeypatch, tmp_path: Path) -> None:
    from dataclasses import replace

    from latentstudio.invert import PRESETS, invert

    monkeypatch.setattr(E, "ASSET", tmp_path / "gone.safetensors")
    with pytest.warns(UserWarning, match="average face"):
        out = invert(held_out[0][0], preset=replace(PRESETS["fast"], start="encoder"), steps=1,
                     generator=generator)
    assert out.w_plus.shape == (23, 512) and np.isfinite(out.w_plus).all()
