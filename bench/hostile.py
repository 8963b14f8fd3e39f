"""Hostile input: decompression bombs, declared-huge arrays, odd dtypes, absurd values, malformed
projects, non-UTF-8 names and bad output paths, each run as its own ``latentstudio`` process.

    python bench/hostile.py [--only SUBSTRING] [--keep DIR]

Builds the corpus in a temp folder, runs every case as a subprocess (the CLI, or for projects,
which only the app opens, ``bench/hostile.py --open-project FILE``: the app's loader and its error
wording) and prints a markdown table: exit code (and the one expected), whether stderr holds a
traceback, peak RSS of the process, seconds, whether an input was changed ("clobbered") and
whether a failed case left an output behind ("partial").
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import resource
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
W = np.zeros((23, 512), np.float32)


@dataclass
class Case:
    name: str
    argv: list[str | bytes]  # after `latentstudio` (or ["--open-project", FILE])
    expect: int = 2
    inputs: list[Path] = field(default_factory=list)  # must be unchanged afterwards
    outputs: list[Path] = field(default_factory=list)  # must not exist after a failure
    fsize_limit: int | None = None  # RLIMIT_FSIZE for the process: a "full disk"


# ----------------------------------------------------------------------------- corpus builders
def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=arr.dtype.hasobject)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A .npy header declaring ``shape`` (no data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def zip_bomb(path: Path, member: str, n_bytes: int, extra: dict[str, bytes] | None = None) -> None:
    """A zip whose ``member`` .npy inflates to ``n_bytes`` of zeros (plus small ``extra`` members)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for k, v in (extra or {}).items():
            z.writestr(k, v)
        with z.open(member, "w", force_zip64=True) as f:
            f.write(npy_header((n_bytes // 4,)))
            chunk = bytes(16 << 20)
            for _ in range(n_bytes // len(chunk)):
                f.write(chunk)


def png_declaring(path: Path, width: int, height: int) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def jpeg_declaring(path: Path, width: int, height: int) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))


def hdr_declaring(path: Path, width: int, height: int, body: int = 11 << 20) -> None:
    """A Radiance HDR declaring width × height with ``body`` bytes of RLE-ish data."""
    head = f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {height} +X {width}\n".encode()
    path.write_bytes(head + bytes([2, 2, width >> 8 & 255, width & 255]) + b"\x80\x00" * (body // 2))


def project(path: Path, meta: dict | str | bytes, arrays: dict[str, np.ndarray] | bytes | None = None) -> None:
    base = {"base": W, "code": W}
    npz = arrays if isinstance(arrays, bytes) else _npz(arrays if arrays is not None else base)
    raw = meta if isinstance(meta, bytes) else (meta if isinstance(meta, str) else json.dumps(meta)).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("project.json", raw)
        z.writestr("arrays.npz", npz)


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def good_meta(**state: object) -> dict:
    return {"schema": "latentstudio-project", "version": 1, "app": "x",
            "source": {"kind": "seed", "face_index": 0, "sha256": None, "seed": 1, "psi": 0.7,
                       "photo_size": None, "path": None, "relpath": None},
            "directions": [], "state": {"values": {}, "keep": [], "layers": {}, **state}}


def build(d: Path) -> list[Case]:  # noqa: PLR0915 - one long list of cases
    from PIL import Image
    from skimage import data as skdata

    cases: list[Case] = []
    photo = d / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    code = d / "code.npz"
    np.savez(code, w_plus=W + 0.1)
    out = d / "out.png"

    def add(name: str, argv: list[str | bytes], expect: int = 2, inputs: tuple[Path, ...] = (),
            outputs: tuple[Path, ...] = (out,), **kw: object) -> None:
        cases.append(Case(name, argv, expect, list(inputs), list(outputs), **kw))  # type: ignore[arg-type]

    # --- images: decompression bombs and broken files
    png_declaring(d / "bomb.png", 30000, 30000)
    add("png declaring 900 MP", ["align", str(d / "bomb.png"), "-o", str(out)])
    jpeg_declaring(d / "bomb.jpg", 65000, 65000)
    add("jpeg declaring 4.2 GP", ["align", str(d / "bomb.jpg"), "-o", str(out)])
    hdr_declaring(d / "bomb.hdr", 15000, 12000)
    add("radiance hdr 180 MP (11 MB)", ["align", str(d / "bomb.hdr"), "-o", str(out)])
    hdr_declaring(d / "huge.hdr", 32767, 32767, body=1 << 20)
    add("radiance hdr 1 GP", ["align", str(d / "huge.hdr"), "-o", str(out)])
    (d / "bomb.pfm").write_bytes(b"PF\n40000 40000\n-1.0\n" + bytes(4096))
    add("pfm declaring 1.6 GP", ["align", str(d / "bomb.pfm"), "-o", str(out)])
    (d / "noise.jpg").write_bytes(os.urandom(4096))
    add("random bytes .jpg", ["align", str(d / "noise.jpg"), "-o", str(out)])
    (d / "cut.png").write_bytes(photo.read_bytes()[:5000])
    add("truncated png", ["align", str(d / "cut.png"), "-o", str(out)])
    big = d / "big119mp.png"
    Image.new("RGB", (10900, 10900), (120, 130, 140)).save(big, compress_level=1)
    add("legit 119 MP png, no face", ["align", str(big), "-o", str(out)])
    big = d / "big119mp_rgba.png"
    Image.new("RGBA", (10900, 10900), (120, 130, 140, 128)).save(big, compress_level=1)
    add("legit 119 MP RGBA png, no face", ["align", str(big), "-o", str(out)])
    png_declaring(d / "over.png", 11000, 11000)
    add("png declaring 121 MP", ["align", str(d / "over.png"), "-o", str(out)])
    big16 = d / "big16.png"
    import cv2

    cv2.imwrite(str(big16), np.full((7000, 7000, 4), 30000, np.uint16))
    add("legit 49 MP 16-bit RGBA png, no face", ["align", str(big16), "-o", str(out)])
    # --- code files
    (d / "text.npz").write_text("not a zip")
    add("text file as .npz", ["render", "--code", str(d / "text.npz"), "-o", str(out)])
    (d / "garbage.npy").write_bytes(b"\x93NUMPY" + os.urandom(200))
    add("garbage after npy magic", ["render", "--code", str(d / "garbage.npy"), "-o", str(out)])
    zip_bomb(d / "bomb.npz", "w_plus.npy", 1_200_000_000)
    add("npz zip bomb (w_plus 1.2 GB)", ["render", "--code", str(d / "bomb.npz"), "-o", str(out)])
    (d / "huge.npy").write_bytes(npy_header((1 << 40,)))
    add("npy declaring 4 TiB", ["render", "--code", str(d / "huge.npy"), "-o", str(out)])
    with zipfile.ZipFile(d / "huge.npz", "w") as z:
        z.writestr("w_plus.npy", npy_header((1 << 20, 1 << 20)) + bytes(64))
    add("npz member declaring 4 TiB", ["render", "--code", str(d / "huge.npz"), "-o", str(out)])
    for label, arr in {"structured dtype": np.zeros(512, [("a", "f4"), ("b", "i4")]),
                       "string dtype": np.array(["1.0"] * 512), "int code": np.zeros(512, np.int64),
                       "bool code": np.zeros(512, bool), "complex code": np.zeros(512, np.complex64),
                       "object (pickle) code": np.array([None] * 512, object),
                       "code of 1e30": np.full(512, 1e30, np.float32),
                       "code of NaN": np.full((23, 512), np.nan, np.float32),
                       "code of inf (float64)": np.full(512, np.inf),
                       "wrong shape (18,512)": np.zeros((18, 512), np.float32)}.items():
        f = d / f"{label.split()[0]}_{len(cases)}.npy"
        f.write_bytes(npy_bytes(arr))
        add(label, ["render", "--code", str(f), "--size", "256", "-o", str(out)])
    with open(d / "upper.NPZ", "wb") as f:  # np.savez would append .npz to the name
        np.savez(f, w_plus=W + 0.1)
    add("valid code named .NPZ", ["render", "--code", str(d / "upper.NPZ"), "--size", "256", "-o", str(out)],
        expect=0, outputs=())
    nanquad = d / "nanquad.npz"
    np.savez(nanquad, w_plus=W, quad=np.full((4, 2), np.nan), landmarks=np.zeros((68, 2), np.float32),
             source_size=np.array([512, 512]))
    add("NaN quad with --paste-back", ["render", "--code", str(nanquad), "--paste-back", str(photo),
                                       "--size", "256", "-o", str(out)], inputs=(photo,))
    badextra = d / "badextra.npz"
    np.savez(badextra, w_plus=W, quad=np.zeros((4, 2)), landmarks=np.zeros((68, 2)),
             source_size=np.array(["wide", "tall"]), photo=np.array(str(photo)))
    add("code with malformed extras", ["edit", "--code", str(badextra), "--set", "smile=1", "--paste-back",
                                       "--size", "256", "-o", str(out)], inputs=(photo,))
    # --- absurd values
    add("--set smile=1e30", ["edit", "--code", str(code), "--set", "smile=1e30", "--size", "256", "-o", str(out)])
    add("--set smile=nan", ["edit", "--code", str(code), "--set", "smile=nan", "--size", "256", "-o", str(out)])
    add("--set smile=1.5 (sane)", ["edit", "--code", str(code), "--set", "smile=1.5", "--size", "256", "-o", str(out)],
        expect=0, outputs=())
    # --- boundaries
    np.save(d / "b_overflow.npy", np.full(512, 1e308))
    add("boundary of 1e308 (imports)", ["boundaries", "import", str(d / "b_overflow.npy"), "--name", "big",
                                        "--space", "w", "--out", str(d / "bnd")], expect=0, outputs=())
    add("boundaries import --samples 0", ["boundaries", "import", str(d / "b_overflow.npy"), "--name", "z0",
                                          "--space", "z", "--samples", "0", "--out", str(d / "bnd")])
    add("boundaries import --out FILE", ["boundaries", "import", str(d / "b_overflow.npy"), "--name", "x",
                                         "--space", "w", "--out", str(photo)], inputs=(photo,))
    (d / "b_str.npy").write_bytes(npy_bytes(np.array(["x"] * 512)))
    add("boundary of strings", ["boundaries", "import", str(d / "b_str.npy"), "--name", "s", "--space", "w",
                                "--out", str(d / "bnd")])
    import datetime

    import torch

    torch.save({"n": datetime.date(2020, 1, 1)}, d / "b_pickle.pt")
    add("boundary .pt with a pickled object", ["boundaries", "import", str(d / "b_pickle.pt"), "--name", "p",
                                               "--space", "w", "--out", str(d / "bnd")])
    # --- projects (opened the app's way)
    def proj(name: str, meta: dict | str | bytes, arrays: dict[str, np.ndarray] | bytes | None = None,
             expect: int = 2) -> None:
        f = d / f"p{len(cases)}.lsproj"
        project(f, meta, arrays)
        add(name, ["--open-project", str(f)], expect=expect, outputs=())

    proj("valid project", good_meta(), expect=0)
    proj("project JSON nested 200 000 deep", '{"schema": "latentstudio-project", "version": 1, "x": '
         + "[" * 200_000 + "]" * 200_000 + "}")
    proj("project with 1e999 face_index", json.dumps(good_meta()).replace('"face_index": 0', '"face_index": 1e999'))
    proj("project with a 5000-digit integer", json.dumps(good_meta()).replace('"seed": 1', '"seed": ' + "9" * 5000))
    proj("project slider of 1e308", good_meta(values={"smile": 1e308}))
    proj("project slider of 30 (smile range +-3)", good_meta(values={"smile": 30.0}))
    proj("project NaN literal", json.dumps(good_meta()).replace('"psi": 0.7', '"psi": NaN'))
    proj("project.json not UTF-8", b'{"schema": "\xff\xfe"}')
    proj("project base code of 1e30", good_meta(), {"base": W + 1e30, "code": W})
    proj("project base as strings", good_meta(), {"base": np.full((23, 512), "1"), "code": W})
    bomb_npz = io.BytesIO()
    with zipfile.ZipFile(bomb_npz, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("base.npy", npy_bytes(W))
        with z.open("unknown.npy", "w", force_zip64=True) as f:
            f.write(npy_header((300_000_000,)))
            for _ in range(1_200_000_000 // (16 << 20)):
                f.write(bytes(16 << 20))
    proj("project with a 1.2 GB unknown array (skipped)", good_meta(), bomb_npz.getvalue(), expect=0)
    f = d / "bomb.lsproj"
    zip_bomb(f, "project.json", 400_000_000, {"arrays.npz": _npz({"base": W})})
    add("project.json inflating to 400 MB", ["--open-project", str(f)], outputs=())
    # --- names and output paths
    weird = d / os.fsdecode(b"caf\xe9-\xff.png")
    weird.write_bytes(photo.read_bytes())
    wout = d / os.fsdecode(b"out-\xe9.png")
    add("non-UTF-8 photo and output names", ["align", os.fsencode(weird), "-o", os.fsencode(wout)], expect=0,
        inputs=(weird,), outputs=())
    add("align a.png -o a.png", ["align", str(photo), "-o", str(photo)], inputs=(photo,), outputs=())
    add("render -o /dev/null", ["render", "--seed", "1", "--size", "256", "-o", "/dev/null"], outputs=())
    fifo = d / "fifo.png"
    os.mkfifo(fifo)
    add("render -o FIFO", ["render", "--seed", "1", "--size", "256", "-o", str(fifo)], outputs=())
    add("render -o a folder", ["render", "--seed", "1", "--size", "256", "-o", str(d)], outputs=())
    add("render -o missing/folder", ["render", "--seed", "1", "--size", "256", "-o", str(d / "no" / "x.png")],
        outputs=(d / "no" / "x.png",))
    add("render -o /proc (unwritable)", ["render", "--seed", "1", "--size", "256", "-o", "/proc/hostile.png"],
        outputs=())
    add("invert -o missing/folder/x.npz", ["invert", str(photo), "--steps", "1", "-o", str(d / "no" / "x.npz")],
        outputs=(d / "no" / "x.npz",))
    add("edit image ok, --save-code unwritable", ["edit", "--code", str(code), "--set", "smile=1", "--size", "256",
                                                  "--save-code", "/proc/hostile.npz", "-o", str(out)])
    fat = d / "fat.npz"
    np.savez(fat, w_plus=W, loss_names=np.array(["x" * 100] * 8000))
    add("disk full while writing the code", ["edit", "--code", str(fat), "--set", "smile=1", "--size", "256",
                                             "--save-code", str(d / "fat_out.npz"), "-o", str(out)],
        outputs=(out, d / "fat_out.npz"), fsize_limit=1 << 20)
    add("--save-code same as -o", ["edit", "--code", str(code), "--set", "smile=1", "--size", "256",
                                   "--save-code", str(out), "-o", str(out)])
    for c in cases:
        c.inputs = c.inputs + [a if isinstance(a, Path) else Path(os.fsdecode(a)) for a in c.argv[1:]
                               if Path(os.fsdecode(a)).is_file() and Path(os.fsdecode(a)) not in c.outputs]
    return cases


# ----------------------------------------------------------------------------- running
def fingerprint(p: Path) -> tuple[int, str]:
    st = p.lstat()
    if not stat.S_ISREG(st.st_mode):
        return st.st_mode, ""
    return st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest()


def run(case: Case, workdir: Path) -> dict[str, object]:
    before = {p: fingerprint(p) for p in case.inputs if p.exists()}
    specials = {p: os.stat(p).st_mode for p in ("/dev/null",)}
    for o in case.outputs:
        o.unlink(missing_ok=True)
    if case.argv and case.argv[0] == "--open-project":
        cmd: list[str | bytes] = [PY, str(Path(__file__).resolve()), *case.argv]
    else:
        cmd = [PY, "-m", "latentstudio.cli", *case.argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    limit = case.fsize_limit

    def pre() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    err_path = workdir / "stderr.txt"
    t = time.monotonic()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=workdir,
                                preexec_fn=pre)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - t
    code = os.waitstatus_to_exitcode(status)
    stderr = err_path.read_text(errors="replace")
    clobbered = any(fingerprint(p) != fp for p, fp in before.items() if p.exists()) or \
        any(not p.exists() for p in before) or any(os.stat(p).st_mode != m for p, m in specials.items())
    partial = code != 0 and any(o.exists() for o in case.outputs)
    return {"case": case.name, "exit": code, "expect": case.expect, "traceback": "Traceback" in stderr,
            "peak_mb": usage.ru_maxrss / 1024, "seconds": seconds, "clobbered": clobbered, "partial": partial,
            "message": stderr.strip().splitlines()[-1][:110] if stderr.strip() else ""}


def open_project(path: str) -> int:
    """The app's way of opening a project, its error worded as the app's dialog does."""
    from latentstudio.document import load_default_directions
    from latentstudio.project import load_project
    from latentstudio.safety import explain

    try:
        dirs, _ = load_default_directions()
        load_project(path, dirs)
    except Exception as exc:  # noqa: BLE001 - what the dialog would show
        told = explain(exc)
        print(f"latentstudio: error: {told.message}", file=sys.stderr)
        return told.exit_code
    return 0


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| case | exit (expected) | traceback | peak RSS MB | seconds | clobbered | partial | message |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        msg = str(r["message"]).replace("|", "\\|")
        lines.append(f"| {r['case']} | {r['exit']} ({r['expect']}) | {'yes' if r['traceback'] else 'no'} | "
                     f"{r['peak_mb']:.0f} | {r['seconds']:.1f} | {'YES' if r['clobbered'] else 'no'} | "
                     f"{'YES' if r['partial'] else 'no'} | {msg} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run only cases whose name contains this")
    ap.add_argument("--keep", help="build the corpus in this folder (kept)")
    ap.add_argument("--open-project", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.open_project:
        sys.exit(open_project(args.open_project))
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hostile-"))
    folder.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    cases = [c for c in build(folder) if not args.only or args.only in c.name]
    print(f"corpus built in {time.monotonic() - t:.0f} s: {len(cases)} cases in {folder}", file=sys.stderr)
    work = folder / "work"
    work.mkdir(exist_ok=True)
    rows = []
    for c in cases:
        rows.append(run(c, work))
        r = rows[-1]
        print(f"{r['case']:<45} exit {r['exit']} ({r['expect']}) {r['peak_mb']:.0f} MB {r['seconds']:.1f} s",
              file=sys.stderr, flush=True)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(table(rows))
    bad = [r for r in rows if r["exit"] != r["expect"]]
    print(f"\n{len(rows)} cases: {sum(bool(r['traceback']) for r in rows)} tracebacks, "
          f"{len(bad)} unexpected exit codes, max peak {max(float(r['peak_mb']) for r in rows):.0f} MB, "  # type: ignore[arg-type]
          f"max {max(float(r['seconds']) for r in rows):.1f} s, "  # type: ignore[arg-type]
          f"{sum(bool(r['clobbered']) for r in rows)} clobbered, {sum(bool(r['partial']) for r in rows)} partial")


if __name__ == "__main__":
    main()
