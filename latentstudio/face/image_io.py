"""Reading photos into RGB arrays and writing results back, robustly.

``load_image`` turns anything a user may drop on the app into an ``(H, W, 3) uint8`` RGB array
with the camera's EXIF orientation applied: greyscale, palette, CMYK, 16-bit (PNG/TIFF, decoded
with OpenCV so the low byte is not simply dropped), images with alpha (composited over white).
Every failure (missing, unreadable, not an image, corrupt, truncated, absurdly large) becomes an
``ImageError`` naming the file and the cause.

``save_image`` writes PNG, JPEG or WebP atomically (temp file + ``os.replace``), with an optional
``dict[str, str]`` of metadata (PNG text chunks; EXIF UserComment holding JSON for JPEG/WebP),
which ``load_metadata`` reads back.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from struct import error as struct_error

from latentstudio.safety import MAX_PIXELS, InputError, check_pixels, first_line, header_size, literal_text

os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))  # OpenCV's own guard, as ours

import cv2  # noqa: E402 - after its pixel limit is set
import numpy as np  # noqa: E402
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError  # noqa: E402

from latentstudio.atomic import atomic_write  # noqa: E402

# Every decoder is bounded by safety.MAX_PIXELS, checked from the header before decoding: Pillow's
# lazily opened image tells its size; the formats only OpenCV reads (Radiance HDR, PFM) have their
# header parsed here, and any other format Pillow cannot identify is refused unread. Pillow's own
# bomb warning (above Image.MAX_IMAGE_PIXELS, below our limit) is silenced: such photos decode fine.
ROWS_PER_CHUNK = 512  # rows converted at a time when a float conversion is needed (bounds memory)
CHUNK_PIXELS = 1 << 20  # pixels copied at a time from a decoded RGB image into the result

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_ASCII_PREFIX = b"ASCII\0\0\0"
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_WHITE = 255.0


class ImageError(InputError):
    """A file could not be read or written as an image; the message names the file and cause."""

    title = "Cannot read the image"  # the heading of its error dialog


# ----------------------------------------------------------------------------------------------
# loading


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode ``path`` into an ``(H, W, 3) uint8`` RGB array, upright per its EXIF orientation."""
    p = Path(path)
    _check_readable(p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                check_pixels(im.width, im.height, p, ImageError)
                if _high_bit_depth(im, p):
                    rgb = _load_with_opencv(p)
                    if rgb is not None:
                        return _orient(rgb, _exif_orientation(im))
                return _pillow_to_rgb(_upright(im))
    except Image.DecompressionBombError as e:
        raise ImageError(f"{p}: image too large to open safely ({e})") from e
    except UnidentifiedImageError as e:
        rgb = _load_other(p)
        if rgb is not None:
            return rgb
        raise ImageError(f"{p}: not an image, or an unsupported image format") from e
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, OverflowError, TypeError,
            IndexError, KeyError, ZeroDivisionError, struct_error) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"{p}: cannot decode: corrupt, truncated or unsupported image ({first_line(e)})") from e


def _load_other(p: Path) -> np.ndarray | None:
    """A format Pillow cannot identify: decoded by OpenCV when its header can be read here (so
    its size is checked before decoding), None otherwise."""
    with open(p, "rb") as f:
        size = header_size(f.read(65536))
    if size is None:
        return None
    check_pixels(*size, p, ImageError)
    return _load_with_opencv(p)


def _check_readable(p: Path) -> None:
    if not p.exists():
        raise ImageError(f"{p}: file not found")
    if not p.is_file():
        raise ImageError(f"{p}: not a file")
    if not os.access(p, os.R_OK):
        raise ImageError(f"{p}: permission denied")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: empty file")


def _exif_orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # malformed EXIF must not make a readable photo unreadable
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (a broken EXIF block is ignored, not fatal)."""
    try:
        ImageOps.exif_transpose(im, in_place=True)  # in place: a large photo is not copied
    except Exception:
        pass
    im.load()
    return im


def _orient(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1..8 to an array (for images decoded outside Pillow)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 1)[::-1],
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return rgb if op is None else np.ascontiguousarray(op(rgb))


def _high_bit_depth(im: Image.Image, p: Path) -> bool:
    """True for PNG/TIFF colour images with more than 8 bits per sample.

    Pillow decodes those as 8-bit RGB by dropping the low byte; OpenCV keeps 16 bits so they can
    be rounded properly. (16-bit greyscale comes through Pillow as mode ``I;16`` and is handled
    there.)
    """
    if im.format == "PNG":
        with open(p, "rb") as f:
            header = f.read(26)
        return len(header) == 26 and header[24] > 8 and header[25] in (2, 4, 6)  # RGB, grey+alpha, RGBA
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) > 8 and im.mode in ("RGB", "RGBA", "RGBX")
    return False


def _load_with_opencv(p: Path) -> np.ndarray | None:
    """Decode with OpenCV (``IMREAD_UNCHANGED``: keeps 16 bits and alpha); None if it can't."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if str(p).isascii():  # straight from the file: the encoded bytes are not held in memory
            arr = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        else:  # np.fromfile + imdecode copes with non-ASCII paths
            data = np.fromfile(p, dtype=np.uint8)
            arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if arr is None or arr.size == 0:
        return None
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    elif arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    elif arr.ndim != 2:
        return None
    return _array_to_rgb(arr)


def _pillow_to_rgb(im: Image.Image) -> np.ndarray:
    """Convert a loaded Pillow image of any mode to RGB uint8."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(im))
    if mode == "P":
        has_alpha = "transparency" in im.info or im.palette is not None and im.palette.mode == "RGBA"
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
    elif mode in ("L", "1") and "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode == "RGB" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        return _array_to_rgb(np.asarray(im))
    return _rgb_array(im if im.mode == "RGB" else im.convert("RGB"))


def _rgb_array(im: Image.Image) -> np.ndarray:
    """An RGB Pillow image → (H, W, 3) uint8, copied ~CHUNK_PIXELS at a time: ``np.asarray(im)``
    would hold the image twice (Pillow's bytes and numpy's copy of them), which for a tiny file
    declaring tens of megapixels doubles what it costs."""
    out = np.empty((im.height, im.width, 3), np.uint8)
    rows = max(1, CHUNK_PIXELS // max(1, im.width))
    for top in range(0, im.height, rows):
        bottom = min(im.height, top + rows)
        out[top:bottom] = np.asarray(im.crop((0, top, im.width, bottom)), dtype=np.uint8)
    return out


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """Grey / RGB / RGBA array of any depth -> RGB uint8 (alpha composited over white), converted
    ROWS_PER_CHUNK rows at a time so the float copy stays small."""
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr)
    top = _nominal_top(arr)
    out = np.empty((*arr.shape[:2], 3), np.uint8)
    for r in range(0, arr.shape[0], ROWS_PER_CHUNK):
        out[r:r + ROWS_PER_CHUNK] = _rows_to_rgb(arr[r:r + ROWS_PER_CHUNK], top)
    return out


def _rows_to_rgb(arr: np.ndarray, top: float) -> np.ndarray:
    x = _to_unit_float(arr, top)
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=2)
    if x.shape[2] == 2:  # grey + alpha
        x = np.concatenate([np.repeat(x[..., :1], 3, axis=2), x[..., 1:]], axis=2)
    if x.shape[2] == 4:
        alpha = x[..., 3:]
        x = x[..., :3] * alpha + (1.0 - alpha)
    out = np.rint(np.clip(x[..., :3], 0.0, 1.0) * _WHITE).astype(np.uint8)
    return np.ascontiguousarray(out)


def _nominal_top(arr: np.ndarray) -> float:
    """The value that means full intensity: the dtype's nominal range, or the peak of float data."""
    if arr.dtype == np.uint8:
        return 255.0
    if arr.dtype == np.uint16:
        return 65535.0
    if np.issubdtype(arr.dtype, np.integer):  # Pillow's "I": 16-bit data widened to int32
        return 65535.0 if arr.max(initial=0) <= 65535 else float(np.iinfo(arr.dtype).max)
    with np.errstate(all="ignore"):
        peak = float(np.nanmax(np.where(np.isfinite(arr), arr, 0), initial=0.0))
    return peak if peak > 1.0 else 1.0


def _to_unit_float(arr: np.ndarray, top: float) -> np.ndarray:
    """Scale samples to [0, 1] float32 by ``top`` (see ``_nominal_top``)."""
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr.astype(np.float32) / np.float32(top), 0.0, 1.0)
    return np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=top, neginf=0.0) / np.float32(top)


# ----------------------------------------------------------------------------------------------
# saving


def save_image(path: str | os.PathLike[str], rgb: np.ndarray,
               metadata: dict[str, str] | None = None) -> None:
    """Write ``rgb`` (H, W, 3 uint8) to ``path``; the format follows the extension.

    PNG gets one text chunk per metadata item; JPEG (quality 95, no chroma subsampling) and WebP
    (lossless=False, quality 95) get the metadata as JSON in the EXIF UserComment. The file
    appears atomically: it is written to a temp file in the same folder and renamed over.
    """
    p = Path(path)
    fmt = _FORMATS.get(p.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_FORMATS))
        raise ImageError(f"{p}: unknown image extension {p.suffix!r}; use one of {known}")
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"{p}: expected an (H, W, 3) uint8 RGB array, got {arr.dtype} {arr.shape}")
    im = Image.fromarray(np.ascontiguousarray(arr), "RGB")
    options = _save_options(fmt, metadata or {})
    if not p.parent.is_dir():
        raise ImageError(f"{p}: folder {p.parent} does not exist")
    try:
        atomic_write(p, lambda f: im.save(f, format=fmt, **options), mode=_mode_for(p), sync=True)
    except OSError as e:
        raise ImageError(f"{p}: could not write ({e})") from e


def _mode_for(p: Path) -> int:
    """Keep an overwritten file's permissions; new files get rw-r--r--."""
    try:
        return p.stat().st_mode & 0o777
    except OSError:
        return 0o644


def _save_options(fmt: str, metadata: dict[str, str]) -> dict[str, Any]:
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ImageError(f"metadata must map str to str, got {k!r}: {type(v).__name__}")
    metadata = {literal_text(k): literal_text(v) for k, v in metadata.items()}
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for k, v in metadata.items():
            info.add_itxt(k, v)
        return {"pnginfo": info}
    options: dict[str, Any] = {"quality": 95}
    if fmt == "JPEG":
        options["subsampling"] = 0
    if metadata:
        exif = Image.Exif()
        text = json.dumps(metadata, ensure_ascii=True, sort_keys=True).encode("ascii")
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _ASCII_PREFIX + text
        options["exif"] = exif.tobytes()
    return options


def load_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Metadata written by ``save_image`` (PNG text chunks or the EXIF UserComment JSON)."""
    p = Path(path)
    _check_readable(p)
    try:
        with Image.open(p) as im:
            if im.format == "PNG":
                return {str(k): str(v) for k, v in getattr(im, "text", {}).items()}
            comment = im.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{p}: cannot read metadata ({e})") from e
    if not isinstance(comment, bytes) or not comment.startswith(_ASCII_PREFIX):
        return {}
    try:
        data = json.loads(comment[len(_ASCII_PREFIX):].decode("ascii"))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
