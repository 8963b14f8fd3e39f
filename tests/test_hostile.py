"""Hostile input (issue 27): the readers return a valid object or raise the one user-facing error
type (``safety.InputError``), within a memory bound; the CLI answers in one line; outputs are never
clobbered or left half-written. No model is loaded here."""

from __future__ import annotations

import io
import json
import os
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from latentstudio import safety
from latentstudio.atomic import atomic_write, output_set
from latentstudio.cli import main
from latentstudio.codes import load_code, load_code_extras
from latentstudio.edit.boundaries import read_vector
from latentstudio.face.image_io import load_image
from latentstudio.project import load_project
from latentstudio.safety import InputError

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MEMORY_BOUND = 64 << 20  # bytes any reader may allocate (tracemalloc) on these small inputs, besides its result
W = np.zeros((23, 512), np.float32)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _header(shape: tuple[int, ...], descr: object) -> bytes:
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def _bounded(read, *args):  # noqa: ANN001, ANN202 - the reader's result, or the InputError raised
    """Call ``read(*args)``: it must return or raise InputError, allocating < MEMORY_BOUND
    besides the array it returns (a small file may declare a large image, up to MAX_PIXELS)."""
    tracemalloc.start()
    result = None
    try:
        result = read(*args)
        return result
    except InputError as exc:
        assert "\n" not in str(exc)
        return exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        size = result.nbytes if isinstance(result, np.ndarray) else 0
        assert peak < MEMORY_BOUND + size, f"{read.__name__} allocated {(peak - size) >> 20} MiB besides its result"


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, value in edits:
        b[pos % len(b)] = value
    return bytes(b[:cut] if cut is not None else b)


MUTATIONS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6)
CUTS = st.none() | st.integers(0, 4000)
DESCRS = st.sampled_from(["<f4", "<f8", "<f2", "<i8", "|b1", "<U3", "|S4", "|O", "<c8", "|V8", "<M8[s]",
                          [("a", "<f4"), ("b", "<i4")], ("<f4", (2,)), "<f16"])
SHAPES = st.lists(st.integers(0, 1 << 42), max_size=4).map(tuple) | st.sampled_from([(512,), (23, 512), (1, 23, 512)])


def _valid_code(result: object) -> bool:
    if isinstance(result, InputError):
        return True
    assert isinstance(result, np.ndarray) and result.shape == (23, 512) and result.dtype == np.float32
    assert np.isfinite(result).all() and np.abs(result).max() <= safety.MAX_LATENT_ABS
    return True


# ----------------------------------------------------------------------------- code files
@FUZZ
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".npy", ".npz", ".NPZ"]))
def test_random_bytes_as_code(tmp_path: Path, data: bytes, suffix: str) -> None:
    p = tmp_path / f"c{suffix}"
    p.write_bytes(data)
    assert _valid_code(_bounded(load_code, p))
    _bounded(load_code_extras, p)


@FUZZ
@given(edits=MUTATIONS, cut=CUTS, npz=st.booleans(), scale=st.sampled_from([1.0, 1e3, 1e30]))
def test_mutated_code_files(tmp_path: Path, edits: list[tuple[int, int]], cut: int | None, npz: bool,
                            scale: float) -> None:
    w = np.random.default_rng(0).normal(size=(23, 512)).astype(np.float32) * scale
    data = _npz(w_plus=w, quad=np.zeros((4, 2)), source_size=np.array([4, 4])) if npz else _npy(w)
    p = tmp_path / ("c.npz" if npz else "c.npy")
    p.write_bytes(_mutate(data, edits, cut))
    assert _valid_code(_bounded(load_code, p))
    _bounded(load_code_extras, p)


@FUZZ
@given(shape=SHAPES, descr=DESCRS, extra=st.integers(0, 4096), in_zip=st.booleans())
@example(shape=(0, 54, 60524805, 352754516), descr="<f8", extra=0, in_zip=False)  # numpy: "array is too big"
def test_declared_headers_are_checked_before_reading(tmp_path: Path, shape: tuple[int, ...], descr: object,
                                                     extra: int, in_zip: bool) -> None:
    member = _header(shape, descr) + bytes(extra)
    if in_zip:
        p = tmp_path / "c.npz"
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("w_plus.npy", member)
    else:
        p = tmp_path / "c.npy"
        p.write_bytes(member)
    assert _valid_code(_bounded(load_code, p))


def test_header_that_stops_inside_a_bracket_is_an_input_error() -> None:
    """numpy tokenizes the header dict; one cut inside "(3," raises tokenize.TokenError, which
    hypothesis found slipping past the error mapping."""
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    raw = buf.getvalue()
    end = raw.index(b"}")
    cut = raw[:10] + raw[10:end].replace(b"(3,)", b"(3, ") + raw[end + 1:]
    with pytest.raises(InputError, match="not a readable .npy array"):
        safety.read_npy(io.BytesIO(cut), "x")


def test_zip_bomb_member_is_refused_by_declared_size(tmp_path: Path) -> None:
    p = tmp_path / "bomb.npz"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z, z.open("w_plus.npy", "w", force_zip64=True) as f:
        f.write(_header((50_000_000,), "<f4"))
        for _ in range(12):
            f.write(bytes(16 << 20))  # 200 MB of zeros, a few hundred KB on disk
    assert p.stat().st_size < 2 << 20
    err = _bounded(load_code, p)
    assert isinstance(err, InputError) and "too large" in str(err)


# ----------------------------------------------------------------------------- projects
def _project_bytes(meta: object, arrays: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("project.json", meta if isinstance(meta, (bytes, str)) else json.dumps(meta))
        z.writestr("arrays.npz", arrays if arrays is not None else _npz(base=W, code=W))
    return buf.getvalue()


def _meta(**state: object) -> dict:
    return {"schema": "latentstudio-project", "version": 1,
            "source": {"kind": "seed", "seed": 1, "psi": 0.7}, "directions": [],
            "state": {"values": {}, "keep": [], "layers": {}, **state}}


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)


@FUZZ
@given(state=st.dictionaries(st.sampled_from(["values", "keep", "layers", "identity", "repair"]), JSON),
       source=st.dictionaries(st.sampled_from(["kind", "seed", "psi", "face_index", "photo_size", "path"]), JSON))
def test_random_project_json(tmp_path: Path, state: dict, source: dict) -> None:
    meta = _meta(**state)
    meta["source"].update(source)
    p = tmp_path / "p.lsproj"
    p.write_bytes(_project_bytes(meta))
    result = _bounded(load_project, p)
    assert isinstance(result, InputError) or np.isfinite(result.code()).all()


@FUZZ
@given(edits=MUTATIONS, cut=CUTS)
def test_mutated_project_files(tmp_path: Path, edits: list[tuple[int, int]], cut: int | None) -> None:
    p = tmp_path / "p.lsproj"
    p.write_bytes(_mutate(_project_bytes(_meta()), edits, cut))
    _bounded(load_project, p)


@pytest.mark.parametrize("meta", [
    '{"schema": "latentstudio-project", "version": 1, "x": ' + "[" * 200_000 + "]" * 200_000 + "}",
    json.dumps(_meta()).replace('"seed": 1', '"seed": 1e999'),
    json.dumps(_meta()).replace('"seed": 1', '"seed": ' + "9" * 5000),
    json.dumps(_meta()).replace('"psi": 0.7', '"psi": NaN'),
    json.dumps(_meta(values={"smile": 1e308})),
    b'{"schema": "\xff"}',
])
def test_malformed_projects_are_one_line_errors(tmp_path: Path, meta: str | bytes) -> None:
    p = tmp_path / "p.lsproj"
    p.write_bytes(_project_bytes(meta))
    from latentstudio.edit.boundaries import Boundary

    smile = Boundary("smile", np.eye(512, dtype=np.float32)[0])
    err = _bounded(load_project, p, [smile])
    assert isinstance(err, InputError) and str(p) in str(err)


# ----------------------------------------------------------------------------- boundaries
@FUZZ
@given(edits=MUTATIONS, cut=CUTS, scale=st.sampled_from([1.0, 1e-300, 1e300, 1e307]))
def test_mutated_boundary_files(tmp_path: Path, edits: list[tuple[int, int]], cut: int | None, scale: float) -> None:
    p = tmp_path / "b.npy"
    p.write_bytes(_mutate(_npy(np.random.default_rng(1).normal(size=512) * scale), edits, cut))
    result = _bounded(read_vector, p)
    if not isinstance(result, InputError):
        assert result.shape == (512,) and abs(float(np.linalg.norm(result)) - 1) < 1e-4


def test_overflowing_boundary_is_a_direction_not_a_zero_vector(tmp_path: Path) -> None:
    p = tmp_path / "b.npy"
    np.save(p, np.full(512, 1e308))
    assert np.allclose(read_vector(p), np.full(512, 512 ** -0.5), atol=1e-6)


# ----------------------------------------------------------------------------- images
def _png(width: int, height: int, body: bytes = b"") -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b""))


@FUZZ
@given(width=st.integers(1, (1 << 31) - 1), height=st.integers(1, (1 << 31) - 1))
@example(width=1, height=20_246_349)  # under MAX_PIXELS: Pillow decoded a 64-byte file to 61 MB
@example(width=7000, height=7000)
def test_declared_image_sizes(tmp_path: Path, width: int, height: int) -> None:
    p = tmp_path / "i.png"
    p.write_bytes(_png(width, height, bytes(64)))
    result = _bounded(load_image, p)
    assert isinstance(result, InputError) or result.shape[:2] == (height, width)
    if width * height > safety.MAX_PIXELS:
        assert isinstance(result, InputError) and "too large" in str(result)
    elif max(width, height) > safety.MAX_SIDE:
        assert isinstance(result, InputError) and "not a photo" in str(result)


@FUZZ
@given(data=st.binary(max_size=3000), suffix=st.sampled_from([".jpg", ".png", ".hdr", ".pfm", ".tif", ""]))
def test_random_bytes_as_image(tmp_path: Path, data: bytes, suffix: str) -> None:
    p = tmp_path / f"i{suffix}"
    p.write_bytes(data)
    result = _bounded(load_image, p)
    assert isinstance(result, InputError) or (result.dtype == np.uint8 and result.shape[2] == 3)


@FUZZ
@given(edits=MUTATIONS, cut=CUTS, fmt=st.sampled_from(["PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"]))
def test_mutated_images(tmp_path: Path, edits: list[tuple[int, int]], cut: int | None, fmt: str) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buf, fmt)
    p = tmp_path / "i.img"
    p.write_bytes(_mutate(buf.getvalue(), edits, cut))
    result = _bounded(load_image, p)
    assert isinstance(result, InputError) or (result.dtype == np.uint8 and result.shape[2] == 3)


@pytest.mark.parametrize(("head", "size"), [
    (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 12000 +X 15000\n", (15000, 12000)),
    (b"#?RGBE\n\n+X 30 -Y 20\n", (30, 20)),
    (b"PF\n40000 40000\n-1.0\n", (40000, 40000)),
    (b"#?RADIANCE\n\n-Y 12000\n", None),
])
def test_header_sizes_of_opencv_formats(head: bytes, size: tuple[int, int] | None) -> None:
    assert safety.header_size(head) == size


def test_hdr_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    p = tmp_path / "bomb.hdr"
    p.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 12000 +X 15000\n" + bytes(1 << 16))
    err = _bounded(load_image, p)
    assert isinstance(err, InputError) and "too large" in str(err)


# ----------------------------------------------------------------------------- CLI and outputs
def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("latentstudio: error:") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "pickle" not in err
    return err


@pytest.mark.parametrize("array", [np.full(512, 1e30, np.float32), np.zeros(512, np.int64), np.zeros(512, bool),
                                   np.array(["1.0"] * 512), np.zeros(512, [("a", "f4")])])
def test_cli_refuses_absurd_codes(tmp_path: Path, array: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "c.npy"
    p.write_bytes(_npy(array))
    assert main(["render", "--code", str(p), "-o", str(tmp_path / "x.png")]) == 2
    assert "c.npy" in _one_line_error(capsys)
    assert not (tmp_path / "x.png").exists()


def test_cli_refuses_huge_declared_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "c.npy"
    p.write_bytes(_header((1 << 40,), "<f4"))
    assert main(["render", "--code", str(p), "-o", str(tmp_path / "x.png")]) == 2
    assert "too large" in _one_line_error(capsys)


def test_upper_case_npz_is_a_code_file(tmp_path: Path) -> None:
    p = tmp_path / "c.NPZ"
    p.write_bytes(_npz(w_plus=W + 1))
    assert np.array_equal(load_code(p), W + 1)


def test_cli_outputs_never_replace_inputs_or_special_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "a.png"
    photo.write_bytes(_png(8, 8, bytes(8 * 25)))
    before = photo.read_bytes()
    assert main(["align", str(photo), "-o", str(photo)]) == 2
    assert "refusing to overwrite" in _one_line_error(capsys) and photo.read_bytes() == before
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    for target in ("/dev/null", str(fifo), str(tmp_path), str(tmp_path / "missing" / "x.png")):
        assert main(["render", "--seed", "1", "-o", target]) == 2
        _one_line_error(capsys)
    assert Path("/dev/null").is_char_device() and fifo.is_fifo()
    assert main(["boundaries", "import", str(photo), "--name", "x", "--space", "w", "--out", str(photo)]) == 2
    assert "must be a folder" in _one_line_error(capsys)
    assert main(["boundaries", "import", str(photo), "--name", "x", "--space", "z", "--samples", "0"]) == 2
    assert "--samples" in _one_line_error(capsys)


def test_atomic_write_refuses_non_regular_targets(tmp_path: Path) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        atomic_write(fifo, lambda f: f.write(b"x"))
    assert fifo.is_fifo() and os.listdir(tmp_path) == ["f"]


def test_output_set_writes_all_or_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.npz"
    with pytest.raises(OSError), output_set():
        atomic_write(a, lambda f: f.write(b"image"))
        assert not a.exists()  # not before the whole set is written
        atomic_write(b, lambda f: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    assert os.listdir(tmp_path) == []
    with output_set():
        atomic_write(a, lambda f: f.write(b"image"))
        atomic_write(b, lambda f: f.write(b"code"))
    assert a.read_bytes() == b"image" and b.read_bytes() == b"code"


def test_cli_catch_all_and_debug(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from latentstudio.cli import commands as cli

    def boom(args: object) -> int:
        raise KeyError("internal")

    monkeypatch.setattr(cli, "cmd_models_list", boom)
    assert main(["models", "list"]) == 1
    assert "--debug" in _one_line_error(capsys)
    with pytest.raises(KeyError):
        main(["--debug", "models", "list"])


def test_explain_and_dialog_wording_agree() -> None:
    from latentstudio.codes import LatentError

    exc = LatentError("a.npz: a.npz: latent code\nbad")
    told = safety.explain(exc)
    assert told == safety.Explained("a.npz: latent code bad", 2, title="Cannot read the latent code")
    assert safety.explain(MemoryError()).exit_code == 2
    from latentstudio.progress import Cancelled

    cancelled = safety.explain(Cancelled("inversion cancelled at step 3/10"))
    assert (cancelled.exit_code, cancelled.title, cancelled.internal) == (130, "Cancelled", False)
    assert safety.explain(OSError(13, "Permission denied", "/x")).message == "/x: Permission denied"
    assert safety.explain(RuntimeError("x")).internal
    pytest.importorskip("PySide6")
    from latentstudio.gui.dialogs import describe_error

    assert describe_error(exc, "")[:2] == (told.title, told.message)


def test_non_utf8_names_in_metadata(tmp_path: Path) -> None:
    from latentstudio.face.image_io import load_metadata, save_image

    p = tmp_path / "x.png"
    save_image(p, np.zeros((4, 4, 3), np.uint8), {"latentstudio": "aligned from " + os.fsdecode(b"caf\xe9.png")})
    assert load_metadata(p)["latentstudio"] == "aligned from caf\ufffd.png"
