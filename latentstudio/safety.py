"""Input safety: the one user-facing error type, bounded readers, output checks, error wording.

Everything a user hands to LatentStudio (photos, code files, projects, boundaries, output paths)
passes through here, from the CLI, the app and the batch tools alike:

* :class:`InputError` — bad input; every reader raises it (or a subclass: ``LatentError``,
  ``ImageError``, ``ProjectError``, ``BoundaryError`` …) and nothing else for a bad file.
* Bounded readers — images are refused by the pixel count their header declares
  (:func:`check_pixels`), ``.npy``/``.npz`` arrays by the dtype and shape their header declares
  and zip members by their declared uncompressed size, all before anything is decoded
  (:func:`read_npy`, :func:`load_npz`); JSON by size, depth and number range (:func:`loads_json`).
* Values — latent codes must be finite and within :data:`MAX_LATENT_ABS` (real W+ codes stay
  within about ±5; the generator renders NaN from ±300), edit amounts within a few times their
  slider range (:func:`check_amount`).
* Outputs — :func:`check_output` refuses to overwrite an input or a non-regular file and to
  write into a missing folder.
* :func:`explain` — one mapping of any exception to (one-line message, exit code), used by the CLI
  and the app's dialogs.

This module is a bottom layer: it imports numpy and the standard library only.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tokenize
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npformat

MAX_PIXELS = 120_000_000  # decoded photo size limit (Pillow and OpenCV alike): a 100 MP camera fits
MAX_SIDE = 65_535  # longest side of a photo (JPEG's own limit): a 1 × 20 000 000 strip is no photo
MAX_ARRAY_BYTES = 64 << 20  # one array of a code file or project (tuned weights are ~15 MB in all)
MAX_ARRAYS_BYTES = 256 << 20  # all arrays of one file together
MAX_JSON_BYTES = 16 << 20
MAX_JSON_DEPTH = 64
MAX_JSON_INT = 2**63
MAX_LATENT_ABS = 100.0  # |coordinate| of a W / W+ code
AMOUNT_FACTOR = 4.0  # an edit amount may reach this many times its slider's largest end
NUMERIC_KINDS = "fiub"


class InputError(ValueError):
    """Bad input (file, value, option or output path): shown as one line, exit code 2."""


# ----------------------------------------------------------------------------- images
def check_pixels(width: int, height: int, what: object, error: type[InputError] = InputError) -> None:
    """``error`` unless a ``width`` × ``height`` image is small enough to decode safely."""
    if width <= 0 or height <= 0:
        raise error(f"{what}: the image declares no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise error(f"{what}: image too large to open safely ({width}x{height} = "
                    f"{width * height / 1e6:.0f} MP; the limit is {MAX_PIXELS / 1e6:.0f} MP)")
    if max(width, height) > MAX_SIDE:
        raise error(f"{what}: not a photo ({width}x{height} pixels; a side may be at most {MAX_SIDE})")


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a format only OpenCV decodes (Radiance HDR, PFM), or
    None when ``head`` (the file's first 64 KiB) is neither or its header is malformed."""
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        m = re.search(rb"\n\n([-+][XY]) (\d{1,9}) ([-+][XY]) (\d{1,9})\n", head)
        if m is None or m.group(1)[1] == m.group(3)[1]:
            return None
        sizes = {m.group(1)[1:]: int(m.group(2)), m.group(3)[1:]: int(m.group(4))}
        return sizes[b"X"], sizes[b"Y"]
    m = re.match(rb"P[Ff]\s+(\d{1,9})\s+(\d{1,9})\s", head)
    return (int(m.group(1)), int(m.group(2))) if m else None


# ----------------------------------------------------------------------------- arrays
def check_dtype(dtype: np.dtype, what: str, error: type[InputError] = InputError,
                kinds: str = NUMERIC_KINDS + "U") -> None:
    """``error`` for object, structured, sub-array, void or otherwise unexpected dtypes."""
    if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None or dtype.kind not in kinds:
        raise error(f"{what}: unsupported array type {dtype.str!r} (expected plain numbers)")


MAX_DIM = 2**31 - 1  # per axis; numpy refuses shapes whose product overflows even when one axis is 0


def read_npy(f: IO[bytes], what: str, error: type[InputError] = InputError, *,
             max_bytes: int = MAX_ARRAY_BYTES, available: int | None = None) -> np.ndarray:
    """One ``.npy`` array from ``f``, checked by its header before its data is read: a plain
    numeric (or text) dtype and at most ``max_bytes`` of data (and no more than ``available``,
    the bytes left in the file, when known). Never unpickles."""
    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(f, max_header_size=10_000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(f, max_header_size=10_000)
        else:
            raise error(f"{what}: unsupported .npy version {version}")
    except InputError:
        raise
    except (ValueError, SyntaxError, TypeError, EOFError, OverflowError, RecursionError, MemoryError,
            tokenize.TokenError) as exc:  # numpy tokenizes the header: a cut one is a TokenError
        raise error(f"{what}: not a readable .npy array ({first_line(exc)})") from exc
    check_dtype(dtype, what, error)
    if dtype.itemsize == 0 or any(not isinstance(n, int) or n < 0 for n in shape) or len(shape) > 8:
        raise error(f"{what}: invalid array shape {shape}")
    spread = 1  # the product of the non-zero axes: numpy refuses to reshape when it overflows,
    for n in shape:  # even if another axis is 0 (no data at all)
        spread *= max(n, 1)
    if any(n > MAX_DIM for n in shape) or spread * dtype.itemsize > max_bytes:
        raise error(f"{what}: array too large ({shape} declared)")
    count = 1
    for n in shape:
        count *= n
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes:
        raise error(f"{what}: array too large ({shape}, {nbytes / 2**20:.0f} MiB declared; "
                    f"the limit is {max_bytes >> 20} MiB)")
    if available is not None and nbytes > available:
        raise error(f"{what}: truncated array ({shape} declared, only {available} bytes stored)")
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise error(f"{what}: truncated array (expected {nbytes} bytes, found {len(data)})")
    arr = np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
    return arr.copy()


def load_npy(path: Path, error: type[InputError] = InputError) -> np.ndarray:
    """A ``.npy`` file through :func:`read_npy`; ``error`` for anything but a sane array."""
    try:
        with open(path, "rb") as f:
            return read_npy(f, str(path), error, available=os.fstat(f.fileno()).st_size)
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from exc


def load_npz(source: Path | bytes, what: str, error: type[InputError] = InputError,
             wanted: Callable[[str], bool] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (a file or its bytes) whose names ``wanted`` accepts (default
    all), each read with :func:`read_npy` after checking its zip entry's declared sizes."""
    import io

    out: dict[str, np.ndarray] = {}
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as z:
            for info in z.infolist():
                if info.is_dir() or not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                if wanted is not None and not wanted(name) or name in out:
                    continue
                total += info.file_size
                if info.file_size > MAX_ARRAY_BYTES + 10_000 or total > MAX_ARRAYS_BYTES:
                    raise error(f"{what}: array {name!r} too large ({info.file_size / 2**20:.0f} MiB "
                                f"declared; the limit is {MAX_ARRAY_BYTES >> 20} MiB)")
                with z.open(info) as f:
                    out[name] = read_npy(f, f"{what}: array {name!r}", error, available=info.file_size)
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, RuntimeError,
            NotImplementedError, OverflowError) as exc:  # zlib errors, CRC mismatches, odd methods
        raise error(f"{what}: damaged or not an .npz archive ({first_line(exc)})") from exc
    return out


def check_finite(arr: np.ndarray, what: str, error: type[InputError] = InputError,
                 limit: float = MAX_LATENT_ABS) -> np.ndarray:
    """``arr`` as float32 when it is floating point, finite and within ±``limit``; else ``error``."""
    if arr.dtype.kind != "f":
        raise error(f"{what}: expected floating-point numbers, got {arr.dtype.name}")
    with np.errstate(all="ignore"):
        top = float(np.max(np.abs(arr), initial=0.0))
    if not np.isfinite(top):
        raise error(f"{what}: contains NaN or infinite values")
    if top > limit:
        raise error(f"{what}: values up to {top:.3g} are out of range (at most ±{limit:g})")
    return arr.astype(np.float32)


def check_amount(name: str, value: float, value_range: tuple[float, float],
                 error: type[InputError] = InputError) -> float:
    """An edit amount for a slider with ``value_range``: finite and within
    ±AMOUNT_FACTOR × the range's largest end."""
    limit = AMOUNT_FACTOR * max(abs(value_range[0]), abs(value_range[1]))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= limit:
        raise error(f"{name}={value!r} is out of range: {name}'s slider goes from {value_range[0]:g} to "
                    f"{value_range[1]:g}; amounts up to ±{limit:g} are accepted")
    return float(value)


# ----------------------------------------------------------------------------- JSON
def loads_json(data: bytes, what: str, error: type[InputError] = InputError) -> Any:
    """JSON from ``data`` (UTF-8): at most MAX_JSON_BYTES, nested at most MAX_JSON_DEPTH deep,
    integers within ±2⁶³ and finite floats only."""
    if len(data) > MAX_JSON_BYTES:
        raise error(f"{what}: too large ({len(data) >> 20} MiB; the limit is {MAX_JSON_BYTES >> 20} MiB)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if _depth(text) > MAX_JSON_DEPTH:
        raise error(f"{what}: nested more than {MAX_JSON_DEPTH} levels deep")

    def number(s: str) -> int:
        if len(s) > 20 or abs(int(s)) > MAX_JSON_INT:
            raise ValueError(f"integer {s[:20]}… out of range")
        return int(s)

    def real(s: str) -> float:
        x = float(s)
        if not np.isfinite(x):
            raise ValueError(f"number {s[:20]} out of range")
        return x

    def constant(s: str) -> float:
        raise ValueError(f"{s} is not a number JSON allows")

    try:
        return json.loads(text, parse_int=number, parse_float=real, parse_constant=constant)
    except (ValueError, RecursionError) as exc:
        raise error(f"{what}: not valid JSON ({first_line(exc)})") from exc


def _depth(text: str) -> int:
    """Deepest bracket nesting of JSON ``text`` (brackets inside strings ignored)."""
    depth = top = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        tok = m.group(0)
        if tok in "[{":
            depth += 1
            top = max(top, depth)
            if top > MAX_JSON_DEPTH:
                break
        elif tok in "]}":
            depth -= 1
    return top


# ----------------------------------------------------------------------------- outputs
def check_output(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None] = (),
                 error: type[InputError] = InputError) -> Path:
    """``path`` if a result may be written there: not an input file, not an existing
    non-regular file (device, FIFO, folder), in an existing folder; else ``error``."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise error(f"{p}: cannot write there ({exc.strerror or exc})") from exc
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise error(f"{p}: is {kind}; give a file name to write")
        for src in inputs:
            if src is not None and str(src) and _same_file(p, Path(src)):
                raise error(f"{p}: is also an input ({src}); refusing to overwrite it")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise error(f"{p}: folder {folder} does not exist")
    return p


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- wording
@dataclass(frozen=True)
class Explained:
    """How an exception is told to the user: one line, the exit code, and whether it is ours."""

    message: str
    exit_code: int
    internal: bool = False
    title: str = "Cannot do that"  # the heading of the app's error dialog


def first_line(exc: BaseException | str) -> str:
    """The first non-empty line of an exception's text (third-party messages can run long)."""
    text = str(exc) if not isinstance(exc, str) else exc
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__ if isinstance(exc, BaseException) else ""


def one_line(text: str) -> str:
    """``text`` on one line, a repeated ``name: `` prefix said once."""
    flat = " ".join(ln.strip() for ln in text.splitlines() if ln.strip())
    return re.sub(r"^([^:\n]{1,300}: )(\1)+", r"\1", flat)


def explain(exc: BaseException) -> Explained:
    """How to tell any exception that reaches the CLI or a dialog: one line, the exit code (2 for
    bad input, the exception's own ``exit_code`` when it has one: missing models 1, cancelled 130;
    else an internal error) and the dialog's title (the exception class's ``title``)."""
    title = getattr(exc, "title", None)
    title = title if isinstance(title, str) else "Cannot do that"
    if isinstance(exc, InputError):
        return Explained(one_line(str(exc) or type(exc).__name__), 2, title=title)
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return Explained(one_line(str(exc)), code, title=title)
    if isinstance(exc, MemoryError):
        return Explained("not enough memory for this input (is the file absurdly large?)", 2, title="Out of memory")
    if isinstance(exc, (RecursionError, OverflowError)):
        return Explained(f"the input is nested too deeply or holds numbers too large ({first_line(exc)})", 2)
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return Explained(f"{os.fsdecode(where)}: {exc.strerror}" if where != "" else exc.strerror, 2)
    return Explained(f"internal error: {type(exc).__name__}: {first_line(exc)}", 1, internal=True,
                     title="Something went wrong")


def literal_text(value: str) -> str:
    """``value`` with undecodable file-name bytes (surrogate escapes) shown as U+FFFD, so it can
    be written as UTF-8 (PNG text, JSON, the terminal)."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


__all__ = ["InputError", "check_pixels", "header_size", "read_npy", "load_npy", "load_npz", "check_dtype",
           "check_finite", "check_amount", "loads_json", "check_output", "explain", "Explained",
           "first_line", "one_line", "literal_text", "MAX_PIXELS", "MAX_LATENT_ABS"]
