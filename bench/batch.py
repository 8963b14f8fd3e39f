"""Batch throughput: the same photos edited with 1 and 2 local workers and on a local Ray cluster.

    python bench/batch.py [--photos 8] [--steps 12] [--results bench/RESULTS.md]

Inputs: the benchmarks' real portraits plus generated faces (as PNG photos) up to ``--photos``.
Each run edits every input (``age=+2``, inversion of ``--steps`` steps, 512² render) into a fresh
folder; reported: photos a minute, speed-up over one worker, Ray's overhead against the same
number of plain processes, peak memory of a worker process, and whether the outputs are
bit-identical across the runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from latentstudio import batch  # noqa: E402
from photos import real_photos  # noqa: E402
from report import publish  # noqa: E402


def inputs(folder: Path, n: int) -> list[str]:
    from latentstudio.models.generator import Generator, to_uint8

    paths = [str(p) for p in real_photos()][:n]
    g = Generator.load("cpu")
    seed = 500
    while len(paths) < n:
        rgb = to_uint8(g.synthesize(g.seed_w(seed, 0.7), size=256))[0]
        canvas = np.full((320, 320, 3), 90, np.uint8)
        canvas[32:288, 32:288] = rgb
        p = folder / f"generated_{seed}.png"
        Image.fromarray(canvas).save(p)
        paths.append(str(p))
        seed += 1
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--results", default="")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="latentstudio-batch-"))
    paths = inputs(work, args.photos)
    opts = batch.Options(op="edit", alphas={"age": 2.0}, steps=args.steps, size=512)
    rows, outputs = [], {}
    for label, kw in (("1 worker", {"workers": 1}), ("2 workers", {"workers": 2}),
                      ("Ray, 2 actors (local cluster)", {"workers": 2, "ray": True})):
        out = work / label.split(",")[0].replace(" ", "_")
        jobs = batch.plan(paths, out, "edit")
        t = time.monotonic()
        results = batch.run(jobs, opts, out, **kw)
        seconds = time.monotonic() - t
        ok = sum(r.status == "ok" for r in results)
        outputs[label] = {j.output.name: j.output.read_bytes() for j in jobs if j.output.is_file()}
        rows.append((label, ok, len(jobs), seconds))
        print(f"{label}: {seconds:.0f} s", file=sys.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    base = outputs["1 worker"]
    same = all(o == base for o in outputs.values())
    one, two, ray = (r[3] for r in rows)
    lines = ["## Batch (issue 25)", "",
             f"`python bench/batch.py --photos {args.photos} --steps {args.steps}`, {time.strftime('%Y-%m-%d %H:%M')}: "
             f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}. "
             f"`batch edit --set age=2 --steps {args.steps} --size 512` on {args.photos} photos (the real portraits "
             "and generated faces); one CPU thread per worker (outputs independent of the split).", "",
             "| run | photos ok | seconds | photos a minute | × 1 worker |", "|---|---|---|---|---|"]
    for label, ok, n, s in rows:
        lines.append(f"| {label} | {ok} / {n} | {s:.0f} | {60 * ok / s:.1f} | {one / s:.2f} |")
    lines += ["", f"Ray against 2 plain processes: {100 * (ray / two - 1):+.0f} % time (target ≤ +10 %; "
              "it includes starting the local cluster and its actors). Peak memory of the largest child process "
              "(a worker, or one of the local Ray cluster's own processes): "
              f"{peak:.2f} GB. Outputs bit-identical across the three runs: {'yes' if same else 'NO'}."]
    publish("\n".join(lines) + "\n", args.results)


if __name__ == "__main__":
    main()
