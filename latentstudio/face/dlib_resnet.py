"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a torch module.

The network (dlib's ``dnn_face_recognition_ex`` "anet_type", 29 convolutions, 128-d output):

    input_rgb_image_sized<150>: x = (RGB - mean) / 256, mean = (122.782, 117.001, 104.298)
    con 32 7x7 /2 (no padding) -> affine -> relu -> max_pool 3x3 /2            150 -> 72 -> 35
    level4: 3 x ares(32)                                                               35
    level3: ares_down(64), 3 x ares(64)                                                17
    level2: ares_down(128), 2 x ares(128)                                               8
    level1: ares_down(256), 2 x ares(256)                                               4
    level0: ares_down(256)                                                              2
    avg_pool_everything -> fc 256->128 (no bias)

``ares(N)``      = relu(x + affine(con3x3(relu(affine(con3x3(x))))))
``ares_down(N)`` = relu(avg_pool2x2/2(x) + affine(con3x3(relu(affine(con3x3 /2 (x))))))
dlib's strided layers have no padding, and its ``add_prev`` adds tensors of different shapes by
zero-padding the smaller one at the end of each axis (channels, rows, columns): the shortcut gains
zero channels, and at 8 -> (3 vs 4) the residual branch is one row/column short. "affine" is
batch-norm folded into a per-channel scale and shift.

The ``.dat`` is dlib's own serialization of the templated network, outermost layer first: each
wrapper writes its version number and then its sub-network, and a layer writes its details *after*
its sub-network (the loss layer writes them before). So the file is a run of version numbers down
to the input layer, then the layer details from the input outwards. Integers are dlib's
variable-length format (a byte holding the length, 0x80 = negative, then little-endian bytes);
floating-point values are (mantissa, exponent) integer pairs; tensors are version 2, four
dimensions and raw little-endian float32. Tags and skips write nothing but their version, so the
topology is not in the file: :data:`STACK` encodes it, and the parser checks every record of the
file against it.

``convert_dlib_resnet`` runs once at fetch time and writes ``resnet.safetensors``; at run time only
that file is read (``load_dlib_resnet``).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"
WEIGHTS_NAME = "resnet.safetensors"
CHIP_SIZE = 150
EMBED_DIM = 128
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold: L2 < 0.6 means "same person"

# (in channels, out channels, downsampling) of each residual block, in forward order.
BLOCKS: tuple[tuple[int, int, bool], ...] = (
    (32, 32, False), (32, 32, False), (32, 32, False),
    (32, 64, True), (64, 64, False), (64, 64, False), (64, 64, False),
    (64, 128, True), (128, 128, False), (128, 128, False),
    (128, 256, True), (256, 256, False), (256, 256, False),
    (256, 256, True),
)
STEM_CHANNELS = 32


class DlibFormatError(ValueError):
    """The ``.dat`` is not dlib's face-recognition ResNet (truncated, another network, ...)."""


# --------------------------------------------------------------------------- the architecture


@dataclass(frozen=True)
class Layer:
    """One entry of dlib's layer stack. ``args`` depend on ``kind``:

    con: (filters, size, stride); affine: (channels,); fc: (outputs, inputs);
    max_pool / avg_pool: (size, stride); avg_pool_everything, relu: (); tag / skip / add_prev: (id,);
    input: (size,).
    """

    kind: str
    args: tuple[int, ...] = ()

    @property
    def is_wrapper(self) -> bool:
        """Tags and skips serialize nothing but a version number."""
        return self.kind in ("tag", "skip")


def _block(n: int, stride: int) -> list[Layer]:
    """dlib's ``block``, outermost first: affine(con(relu(affine(con /stride))))."""
    return [Layer("affine", (n,)), Layer("con", (n, 3, 1)), Layer("relu"),
            Layer("affine", (n,)), Layer("con", (n, 3, stride))]


def _residual(n: int, down: bool) -> list[Layer]:
    if down:  # relu(add_prev2(avg_pool(skip1(tag2(block /2 (tag1(x)))))))
        return [Layer("relu"), Layer("add_prev", (2,)), Layer("avg_pool", (2, 2)),
                Layer("skip", (1,)), Layer("tag", (2,)), *_block(n, 2), Layer("tag", (1,))]
    return [Layer("relu"), Layer("add_prev", (1,)), *_block(n, 1), Layer("tag", (1,))]


def build_stack() -> tuple[Layer, ...]:
    """The whole network as dlib nests it, outermost first (below the loss layer)."""
    stack = [Layer("fc", (EMBED_DIM, BLOCKS[-1][1])), Layer("avg_pool_everything")]
    for _, c_out, down in reversed(BLOCKS):
        stack += _residual(c_out, down)
    stack += [Layer("max_pool", (3, 2)), Layer("relu"), Layer("affine", (STEM_CHANNELS,)),
              Layer("con", (STEM_CHANNELS, 7, 2)), Layer("input", (CHIP_SIZE,))]
    return tuple(stack)


STACK = build_stack()


# --------------------------------------------------------------------------- the file format


class _Reader:
    """Sequential reader of dlib's serialization primitives over a bytes object."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DlibFormatError(
                f"file ends early at byte {self.pos} of {len(self.data)} while reading {what} "
                "(truncated or not dlib's face-recognition model)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, what: str) -> int:
        head = self._take(1, what)[0]
        size = head & 0x7F
        if not 1 <= size <= 8:
            raise DlibFormatError(f"bad integer header 0x{head:02x} at byte {self.pos - 1} ({what})")
        value = int.from_bytes(self._take(size, what), "little")
        return -value if head & 0x80 else value

    def expect_int(self, want: int, what: str) -> None:
        got = self.int(what)
        if got != want:
            raise DlibFormatError(f"{what}: expected {want}, found {got} (byte {self.pos})")

    def float(self, what: str) -> float:
        mantissa = self.int(what)
        exponent = self.int(what)
        if abs(exponent) > 1100:  # dlib's codes for inf / nan
            raise DlibFormatError(f"{what}: non-finite value in the file")
        return math.ldexp(mantissa, exponent)

    def string(self, what: str) -> str:
        n = self.int(what)
        if n > 256:
            raise DlibFormatError(f"{what}: implausible string length {n} at byte {self.pos}")
        return self._take(n, what).decode("latin-1")

    def expect_string(self, want: str, what: str) -> None:
        got = self.string(what)
        if got != want:
            raise DlibFormatError(f"{what}: expected {want!r}, found {got!r}")

    def bool(self, what: str) -> bool:
        c = self._take(1, what)
        if c not in (b"0", b"1"):
            raise DlibFormatError(f"{what}: bad boolean byte {c!r} at byte {self.pos - 1}")
        return c == b"1"

    def tensor(self, what: str) -> np.ndarray:
        """A dlib tensor (version 2): shape (n, k, nr, nc), float32 little-endian."""
        self.expect_int(2, f"{what} tensor version")
        shape = tuple(self.int(what) for _ in range(4))
        if min(shape) < 0:
            raise DlibFormatError(f"{what}: negative tensor dimension {shape}")
        count = int(np.prod(shape))
        raw = self._take(4 * count, what)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        """An alias_tensor (a view's shape): version 1, (n, k, nr, nc)."""
        self.expect_int(1, f"{what} alias version")
        n, k, nr, nc = (self.int(what) for _ in range(4))
        return n, k, nr, nc


@dataclass
class DlibResNetFile:
    """What the ``.dat`` holds: input mean, loss settings and the weights in forward order."""

    mean_rgb: tuple[float, float, float]
    size: int
    margin: float
    distance_threshold: float
    convs: list[tuple[np.ndarray, np.ndarray]]  # (weight (O, I, k, k), bias (O,)), forward order
    affines: list[tuple[np.ndarray, np.ndarray]]  # (gamma (C,), beta (C,)), forward order
    fc: np.ndarray  # (128, 256), torch layout (out, in)


def _default_padding(size: int, stride: int) -> int:
    return 0 if stride != 1 else size // 2


def _read_con(r: _Reader, layer: Layer, c_in: int, out: DlibResNetFile) -> int:
    filters, size, stride = layer.args
    r.expect_string("con_4", "con layer")
    flat = r.tensor("con params").reshape(-1)
    for want, what in ((filters, "filters"), (size, "rows"), (size, "cols"),
                       (stride, "stride_y"), (stride, "stride_x")):
        r.expect_int(want, f"con {what}")
    pad = _default_padding(size, stride)
    r.expect_int(pad, "con padding_y")
    r.expect_int(pad, "con padding_x")
    if r.alias("con filters") != (filters, c_in, size, size):
        raise DlibFormatError(f"con filters: unexpected shape (wanted {filters}x{c_in}x{size}x{size})")
    if r.alias("con biases") != (1, filters, 1, 1):
        raise DlibFormatError("con biases: unexpected shape")
    for m in ("lr", "wd", "bias lr", "bias wd"):
        r.float(f"con {m} multiplier")
    n_w = filters * c_in * size * size
    if flat.size != n_w + filters:
        raise DlibFormatError(f"con params: {flat.size} values, expected {n_w + filters}")
    out.convs.append((flat[:n_w].reshape(filters, c_in, size, size).copy(), flat[n_w:].copy()))
    return filters


def _read_affine(r: _Reader, layer: Layer, c_in: int, out: DlibResNetFile) -> int:
    (ch,) = layer.args
    r.expect_string("affine_", "affine layer")
    flat = r.tensor("affine params").reshape(-1)
    for what in ("gamma", "beta"):
        if r.alias(f"affine {what}") != (1, ch, 1, 1):
            raise DlibFormatError(f"affine {what}: unexpected shape (wanted {ch} channels)")
    r.expect_int(0, "affine mode (0 = per channel)")
    if flat.size != 2 * ch or ch != c_in:
        raise DlibFormatError(f"affine params: {flat.size} values for {c_in} channels")
    out.affines.append((flat[:ch].copy(), flat[ch:].copy()))
    return c_in


def _read_pool(r: _Reader, layer: Layer, c_in: int, out: DlibResNetFile) -> int:
    name = "max_pool_2" if layer.kind == "max_pool" else "avg_pool_2"
    size, stride = layer.args if layer.args else (0, 1)  # avg_pool_everything: 0x0 window
    r.expect_string(name, f"{layer.kind} layer")
    for want, what in ((size, "rows"), (size, "cols"), (stride, "stride_y"), (stride, "stride_x")):
        r.expect_int(want, f"{layer.kind} {what}")
    pad = 0 if size == 0 else _default_padding(size, stride)
    r.expect_int(pad, f"{layer.kind} padding_y")
    r.expect_int(pad, f"{layer.kind} padding_x")
    return c_in


def _read_fc(r: _Reader, layer: Layer, c_in: int, out: DlibResNetFile) -> int:
    outputs, inputs = layer.args
    r.expect_string("fc_2", "fc layer")
    r.expect_int(outputs, "fc outputs")
    r.expect_int(inputs, "fc inputs")
    flat = r.tensor("fc params").reshape(-1)
    if r.alias("fc weights") != (inputs, outputs, 1, 1):
        raise DlibFormatError("fc weights: unexpected shape")
    r.alias("fc biases")
    r.expect_int(1, "fc bias mode (1 = no bias)")
    for m in ("lr", "wd", "bias lr", "bias wd"):
        r.float(f"fc {m} multiplier")
    if flat.size != inputs * outputs or c_in != inputs:
        raise DlibFormatError(f"fc params: {flat.size} values, expected {inputs * outputs}")
    out.fc = flat.reshape(inputs, outputs).T.copy()  # dlib computes x @ W with W (in, out)
    return outputs


def _read_named(name: str) -> Callable[[_Reader, Layer, int, DlibResNetFile], int]:
    """Reader for a parameter-free layer that writes only its name."""
    def read(r: _Reader, layer: Layer, c_in: int, out: DlibResNetFile) -> int:
        r.expect_string(name, f"{layer.kind} layer")
        return c_in
    return read


_READERS: dict[str, Callable[[_Reader, Layer, int, DlibResNetFile], int]] = {
    "con": _read_con, "affine": _read_affine, "fc": _read_fc,
    "max_pool": _read_pool, "avg_pool": _read_pool, "avg_pool_everything": _read_pool,
    "relu": _read_named("relu_"), "add_prev": _read_named("add_prev_"),
}


def parse_dlib_resnet(data: bytes) -> DlibResNetFile:
    """Parse the bytes of ``dlib_face_recognition_resnet_model_v1.dat``.

    Raises ``DlibFormatError`` (a ``ValueError``) when the bytes are truncated or hold anything
    other than this exact network.
    """
    r = _Reader(bytes(data))
    r.expect_int(1, "loss layer version")
    r.expect_string("loss_metric_2", "loss layer")
    margin = r.float("loss margin")
    threshold = r.float("loss distance threshold")

    body, inp = STACK[:-1], STACK[-1]
    first_version = 2
    for i, layer in enumerate(body):
        if layer.is_wrapper:
            r.expect_int(1, f"{layer.kind} version")
        elif i == len(body) - 1:  # the layer on the input: version 3 adds one trailing field
            first_version = r.int("first layer version")
            if first_version not in (2, 3):
                raise DlibFormatError(f"first layer version {first_version} is not 2 or 3")
        else:
            r.expect_int(2, f"{layer.kind} layer version")

    r.expect_string("input_rgb_image_sized", "input layer")
    mean = (r.float("mean red"), r.float("mean green"), r.float("mean blue"))
    r.expect_int(inp.args[0], "input rows")
    r.expect_int(inp.args[0], "input cols")

    out = DlibResNetFile(mean_rgb=mean, size=inp.args[0], margin=margin,
                         distance_threshold=threshold, convs=[], affines=[],
                         fc=np.zeros((0, 0), np.float32))
    channels = 3
    for i, layer in enumerate(reversed(body)):
        if layer.is_wrapper:
            continue
        channels = _READERS[layer.kind](r, layer, channels, out)
        for flag in ("setup called", "gradient stale", "output disabled"):
            r.bool(f"{layer.kind} {flag} flag")
        for t in ("x_grad", "cached output", "params grad"):
            r.tensor(f"{layer.kind} {t}")
        if i == 0 and first_version == 3:
            r.int("sample expansion factor")
    if r.pos != len(r.data):
        raise DlibFormatError(f"{len(r.data) - r.pos} unexpected bytes after the network")
    if len(out.convs) != 1 + 2 * len(BLOCKS) or len(out.affines) != len(out.convs):
        raise AssertionError("stack and block table disagree")  # a bug here, not in the file
    return out


def state_from_file(parsed: DlibResNetFile) -> dict[str, np.ndarray]:
    """Name the parsed weights as :class:`DlibResNet`'s state_dict (float32 arrays)."""
    state: dict[str, np.ndarray] = {}
    names = [("stem.conv", "stem.affine")] + [
        (f"blocks.{b}.conv{j}", f"blocks.{b}.affine{j}") for b in range(len(BLOCKS)) for j in (1, 2)]
    for (conv, aff), (w, b), (g, beta) in zip(names, parsed.convs, parsed.affines):
        state[f"{conv}.weight"], state[f"{conv}.bias"] = w, b
        state[f"{aff}.weight"], state[f"{aff}.bias"] = g, beta
    state["fc.weight"] = parsed.fc
    state["mean_rgb"] = np.asarray(parsed.mean_rgb, dtype=np.float32)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def convert_dlib_resnet(members: dict[str, Path], out_dir: Path) -> None:
    """Fetch-time converter: the ``.dat`` -> ``out_dir/resnet.safetensors``.

    The ``.dat`` itself is kept beside it (``DAT_NAME``, 22 MB, CC0): it is never loaded by the
    app, only by the tests, which compare the port against dlib running the original file.
    """
    from safetensors.numpy import save_file

    src = next((p for m, p in members.items() if m.endswith(DAT_NAME)), None)
    if src is None:
        raise DlibFormatError(f"converter needs {DAT_NAME}; got {sorted(members)}")
    parsed = parse_dlib_resnet(Path(src).read_bytes())
    meta = {"format": "pt", "source": f"face-recognition-models==0.3.0 {DAT_NAME}",
            "model": "dlib face recognition ResNet v1",
            "distance_threshold": repr(parsed.distance_threshold)}
    save_file(state_from_file(parsed), str(out_dir / WEIGHTS_NAME), metadata=meta)
    shutil.copyfile(src, out_dir / DAT_NAME)


# --------------------------------------------------------------------------- the module


class Affine(nn.Module):
    """Per-channel ``x * weight + bias`` (dlib's ``affine``: batch-norm folded at training end)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """[N, C, H, W] -> [N, C, H, W]."""
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


def add_padded(a: Tensor, b: Tensor) -> Tensor:
    """dlib's ``add_prev``: sum of [N, C, H, W] tensors of different C/H/W, the smaller one
    zero-padded at the end of each axis -> [N, max C, max H, max W]."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: Tensor) -> Tensor:
        if t.shape[1:] == (c, h, w):
            return t
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class ResBlock(nn.Module):
    """dlib's ``ares`` (``down=False``) or ``ares_down`` (``down=True``, stride 2, no padding)."""

    def __init__(self, c_in: int, c_out: int, down: bool) -> None:
        super().__init__()
        if not down and c_in != c_out:
            raise ValueError("a non-downsampling block keeps its channel count")
        self.down = down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 2 if down else 1, 0 if down else 1)
        self.affine1 = Affine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.affine2 = Affine(c_out)

    def forward(self, x: Tensor) -> Tensor:
        """[N, C_in, H, W] -> [N, C_out, H', W'] (H' = ceil((H - 1) / 2) when down)."""
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_padded(y, skip))


class Stem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, STEM_CHANNELS, 7, 2, 0)
        self.affine = Affine(STEM_CHANNELS)

    def forward(self, x: Tensor) -> Tensor:
        """[N, 3, 150, 150] -> [N, 32, 35, 35]."""
        return F.max_pool2d(F.relu(self.affine(self.conv(x))), 3, 2)


class DlibResNet(nn.Module):
    """dlib's face-recognition ResNet: a 150x150 RGB face chip -> 128-d identity descriptor.

    ``forward`` takes the chip as dlib sees it: float RGB pixel values in [0, 255], shape
    [N, 3, 150, 150]; it applies dlib's input scaling ``(x - mean_rgb) / 256`` itself. Faces of
    the same person lie within L2 distance 0.6 of each other.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor([122.782, 117.001, 104.298]))
        self.stem = Stem()
        self.blocks = nn.ModuleList(ResBlock(i, o, d) for i, o, d in BLOCKS)
        self.fc = nn.Linear(BLOCKS[-1][1], EMBED_DIM, bias=False)

    def forward(self, pixels: Tensor) -> Tensor:
        """[N, 3, 150, 150] RGB in [0, 255] -> [N, 128] descriptors."""
        if pixels.dim() != 4 or pixels.shape[1:] != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"expected [N, 3, {CHIP_SIZE}, {CHIP_SIZE}] chips, got {tuple(pixels.shape)}")
        x = (pixels - self.mean_rgb.view(1, 3, 1, 1)) / 256.0
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))


def load_dlib_resnet(device: str | torch.device = "cpu", weights: Path | None = None) -> DlibResNet:
    """The fetched network (or ``weights``, a safetensors file) on ``device``, frozen, eval mode."""
    from safetensors.torch import load_file

    if weights is None:
        from latentstudio.models.fetch import require

        weights = require("dlib_resnet") / WEIGHTS_NAME
    net = DlibResNet()
    net.load_state_dict(load_file(str(weights)))
    net.requires_grad_(False)
    return net.eval().to(device)
