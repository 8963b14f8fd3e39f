"""OpenFace nn4.small2.v1 (``latentstudio.face.openface``): the torch port against the original.

The reference embeddings in ``tests/data/openface_reference.npz`` come from OpenFace's own
Torch7 file run by OpenCV (``bench/openface_reference.py`` documents how to regenerate them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from latentstudio.face.openface import (
    EMBED_DIM,
    INCEPTIONS,
    INPUT_SIZE,
    FFHQ_OUTER_EYES_AND_NOSE,
    OPENFACE_TEMPLATE,
    OpenFaceIdentity,
    OpenFaceNet,
    crop_matrix,
    openface_crop,
    openface_distance,
)
from latentstudio.models.fetch import require

FIXTURE = Path(__file__).parent / "data" / "openface_reference.npz"
# measured: 6.8e-07 (float32 rounding; the HDF5 weights are bit-identical to the .t7 ones)
MAX_ABS_ERROR = 1e-5


@pytest.fixture(scope="module")
def identity() -> OpenFaceIdentity:
    require("openface")  # a clear "run: latentstudio models fetch" when missing
    return OpenFaceIdentity.load("cpu")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def astronaut_aligned() -> torch.Tensor:
    """scikit-image's astronaut, FFHQ-aligned to 1024², as (1, 3, 1024, 1024) in [-1, 1]."""
    from latentstudio.face.align import align_face
    from latentstudio.face.detect import detect_faces, pick_face
    from latentstudio.models.generator import from_uint8

    photo = np.ascontiguousarray(skimage_data.astronaut())
    return from_uint8(align_face(photo, pick_face(detect_faces(photo))).image)


def test_architecture_matches_the_weights() -> None:
    net = OpenFaceNet()
    values = sum(t.numel() for t in net.state_dict().values())
    assert values == 3_743_280  # conv/linear weights and biases + batch-norm gamma, beta, mean, var
    assert INCEPTIONS[-1].out_ch == net.fc.in_features == 736


def test_port_matches_torch7_reference(identity: OpenFaceIdentity,
                                       reference: dict[str, np.ndarray]) -> None:
    inputs, want = reference["inputs"], reference["embeddings"]
    assert inputs.dtype == np.uint8 and inputs.shape[1:] == (INPUT_SIZE, INPUT_SIZE, 3)
    assert want.shape == (len(inputs), EMBED_DIM)
    got = identity.embed_crops(inputs).numpy()
    err = np.abs(got - want).max()
    assert err < MAX_ABS_ERROR, f"max abs error {err:.2e} vs OpenFace's Torch7 network"


def test_embeddings_are_unit_vectors(identity: OpenFaceIdentity,
                                     reference: dict[str, np.ndarray]) -> None:
    got = identity.embed_crops(reference["inputs"])
    assert torch.allclose(torch.linalg.vector_norm(got, dim=1), torch.ones(len(got)), atol=1e-5)
    noise = torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        assert torch.allclose(identity.net(noise).norm(dim=1), torch.ones(2), atol=1e-5)


def test_fixed_crop_is_openface_alignment(identity: OpenFaceIdentity,
                                          reference: dict[str, np.ndarray]) -> None:
    """The template lands where OpenFace puts it, and the fixed FFHQ crop of the astronaut
    embeds like OpenFace's own per-photo alignment of her (fixture inputs 0 and 1)."""
    m = crop_matrix(256)
    tpl = np.concatenate([OPENFACE_TEMPLATE * INPUT_SIZE, np.ones((3, 1))], axis=1)
    np.testing.assert_allclose(tpl @ m.T, FFHQ_OUTER_EYES_AND_NOSE * 256 - 0.5, atol=1e-9)
    emb = torch.from_numpy(reference["embeddings"])
    assert openface_distance(emb[0], emb[1]) < 0.35


def test_same_person_closer_than_different(identity: OpenFaceIdentity, generator,
                                           astronaut_aligned: torch.Tensor) -> None:
    with torch.no_grad():
        codes = torch.stack([generator.seed_w(s, 0.7) for s in (3, 4)])[:, None].repeat(1, 23, 1)
        others = generator.synthesize(codes, size=256)
        astro = identity.embed_aligned(astronaut_aligned)
        mirrored = identity.embed_aligned(astronaut_aligned.flip(3))
        small = identity.embed_aligned(torch.nn.functional.interpolate(
            astronaut_aligned, size=(384, 384), mode="bilinear", antialias=True))
        strangers = identity.embed_aligned(others)
    same = openface_distance(astro, mirrored).item()
    resized = openface_distance(astro, small).item()
    different = openface_distance(astro, strangers)
    assert same < 0.6 and resized < 0.2, (same, resized)
    assert (different > same).all(), (same, different.tolist())
    assert (different > 0.8).all(), different.tolist()


def test_aligned_crop_is_differentiable(identity: OpenFaceIdentity,
                                        astronaut_aligned: torch.Tensor) -> None:
    for size in (1024, 256):
        x = torch.nn.functional.interpolate(astronaut_aligned, size=(size, size), mode="area")
        x = x.clone().requires_grad_(True)
        crop = openface_crop(x)
        assert crop.shape == (1, 3, INPUT_SIZE, INPUT_SIZE)
        assert 0.0 <= crop.min().item() and crop.max().item() <= 1.0
        target = torch.nn.functional.normalize(torch.ones(1, EMBED_DIM), dim=1)
        loss = openface_distance(identity.embed_aligned(x), target).sum()
        loss.backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0
        # the crop covers x 0.21..0.79, y 0.38..0.93 of the side: nothing outside gets a gradient
        outside = x.grad.abs().clone()
        outside[..., int(0.36 * size):int(0.95 * size), int(0.19 * size):int(0.81 * size)] = 0
        assert outside.sum() == 0
    assert all(p.grad is None for p in identity.parameters())
