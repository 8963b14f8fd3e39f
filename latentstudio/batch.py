"""Many photos at once: edit, de-identify, transfer, invert or align every input, on local
worker processes or a Ray cluster, with a manifest that makes the batch resumable.

    jobs   = plan(inputs, outdir, op)             files, folders (recursive) or text lists → Job
    result = run_job(job, options, models)        one input → one output (any process)
    run(jobs, options, outdir, workers=N | ray=ADDRESS, resume=…)

Each input gives one output at the same relative path under ``outdir``. ``outdir/manifest.jsonl``
gets one JSON line per finished input (input, sha256, output, status, seconds, error), appended
and flushed as results arrive; ``resume`` skips inputs whose line says "ok" for the same sha256
and output, and retries the rest. A bad file is recorded with its reason and the batch goes on.

Outputs do not depend on how the work is split: every worker runs its models with one CPU
thread (floating-point sums in the same order), inversions are seeded, and each output is
written atomically by the worker that made it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentstudio.models.fetch import sha256_of
from latentstudio.progress import CancelFn, Progress, ProgressFn, check, report
from latentstudio.safety import InputError

OPS = ("edit", "deidentify", "transfer", "invert", "align")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
MANIFEST = "manifest.jsonl"


class BatchError(InputError):
    """The batch cannot start (no inputs, an unusable output folder, Ray missing)."""

    title = "Cannot run the batch"


@dataclass(frozen=True)
class Options:
    """What every input gets (the single-photo commands' options)."""

    op: str
    alphas: dict[str, float] = field(default_factory=dict)
    keep: tuple[str, ...] = ()
    layers: Any = None
    strength: float = 1.0  # deidentify
    seed: int = 0  # deidentify's new person, and the inversion's noise
    identity: str | None = None  # transfer: the identity photo or code
    id_alpha: float = 1.0
    paste_back: bool = False
    preset: str = "fast"
    steps: int | None = None
    size: int = 1024
    device: str | None = "cpu"
    surroundings: bool = True  # transfer, deidentify: the result in the input's own hair and background

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise BatchError(f"unknown batch operation {self.op!r}; one of {', '.join(OPS)}")
        if self.op == "transfer" and not self.identity:
            raise BatchError("batch transfer needs --identity PHOTO|CODE")


@dataclass(frozen=True)
class Job:
    input: Path
    output: Path


@dataclass
class Result:
    input: str
    sha256: str
    output: str
    status: str  # "ok" | "failed"
    seconds: float
    error: str = ""


# ----------------------------------------------------------------------------- planning
def _suffix(op: str) -> str:
    return ".npz" if op == "invert" else ".png"


def expand(inputs: Iterable[str]) -> list[tuple[Path, Path]]:
    """(input, path relative to its root) for files, folders (recursive, images only) and text
    lists (one path a line, ``#`` comments); in the order given, duplicates dropped."""
    out: list[tuple[Path, Path]] = []
    seen: set[Path] = set()

    def add(p: Path, rel: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append((p, rel))

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    add(f, f.relative_to(p))
        elif p.suffix.lower() == ".txt" and p.is_file():
            for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line) if Path(line).is_absolute() else p.parent / line
                    add(q, Path(q.name))
        else:
            add(p, Path(p.name))  # a missing or bad file is recorded as failed, not refused here
    return out


def plan(inputs: Iterable[str], outdir: Path, op: str) -> list[Job]:
    """One job per input; the output keeps the input's relative path, with the op's suffix."""
    pairs = expand(inputs)
    if not pairs:
        raise BatchError("no inputs (files, folders of images, or .txt lists)")
    jobs, taken = [], set()
    for src, rel in pairs:
        out = outdir / rel.with_suffix(_suffix(op))
        n = 1
        while out in taken:  # two inputs of the same name from different places
            out = outdir / rel.with_name(f"{rel.stem}-{n}{_suffix(op)}")
            n += 1
        taken.add(out)
        jobs.append(Job(src, out))
    return jobs


# ----------------------------------------------------------------------------- one input
class Models:
    """What a worker loads once: the runtime (generator, identity models), the boundaries and
    the transfer's identity code."""

    def __init__(self, options: Options) -> None:
        from latentstudio.runtime import Runtime

        self.runtime = Runtime(options.device)
        self.options = options
        self._directions: Any = None
        self._identity: np.ndarray | None = None

    @property
    def directions(self) -> Any:
        if self._directions is None:
            from latentstudio.edit.boundaries import load_all
            from latentstudio.edit.pca import load_pca_boundaries

            dirs = load_all()
            for name, b in load_pca_boundaries().items():
                dirs.setdefault(name, b)
            self._directions = dirs
        return self._directions

    def identity_code(self) -> np.ndarray:
        if self._identity is None:
            self._identity = _code_of(Path(self.options.identity or ""), self)[0]
        return self._identity


def _code_of(path: Path, models: Models) -> tuple[np.ndarray, Any]:
    """A photo (inverted) or a code file → (W+ code, its placement arrays or {})."""
    from latentstudio.codes import CODE_SUFFIXES, load_code, load_code_extras

    if path.suffix.lower() in CODE_SUFFIXES:
        return load_code(path), load_code_extras(path)
    from latentstudio.photo import invert_photo

    o = models.options
    pc = invert_photo(path, generator=models.runtime.generator(), preset=o.preset, steps=o.steps, seed=o.seed,
                      nets=models.runtime)
    return pc.w_plus, pc.placement.arrays()


def run_job(job: Job, models: Models) -> Result:
    """Process one input (never raises for a bad input: the result says why it failed)."""
    from latentstudio.safety import explain

    t = time.monotonic()
    try:
        digest = sha256_of(job.input)
    except OSError as exc:
        return Result(str(job.input), "", str(job.output), "failed", 0.0, explain(exc).message)
    try:
        _process(job, models)
        return Result(str(job.input), digest, str(job.output), "ok", round(time.monotonic() - t, 2))
    except Exception as exc:  # noqa: BLE001 - recorded, and the batch goes on
        told = explain(exc)
        return Result(str(job.input), digest, str(job.output), "failed", round(time.monotonic() - t, 2), told.message)


def _process(job: Job, models: Models) -> None:
    from latentstudio.face.image_io import save_image

    o = models.options
    job.output.parent.mkdir(parents=True, exist_ok=True)
    if o.op == "align":
        from latentstudio.photo import align_photo

        save_image(job.output, align_photo(job.input)[0].image, {"latentstudio": f"aligned from {job.input.name}"})
        return
    code, extras = _code_of(job.input, models)
    if o.op == "invert":
        from latentstudio.codes import save_code

        save_code(job.output, code, **extras)
        return
    models_id = models.runtime.identity() if o.op in ("deidentify", "transfer") else None
    own = code  # the input's face: its hair and background are kept around another person's
    if o.op == "deidentify":
        from latentstudio.identity import api

        code = api.deidentify(code, o.strength, o.seed, models=models_id)
    elif o.op == "transfer":
        from latentstudio.identity import api

        code = api.blend(code, models.identity_code(), o.id_alpha, 0.0, models=models_id)
    from latentstudio.render import render_scene

    code = _edited(code, o, models)
    scene = code
    if models_id is not None and o.surroundings:  # as the app shows it: the input's own hair and background
        from latentstudio.identity.surroundings import in_surroundings

        scene = in_surroundings(code, _edited(own, o, models), models_id.surroundings)
    rgb = render_scene(models.runtime.generator(), scene, o.size)
    if o.paste_back:
        from latentstudio.face.placement import Placement

        rgb = Placement.from_arrays(extras).paste(rgb, other_person=o.op in ("transfer", "deidentify"))
    meta = {"latentstudio": f"batch {o.op} " + " ".join(f"{k}={v:g}" for k, v in o.alphas.items())}
    save_image(job.output, rgb, meta)  # atomic: a temp file renamed over


def _edited(code: np.ndarray, o: Options, models: Models) -> np.ndarray:
    """The options' slider edits applied to ``code`` (23,512)."""
    if not o.alphas:
        return code
    from latentstudio.edit.apply import apply_edits

    return apply_edits(code, o.alphas, models.directions, keep=o.keep, layers=o.layers)


# ----------------------------------------------------------------------------- the manifest
class Manifest:
    """``outdir/manifest.jsonl``: one JSON line per finished input, appended and flushed."""

    def __init__(self, outdir: Path) -> None:
        self.path = outdir / MANIFEST

    def done(self) -> dict[str, dict[str, Any]]:
        """The last line for each input (damaged lines, e.g. cut by a crash, are skipped)."""
        out: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return out
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "input" in rec:
                out[str(rec["input"])] = rec
        return out

    def append(self, result: Result) -> None:
        line = (json.dumps(asdict(result), ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of one line: whole or (after a crash) cut, never interleaved
            os.fsync(fd)
        finally:
            os.close(fd)


def pending(jobs: list[Job], manifest: Manifest, resume: bool) -> list[Job]:
    """The jobs still to do: all, or with ``resume`` those without an "ok" line for the same
    input content and an output that is still there."""
    if not resume:
        return jobs
    done = manifest.done()
    todo = []
    for job in jobs:
        rec = done.get(str(job.input))
        if rec and rec.get("status") == "ok" and Path(str(rec.get("output"))).is_file():
            try:
                if rec.get("sha256") == sha256_of(job.input):
                    continue
            except OSError:
                pass
        todo.append(job)
    return todo


# ----------------------------------------------------------------------------- running
_WORKER: Models | None = None


def _one_thread() -> int:
    """One CPU thread for the models from now on (the same floating-point sums in every worker, so
    outputs do not depend on the split); the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return before


def _init_worker(options: Options) -> None:
    global _WORKER
    _one_thread()
    _WORKER = Models(options)


def _work(job: Job) -> Result:
    assert _WORKER is not None
    return run_job(job, _WORKER)


def _local(jobs: list[Job], options: Options, workers: int) -> Iterator[Result]:
    if workers <= 1:
        import torch

        models = Models(options)
        before = _one_thread()
        try:
            for job in jobs:
                yield run_job(job, models)
        finally:
            torch.set_num_threads(before)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(options,)) as pool:
        futures = [pool.submit(_work, job) for job in jobs]
        try:
            for f in as_completed(futures):
                yield f.result()
        except BrokenProcessPool as exc:
            raise BatchError("a worker process died (out of memory, or killed); the manifest keeps what "
                             "finished: run the same command with --resume") from exc
        except BaseException:
            for f in futures:
                f.cancel()
            raise


class _RayWorker:
    """A Ray actor: the models loaded once, one job at a time."""

    def __init__(self, options: Options) -> None:
        _one_thread()
        self.models = Models(options)

    def run(self, job: Job) -> Result:
        return run_job(job, self.models)


def _ray(jobs: list[Job], options: Options, address: str | None, workers: int) -> Iterator[Result]:
    from latentstudio import cluster

    with cluster.session(address, num_cpus=None if address else max(workers, 2)) as ray:
        yield from cluster.map_unordered(ray, _RayWorker, (options,), "run", jobs, actors=workers,
                                         num_gpus=1 if options.device == "cuda" else 0)


def run(jobs: list[Job], options: Options, outdir: Path, *, workers: int = 1, ray: str | None | bool = False,
        resume: bool = False, progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> list[Result]:
    """Run the jobs (local processes, or Ray when ``ray`` is an address or True), append each
    result to the manifest as it arrives; the results of this run. ``cancelled()`` stops after
    the results in flight (``Cancelled``; the manifest holds what finished)."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        probe = outdir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BatchError(f"{outdir}: the output folder cannot be written ({exc.strerror or exc})") from exc
    manifest = Manifest(outdir)
    todo = pending(jobs, manifest, resume)
    results: list[Result] = []
    start = time.monotonic()
    source = _ray(todo, options, ray if isinstance(ray, str) else None, workers) if ray is not False \
        else _local(todo, options, workers)
    report(progress, Progress("batch", 0, len(todo), f"{len(jobs) - len(todo)} already done"))
    for result in source:
        manifest.append(result)
        results.append(result)
        rate = len(results) / max(time.monotonic() - start, 1e-6)
        left = (len(todo) - len(results)) / rate if rate else 0.0
        failed = sum(r.status != "ok" for r in results)
        report(progress, Progress("batch", len(results), len(todo),
                                  f"{rate * 60:.1f} a minute, about {left:.0f} s left" + (f", {failed} failed" if failed else "")))
        check(cancelled, f"batch stopped after {len(results)} of {len(todo)} (run again with --resume)")
    return results


__all__ = ["BatchError", "Job", "Manifest", "Options", "Result", "OPS", "expand", "pending", "plan", "run", "run_job"]
