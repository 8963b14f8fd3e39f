"""The batch engine: inputs → outputs with a manifest, local workers and Ray giving the same files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentstudio import batch


@pytest.fixture(scope="module")
def photos(generator, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    """Two generated faces as photos in nested folders, a damaged image and a text list."""
    from latentstudio.models.generator import to_uint8

    root = tmp_path_factory.mktemp("photos")
    (root / "a").mkdir()
    (root / "a" / "b").mkdir()
    for i, (sub, seed) in enumerate((("a", 11), ("a/b", 12))):
        rgb = to_uint8(generator.synthesize(generator.seed_w(seed, 0.7), size=256))[0]
        canvas = np.full((320, 320, 3), 90, np.uint8)
        canvas[32:288, 32:288] = rgb
        Image.fromarray(canvas).save(root / sub / f"face{i}.png")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_plan_keeps_relative_paths_drops_duplicates_and_reads_lists(photos: Path, tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text(f"# two of them\n{photos / 'a' / 'face0.png'}\n\n{photos / 'a' / 'b' / 'face1.png'}\n")
    jobs = batch.plan([str(photos), str(lst), str(photos / "a" / "face0.png")], tmp_path / "out", "invert")
    rel = sorted(str(j.output.relative_to(tmp_path / "out")) for j in jobs)
    assert rel == ["a/b/face1.npz", "a/broken.npz", "a/face0.npz"]  # duplicates dropped, same relative paths
    with pytest.raises(batch.BatchError, match="no inputs"):
        batch.plan([str(tmp_path / "empty-dir-that-is-not-there" / "x")][:0], tmp_path, "edit")
    with pytest.raises(batch.BatchError, match="--identity"):
        batch.Options(op="transfer")


def _run(photos: Path, out: Path, **kw: object) -> list[batch.Result]:
    opts = batch.Options(op="invert", steps=2)
    return batch.run(batch.plan([str(photos)], out, "invert"), opts, out, **kw)


def test_bad_files_are_recorded_and_resume_retries_only_them(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    results = _run(photos, out)
    status = {Path(r.input).name: r.status for r in results}
    assert status == {"face0.png": "ok", "face1.png": "ok", "broken.png": "failed"}
    broken = next(r for r in results if r.status == "failed")
    assert "broken.png" in broken.error and broken.sha256
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and {x["status"] for x in lines} == {"ok", "failed"}
    assert (out / "a" / "face0.npz").is_file() and not (out / "a" / "broken.npz").exists()
    again = _run(photos, out, resume=True)
    assert [Path(r.input).name for r in again] == ["broken.png"]  # the done ones are skipped
    (out / "a" / "face0.npz").unlink()  # a lost output is made again
    assert sorted(Path(r.input).name for r in _run(photos, out, resume=True)) == ["broken.png", "face0.png"]


def test_outputs_do_not_depend_on_the_split(photos: Path, tmp_path: Path) -> None:
    one = _run(photos, tmp_path / "one", workers=1)
    two = _run(photos, tmp_path / "two", workers=2)
    assert sorted(r.status for r in one) == sorted(r.status for r in two)
    for name in ("a/face0.npz", "a/b/face1.npz"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    pytest.importorskip("ray")
    ray_results = _run(photos, tmp_path / "ray", ray=True, workers=2)  # a local Ray cluster, started here
    assert len(ray_results) == 3
    for name in ("a/face0.npz", "a/b/face1.npz"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()


def test_cli_batch_exit_codes(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from latentstudio.cli import main

    good = [str(photos / "a" / "face0.png")]
    assert main(["batch", "align", *good, "-o", str(tmp_path / "ok")]) == 0
    assert Image.open(tmp_path / "ok" / "face0.png").size == (1024, 1024)
    assert main(["batch", "align", str(photos), "-o", str(tmp_path / "mixed")]) == 2  # one bad file
    assert "failed: " in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["batch", "align", *good, "-o", str(blocker / "sub")]) == 2
    assert "cannot be written" in capsys.readouterr().err


def test_a_full_disk_stops_the_batch_with_a_clear_message_and_a_valid_manifest(
        photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC while recording the second result: exit 2 with the OS's words, the manifest keeps
    whole lines only, and --resume (with space again) finishes the rest."""
    import errno
    import os

    from latentstudio.cli import main

    real_write, calls = os.write, []

    def full(fd: int, data: bytes) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(batch.os, "write", full)
    args = ["batch", "align", str(photos / "a"), "-o", str(tmp_path / "out")]
    assert main(args) == 2
    assert "No space left on device" in capsys.readouterr().err
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["status"] in ("ok", "failed")
    monkeypatch.setattr(batch.os, "write", real_write)
    assert main([*args, "--resume"]) == 2  # broken.png still fails; the rest is done now
    done = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(Path(d["input"]).name for d in done if d["status"] == "ok") == ["face0.png", "face1.png"]
