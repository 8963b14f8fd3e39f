"""Render speed: our PyTorch port vs the OpenVINO reference, in the same process.

    python bench/render.py [--runs 10] [--threads N] [--source DIR]

Prints a table of median / p90 milliseconds per image (batch 1) for the reference IR at 1024²
(OpenVINO, forced to f32), our port at 1024², 512², 256² and 128² (``Generator.synthesize``: the
``models.fast`` twin on the CPU), the plain ``Synthesis`` module at 1024² and 256² (what the
renders cost before the twin), and the ratios to the reference.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from latentstudio.models.generator import Generator  # noqa: E402


def timed(fn, runs: int) -> np.ndarray:  # noqa: ANN001
    fn()  # warm-up
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.array(out) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--source", default=None, help="folder holding the random-face wheel")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = Generator.load("cpu")
    w = g.seed_w(1).numpy()[None]
    rows: list[tuple[str, np.ndarray]] = []
    try:
        from pathlib import Path

        from latentstudio.models.reference import openvino_ir

        _, ov_syn = openvino_ir(Path(args.source) if args.source else None)
        rows.append(("OpenVINO IR 1024², f32 (reference)", timed(lambda: ov_syn(w), args.runs)))
    except ImportError:
        print("openvino not installed: no reference row")
    wt = torch.from_numpy(w)
    plain = torch.from_numpy(w)[:, None].expand(1, 23, 512).contiguous()

    def module(size: int) -> None:  # the readable reference module (NCHW), as training runs it
        with torch.no_grad():
            g.reference(plain, size)

    for size in (1024, 512, 256, 128):
        rows.append((f"port {size}² (models.fast)", timed(lambda s=size: g.synthesize(wt, size=s), args.runs)))
    for size in (1024, 256):
        rows.append((f"port {size}², reference module", timed(lambda s=size: module(s), args.runs)))
    ref = np.median(rows[0][1]) if rows[0][0].startswith("OpenVINO") else None
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, threads {args.threads}")
    print("| route | median ms | p90 ms | × reference |\n|---|---|---|---|")
    for name, t in rows:
        ratio = f"{np.median(t) / ref:.2f}" if ref else "-"
        print(f"| {name} | {np.median(t):.0f} | {np.percentile(t, 90):.0f} | {ratio} |")


if __name__ == "__main__":
    main()
