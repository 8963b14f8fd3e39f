"""The `latentstudio` command: render, align, invert, paste-back, and exit code 2 on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentstudio.cli import main
from latentstudio.models.generator import to_uint8


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def test_render_seed_matches_the_api(tmp_path: Path, generator) -> None:  # noqa: ANN001
    out = tmp_path / "seed.png"
    assert main(["render", "--seed", "3", "--size", "256", "-o", str(out)]) == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    want = to_uint8(generator.synthesize(generator.seed_w(3, 0.7), size=256))[0]
    assert img.shape == (256, 256, 3)
    assert np.abs(img.astype(int) - want).max() <= 1


def test_render_code_npy_w_and_w_plus_agree(tmp_path: Path, generator) -> None:  # noqa: ANN001
    w = generator.seed_w(5, 0.7).numpy()
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "wp.npy", np.tile(w, (23, 1)))
    assert main(["render", "--code", str(tmp_path / "w.npy"), "--size", "256", "-o", str(tmp_path / "a.png")]) == 0
    assert main(["render", "--code", str(tmp_path / "wp.npy"), "--size", "256", "-o", str(tmp_path / "b.png")]) == 0
    a, b = (np.asarray(Image.open(tmp_path / n)) for n in ("a.png", "b.png"))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("command", ["render", "edit"])
@pytest.mark.parametrize("content", ["shape", "nan", "text", "npz_text", "npz_key", "missing"])
def test_bad_code_file_exits_2(tmp_path: Path, content: str, command: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ("bad.npz" if content.startswith("npz") or content == "missing" else "bad.npy")
    if content == "shape":
        np.save(path, np.zeros((18, 512), np.float32))
    elif content == "nan":
        np.save(path, np.full(512, np.nan, np.float32))
    elif content in ("text", "npz_text"):
        path.write_text("this is not a latent")
    elif content == "npz_key":
        np.savez(path, latent=np.zeros((23, 512), np.float32))
    extra = ["--set", "smile=1"] if command == "edit" else []
    assert main([command, "--code", str(path), *extra, "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "error" in err and str(path.name) in err and "Traceback" not in err
    assert "pickle" not in err  # numpy's guess for a file that is no .npy/.npz at all


@pytest.mark.parametrize("kind", ["missing", "corrupt", "noface"])
def test_bad_photo_exits_2(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "photo.jpg"
    if kind == "corrupt":
        path.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    elif kind == "noface":
        Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(path)
    assert main(["align", str(path), "-o", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latentstudio: error:") and len(err.strip().splitlines()) == 1


def test_invert_then_paste_back(tmp_path: Path, astronaut: Path) -> None:
    code = tmp_path / "code.npz"
    assert main(["invert", str(astronaut), "--steps", "2", "-o", str(code)]) == 0
    with np.load(code) as data:
        assert data["w_plus"].shape == (23, 512) and data["w_plus"].dtype == np.float32
        assert data["quad"].shape == (4, 2) and data["landmarks"].shape == (68, 2)
        assert tuple(data["source_size"]) == (512, 512)
    out = tmp_path / "pasted.png"
    assert main(["render", "--code", str(code), "--size", "256", "--paste-back", str(astronaut), "-o", str(out)]) == 0
    photo = np.asarray(Image.open(astronaut).convert("RGB"))
    pasted = np.asarray(Image.open(out).convert("RGB"))
    assert pasted.shape == photo.shape
    changed = np.any(pasted != photo, axis=-1)
    assert 0.02 < changed.mean() < 0.6  # the face region changed, the rest is untouched
    assert not changed[:, :40].any() and not changed[-40:].any()
    # edit --code … --paste-back without PHOTO: the photo the code file names
    out2 = tmp_path / "edited.png"
    assert main(["edit", "--code", str(code), "--set", "age=0", "--size", "256", "--paste-back",
                 "-o", str(out2)]) == 0
    assert np.abs(np.asarray(Image.open(out2).convert("RGB")).astype(int) - pasted).max() <= 1


def test_invert_start_choice(tmp_path: Path, astronaut: Path) -> None:
    """--start encoder begins at the encoder's guess, --start average at w_avg:
    after 0 W-phase progress (1 step, lr warm-up) the two codes are far apart."""
    codes = {}
    for start in ("average", "encoder"):
        out = tmp_path / f"{start}.npz"
        assert main(["invert", str(astronaut), "--steps", "1", "--start", start, "-o", str(out)]) == 0
        with np.load(out) as data:
            codes[start] = data["w_plus"]
    assert np.linalg.norm(codes["average"][0] - codes["encoder"][0]) > 1.0
    with pytest.raises(SystemExit) as info:  # argparse's usage error
        main(["invert", str(astronaut), "--start", "nowhere", "-o", str(tmp_path / "x.npz")])
    assert info.value.code == 2


def test_invert_tune_writes_weights_that_render_and_edit_use(tmp_path: Path, astronaut: Path) -> None:
    code = tmp_path / "code.npz"
    assert main(["invert", str(astronaut), "--steps", "2", "--tune", "2", "-o", str(code)]) == 0
    with np.load(code) as data:
        tuned = [k for k in data.files if k.startswith("tuned/")]
        assert tuned and all(data[k].dtype == np.float16 for k in tuned)
        np.savez(tmp_path / "plain.npz", w_plus=data["w_plus"])
    outs = {}
    for name, args in {"render": ["render", "--code", str(code)],
                       "edit": ["edit", "--code", str(code), "--set", "age=0"],
                       "plain": ["render", "--code", str(tmp_path / "plain.npz")]}.items():
        assert main(args + ["--size", "256", "-o", str(tmp_path / f"{name}.png")]) == 0
        outs[name] = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB")).astype(int)
    assert np.abs(outs["render"] - outs["edit"]).max() <= 1  # edit renders with the tuned weights too
    assert np.abs(outs["render"] - outs["plain"]).max() > 0
    assert main(["invert", str(astronaut), "--tune", "0", "-o", str(tmp_path / "x.npz")]) == 2


def test_paste_back_needs_an_inverted_code(tmp_path: Path, astronaut: Path) -> None:
    np.save(tmp_path / "w.npy", np.zeros(512, np.float32))
    assert main(["render", "--code", str(tmp_path / "w.npy"), "--paste-back", str(astronaut),
                 "-o", str(tmp_path / "x.png")]) == 2


def test_models_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "mobilestylegan" in out and "non-commercial" in out


def test_bench_command_runs_the_checkout_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "invert", "--help"]) == 0  # bench/invert.py's own argparse
    out = capsys.readouterr().out
    assert "--presets" in out and "--photos" in out
    assert main(["bench", "invert", "--presets"]) == 2  # its usage error, not a crash


def test_a_file_argument_opens_the_editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`latentstudio FILE` is how the desktop launcher opens a photo (Exec=latentstudio %f)."""
    import latentstudio.app

    opened: list[list[str]] = []
    monkeypatch.setattr(latentstudio.app, "run_app", lambda argv=None: opened.append(list(argv or [])) or 0)
    photo = tmp_path / "my photo.jpg"
    photo.write_bytes(b"")
    assert main([str(photo)]) == 0 and main(["gone.lsproj"]) == 0 and main([]) == 0
    assert opened == [[str(photo)], ["gone.lsproj"], []]
    with pytest.raises(SystemExit) as exc:  # a mistyped command is still an error, not a file
        main(["rendr"])
    assert exc.value.code == 2 and len(opened) == 3
