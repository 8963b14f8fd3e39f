"""The identity mapper: network, weight file, MS-SSIM, API (transfer / blend / deidentify), CLI,
and resumable training. Behaviour tests use the committed weights on generated faces at 256²."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentstudio.identity import api
from latentstudio.identity.losses import ms_ssim, pixel_loss, ssim
from latentstudio.identity.mapper import (
    ASSET,
    Mapper,
    MapperConfig,
    MapperError,
    Normalisation,
    load_mapper,
    save_mapper,
)

# generated test faces: seeds far from the training faces (0 … 4999) and the benchmark (1 000 000 …)
SEEDS = (3_000_001, 3_000_002, 3_000_003, 3_000_004, 3_000_005, 3_000_006, 3_000_007, 3_000_008)


def _random_mapper(seed: int = 0, slots: tuple[int, int] = (0, 22)) -> Mapper:
    torch.manual_seed(seed)
    m = Mapper(MapperConfig(hidden=(64, 32), slots=slots),
               Normalisation(torch.randn(512), torch.tensor(0.5), torch.randn(128), torch.tensor(0.1)))
    torch.nn.init.normal_(m.net[-1].weight, std=0.1)  # the last layer starts at zero: make it act
    return m.eval()


# ----------------------------------------------------------------------------- network
def test_mapper_starts_as_identity_and_has_the_right_shapes() -> None:
    m = Mapper(MapperConfig(hidden=(64, 32)))
    emb, attr = torch.randn(3, 128), torch.randn(3, 23, 512)
    out = m(emb, attr)
    assert out.shape == (3, 23, 512)
    assert torch.equal(out, attr)  # zero-initialised last layer: "no change" is the start
    assert m(emb, attr[:, 0]).shape == (3, 23, 512)  # w (N,512) is broadcast


def test_mapper_is_deterministic_and_respects_its_slots() -> None:
    m = _random_mapper(slots=(0, 9))
    emb, attr = torch.randn(2, 128), torch.randn(2, 23, 512)
    a, b = m(emb, attr), m(emb, attr)
    assert torch.equal(a, b)
    assert not torch.allclose(a[:, :10], attr[:, :10])
    assert torch.equal(a[:, 10:], attr[:, 10:])
    d = a - attr  # one Δ for every slot in range
    assert torch.allclose(d[:, 0], d[:, 9], atol=1e-5)


@pytest.mark.parametrize("emb, attr", [((2, 127), (2, 23, 512)), ((2, 128), (3, 23, 512)),
                                       ((2, 128), (2, 22, 512)), ((128,), (2, 23, 512))])
def test_mapper_rejects_bad_shapes(emb: tuple[int, ...], attr: tuple[int, ...]) -> None:
    with pytest.raises(MapperError):
        Mapper(MapperConfig(hidden=(8,)))(torch.zeros(emb), torch.zeros(attr))


def test_weight_file_round_trip_and_damage(tmp_path: Path) -> None:
    m = _random_mapper(slots=(2, 15))
    path = tmp_path / "m.safetensors"
    save_mapper(m, path, {"note": "test"})
    loaded = load_mapper(path)
    emb, attr = torch.randn(2, 128), torch.randn(2, 23, 512)
    assert loaded.config == m.config
    assert torch.equal(loaded(emb, attr), m(emb, attr))
    (tmp_path / "bad.safetensors").write_bytes(path.read_bytes()[:100])
    with pytest.raises(MapperError):
        load_mapper(tmp_path / "bad.safetensors")
    with pytest.raises(MapperError, match="no mapper weights"):
        load_mapper(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "x"})
    with pytest.raises(MapperError, match="not a LatentStudio mapper"):
        load_mapper(tmp_path / "other.safetensors")


# ----------------------------------------------------------------------------- MS-SSIM
def test_ms_ssim_orders_distortions() -> None:
    torch.manual_seed(0)
    img = torch.rand(1, 3, 176, 176) * 2 - 1
    img = torch.nn.functional.avg_pool2d(img, 5, 1, 2)  # some structure
    small = (img + 0.05 * torch.randn_like(img)).clamp(-1, 1)
    large = (img + 0.4 * torch.randn_like(img)).clamp(-1, 1)
    assert float(ms_ssim(img, img)) == pytest.approx(1.0, abs=1e-5)
    assert 1.0 > float(ms_ssim(img, small)) > float(ms_ssim(img, large))
    assert float(ssim(img, small)) > float(ssim(img, large))
    assert float(pixel_loss(img, img)) == pytest.approx(0.0, abs=1e-5)
    assert float(pixel_loss(img, large)) > float(pixel_loss(img, small)) > 0
    with pytest.raises(ValueError, match="176"):
        ms_ssim(torch.zeros(1, 3, 128, 128), torch.zeros(1, 3, 128, 128))


# ----------------------------------------------------------------------------- API
@pytest.fixture(scope="module")
def models(generator):  # noqa: ANN001, ANN201
    from latentstudio.face.chip import IdentityNet

    return api.IdentityModels(generator, IdentityNet.load("cpu"), load_mapper(ASSET))


@pytest.fixture(scope="module")
def faces(generator) -> np.ndarray:  # noqa: ANN001
    """W+ codes (8, 23, 512) of the test seeds."""
    w = torch.stack([generator.seed_w(s, 0.7) for s in SEEDS]).numpy()
    return np.repeat(w[:, None], 23, 1)


def _render(generator, codes: np.ndarray) -> np.ndarray:  # noqa: ANN001
    from latentstudio.models.generator import to_uint8

    return to_uint8(generator.synthesize(torch.from_numpy(np.asarray(codes, np.float32)), size=256))


def _landmarks(images: np.ndarray) -> np.ndarray:
    from latentstudio.edit import predictors

    return predictors.find_landmarks(images, predictors.load_models()).points


def test_transfer_of_a_face_onto_itself_stays_close(models, faces, generator) -> None:  # noqa: ANN001
    from latentstudio.losses.lpips import load_lpips
    from latentstudio.models.generator import from_uint8

    a = faces[:2]
    raw = np.stack([api.transfer(x, x, anchored=False, models=models) for x in a])
    assert raw.shape == (2, 23, 512) and raw.dtype == np.float32
    anchored = api.transfer(a[0], a[0], models=models)
    np.testing.assert_allclose(anchored, a[0], atol=1e-5)  # anchored form: exact by construction
    lp = load_lpips("vgg", "cpu")
    with torch.no_grad():
        d = lp(from_uint8(_render(generator, raw)), from_uint8(_render(generator, a)))
    assert float(d.max()) < 0.05, d  # the mapper reproduces A (measured ≈ 0.003)


def test_transfer_takes_identity_from_a_and_landmarks_from_b(models, faces, generator) -> None:  # noqa: ANN001
    from latentstudio.models.generator import from_uint8

    a, b = faces[:4], faces[4:]
    out = np.stack([api.transfer(x, y, models=models) for x, y in zip(a, b)])
    images = _render(generator, np.concatenate([out, a, b]))  # one render each, for both measures
    with torch.no_grad():
        e = models.identity_net.embed_aligned(from_uint8(images)).numpy()
    e_out, e_a, e_b = e[:4], e[4:8], e[8:]
    to_a, to_b = np.linalg.norm(e_out - e_a, axis=1), np.linalg.norm(e_out - e_b, axis=1)
    assert to_a.mean() < to_b.mean(), (to_a, to_b)
    lm = _landmarks(images)
    lm_out, lm_a, lm_b = lm[:4, 17:], lm[4:8, 17:], lm[8:, 17:]
    err_b = np.linalg.norm(lm_out - lm_b, axis=-1).mean()
    err_a = np.linalg.norm(lm_out - lm_a, axis=-1).mean()
    assert err_b < err_a, (err_b, err_a)


def test_blend_end_points_and_independent_amounts(models, faces) -> None:  # noqa: ANN001
    base, other = faces[0], faces[5]
    np.testing.assert_array_equal(api.blend(base, other, 0, 0, models=models), base)
    np.testing.assert_allclose(api.blend(base, other, 1, 1, models=models), other, atol=1e-4)
    id_only = api.blend(base, other, 1, 0, models=models)
    np.testing.assert_allclose(id_only, api.transfer(other, base, models=models), atol=1e-5)
    half = api.blend(base, other, 0.5, 0, models=models)
    # identity moves continuously: half-way code lies between the end points
    assert 0 < np.linalg.norm(half - base) < np.linalg.norm(id_only - base)


def test_deidentify_changes_identity_not_pose(models, faces, generator) -> None:  # noqa: ANN001
    code = faces[2]
    np.testing.assert_array_equal(api.deidentify(code, 0.0, models=models), code)
    out = api.deidentify(code, 1.0, seed=3, models=models)
    assert not np.allclose(out, code)
    assert np.array_equal(out, api.deidentify(code, 1.0, seed=3, models=models))
    d = np.linalg.norm(models.embedding(out) - models.embedding(code))
    assert d > 0.3, d
    lm = _landmarks(_render(generator, np.stack([out, code])))
    iod = np.linalg.norm(lm[1, 36:42].mean(0) - lm[1, 42:48].mean(0))
    assert np.linalg.norm(lm[0, 48:] - lm[1, 48:], axis=-1).mean() / iod < 0.1
    assert api.deidentify(code, 1.0, seed=None, models=models).shape == (23, 512)


@pytest.mark.parametrize("call", [
    lambda m, c: api.blend(c, c, 1.5, 0, models=m),
    lambda m, c: api.blend(c, c, float("nan"), 0, models=m),
    lambda m, c: api.blend(c[:5], c, 1, 0, models=m),
    lambda m, c: api.transfer(c, np.full((23, 512), np.inf, np.float32), models=m),
    lambda m, c: api.transfer(c, c, identity_embedding=np.zeros(12), models=m),
    lambda m, c: api.deidentify(c, -0.1, models=m),
    lambda m, c: api.deidentify(c, 1.0, seed=-3, models=m),
])
def test_bad_input_is_a_clear_error(models, faces, call) -> None:  # noqa: ANN001
    with pytest.raises(api.IdentityError):
        call(models, faces[0])


# ----------------------------------------------------------------------------- CLI
def test_cli_transfer_and_deidentify_codes(tmp_path: Path, faces) -> None:  # noqa: ANN001
    from PIL import Image

    from latentstudio.cli import main
    from latentstudio.codes import load_code, save_code

    save_code(tmp_path / "a.npz", faces[0])
    save_code(tmp_path / "b.npz", faces[4])
    out = tmp_path / "t.png"
    assert main(["transfer", "--identity", str(tmp_path / "a.npz"), "--attributes", str(tmp_path / "b.npz"),
                 "--size", "256", "--save-code", str(tmp_path / "t.npz"), "-o", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (256, 256, 3)
    assert load_code(tmp_path / "t.npz").shape == (23, 512)
    assert main(["deidentify", str(tmp_path / "a.npz"), "--strength", "0.5", "-o", str(tmp_path / "d.npz")]) == 0
    assert load_code(tmp_path / "d.npz").shape == (23, 512)
    # bad input: exit code 2
    assert main(["transfer", "--identity", str(tmp_path / "a.npz"), "--attributes", str(tmp_path / "b.npz"),
                 "--id-alpha", "2", "-o", str(out)]) == 2
    assert main(["transfer", "--identity", str(tmp_path / "none.npz"), "--attributes", str(tmp_path / "b.npz"),
                 "-o", str(out)]) == 2
    assert main(["transfer", "--identity", str(tmp_path / "a.npz"), "--attributes", str(tmp_path / "b.npz"),
                 "--paste-back", "-o", str(out)]) == 2  # a bare code has no photo to paste into


# ----------------------------------------------------------------------------- training
def test_training_is_cancellable_and_resumes(tmp_path: Path) -> None:
    from latentstudio.identity.data import TrainingCancelled
    from latentstudio.identity.train import TrainConfig, train_mapper

    cfg = TrainConfig(faces=20, hidden=(32,), surrogate_epochs=1, latent_steps=6, latent_batch=8)
    seen: list[int] = []

    def note(p) -> None:  # noqa: ANN001 - Progress
        if p.stage == "latent":
            seen.append(p.step)

    with pytest.raises(TrainingCancelled, match="checkpoint kept"):
        train_mapper(cfg, workdir=tmp_path, device="cpu", checkpoint_every=100, log_every=1,
                     progress=note, cancelled=lambda: len(seen) >= 3)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["stage"] == "latent" and ck["step"] == 3
    steps: list[int] = []
    result = train_mapper(cfg, workdir=tmp_path, device="cpu", log_every=1,
                          progress=lambda p: p.stage == "latent" and steps.append(p.step))
    assert steps and steps[0] == ck["step"] + 1 and steps[-1] == 6  # continued, not restarted
    assert result.mapper(torch.zeros(1, 128), torch.zeros(1, 512)).shape == (1, 23, 512)
    assert {"lm_err_iod", "id_err"} <= set(result.surrogate_errors)
