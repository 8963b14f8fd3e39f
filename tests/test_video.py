"""Video: a clip in, the same clip out with the followed face edited (``latentstudio.video``).
Short clips made here from a generated face; short inversions (the speed and coherency targets
are measured by ``bench/video.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from latentstudio import video  # noqa: E402
from latentstudio.invert import Preset  # noqa: E402
from latentstudio.progress import Cancelled  # noqa: E402
from latentstudio.runtime import Runtime  # noqa: E402

W, H, FPS = 320, 240, 12
QUICK = Preset(steps=3, render_size=256, loss_size=256, lpips_net="alex", w_fraction=0.5)


def _make_clip(generator, path: Path, n: int = 6, blank: tuple[int, ...] = (), audio: bool = True) -> Path:  # noqa: ANN001
    """A moving, zooming generated face on a fixed background (frames in ``blank``: no face)."""
    import cv2

    from latentstudio.models.generator import to_uint8

    face = to_uint8(generator.synthesize(generator.seed_w(5, 0.7), size=256))[0]
    rng = np.random.default_rng(0)
    bg = cv2.resize(rng.integers(60, 200, (12, 16, 3)).astype(np.uint8), (W, H), interpolation=cv2.INTER_CUBIC)
    c = av.open(str(path), "w")
    vs = c.add_stream("libx264", rate=FPS)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    a = c.add_stream("aac", rate=16000) if audio else None
    if a is not None:
        a.layout = "mono"
    for i in range(n):
        img = bg.copy()
        if i not in blank:
            s, x, y = 150 + 4 * i, 60 + 6 * i, 30 + 2 * i
            img[y:y + s, x:x + s] = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
        for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            c.mux(p)
    for p in vs.encode():
        c.mux(p)
    if a is not None:
        t = np.arange(int(16000 * n / FPS)) / 16000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k in range(0, len(tone), 1024):
            af = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, k
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    c.close()
    return path


@pytest.fixture()
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video, "WARM_STEPS", 2)


@pytest.fixture()
def runtime(generator) -> Runtime:  # noqa: ANN001
    return Runtime("cpu", generator_factory=lambda: generator)


def _frames(path: Path) -> list[np.ndarray]:
    return [f.rgb for f in video.frames(path)]


def test_edit_clip_keeps_size_frames_audio_and_edits_only_the_face(generator, runtime, quick, tmp_path: Path) -> None:  # noqa: ANN001
    from latentstudio.edit.boundaries import load_all

    src = _make_clip(generator, tmp_path / "in.mp4")
    out = tmp_path / "out.mp4"
    seen = []
    rep = video.edit_clip(src, out, video.VideoEdit(alphas={"age": 2.0}), runtime=runtime, directions=load_all(),
                          preset=QUICK, progress=seen.append)
    assert rep.frames == rep.edited == 6 and rep.passed_through == []
    info = video.probe(out)
    assert (info.width, info.height, info.has_audio) == (W, H, True)
    a, b = _frames(src), _frames(out)
    assert len(b) == 6
    for x, y in zip(a, b):
        diff = np.abs(x.astype(int) - y.astype(int)).mean(-1)
        assert diff[110:150, 120:180].mean() > 8  # the face changed (aged)
        assert diff[:, :40].mean() < 4 and diff[-20:].mean() < 4  # the background did not (codec noise)
    assert {p.stage for p in seen} >= {"track", "video"} and seen[-1].done == seen[-1].total
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial file left


def test_frames_without_the_face_pass_through_and_are_reported(generator, runtime, quick, tmp_path: Path) -> None:  # noqa: ANN001
    src = _make_clip(generator, tmp_path / "in.mp4", blank=(2, 3), audio=False)
    out = tmp_path / "out.mp4"
    rep = video.edit_clip(src, out, video.VideoEdit(), runtime=runtime, preset=QUICK)
    assert rep.passed_through == [2, 3] and rep.edited == 4
    a, b = _frames(src), _frames(out)
    assert np.abs(a[2].astype(int) - b[2].astype(int)).mean() < 3
    assert not video.probe(out).has_audio


def test_cancel_leaves_no_output_and_the_rerun_resumes_from_the_cache(generator, runtime, quick, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    src = _make_clip(generator, tmp_path / "in.mp4", audio=False)
    out = tmp_path / "out.mp4"
    done = []
    with pytest.raises(Cancelled):
        video.edit_clip(src, out, video.VideoEdit(), runtime=runtime, preset=QUICK,
                        progress=lambda p: done.append(p) if p.stage == "invert" else None,
                        cancelled=lambda: len(done) >= 3)  # during the inversions
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    cached = sorted(p.name for p in (tmp_path / "out.mp4.frames").glob("0*.npz"))
    assert cached == [f"{i:06d}.npz" for i in range(3)]
    import latentstudio.invert as invert_module

    calls = []
    real = invert_module.invert
    monkeypatch.setattr(invert_module, "invert", lambda *a, **k: calls.append(1) or real(*a, **k))
    rep = video.edit_clip(src, out, video.VideoEdit(), runtime=runtime, preset=QUICK)
    # frames 0-2 came from the cache; 3-5 forward, then 4 … 0 once more, backwards (``video._settle``)
    assert rep.edited == 6 and len(calls) == 3 + 5 and out.is_file()
    settled = sorted(p.name for p in (tmp_path / "out.mp4.frames").glob("*.settled.npz"))
    assert settled == [f"{i:06d}.settled.npz" for i in range(5)]
    calls.clear()
    video.edit_clip(src, tmp_path / "out.mp4", video.VideoEdit(), runtime=runtime, preset=QUICK)
    assert calls == []  # everything, the backward pass too, resumes from the cache


def test_landmark_smoothing_removes_jitter_within_runs() -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 30)[:, None, None]
    truth = np.broadcast_to(100 + 40 * t, (30, 68, 2)).copy()
    noisy = truth + rng.normal(0, 2.0, truth.shape)
    noisy[12:14] = np.nan  # the face is lost for two frames
    out = video.smooth(noisy)
    assert np.isnan(out[12:14]).all() and np.isfinite(out[:12]).all() and np.isfinite(out[14:]).all()
    err_before = np.nanmean(np.abs(noisy - truth))
    err_after = np.nanmean(np.abs(out - truth))
    assert err_after < 0.6 * err_before


def test_landmark_smoothing_does_not_lag_at_the_ends_of_a_run() -> None:
    """A face moving fast and steadily: a truncated blur would pull the first and last frames'
    landmarks towards the middle (the crop off the face); the local linear fit does not."""
    truth = np.broadcast_to(100 + 12.0 * np.arange(12)[:, None, None], (12, 68, 2)).copy()
    out = video.smooth(truth)
    assert np.abs(out - truth).max() < 1e-6


def test_cli_video_refuses_bad_input_with_exit_2(generator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    from latentstudio.cli import main

    fake = tmp_path / "notavideo.mp4"
    fake.write_bytes(b"this is not a video" * 100)
    assert main(["video", str(fake), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "not a video" in capsys.readouterr().err
    empty = _make_clip(generator, tmp_path / "noface.mp4", n=3, blank=(0, 1, 2), audio=False)
    assert main(["video", str(empty), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "no usable face" in capsys.readouterr().err and not (tmp_path / "o.mp4").exists()
    assert main(["video", str(empty), "-o", str(empty)]) == 2  # never overwrites its input
    assert main(["video", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4")]) == 2


def test_deidentified_clip_is_one_new_person(generator, runtime, quick, tmp_path: Path) -> None:  # noqa: ANN001
    """--deidentify: every frame gets the same other person (dlib: far from the source, close to
    each other)."""
    import torch

    from latentstudio.face.align import align_face
    from latentstudio.face.chip import IdentityNet
    from latentstudio.models.generator import from_uint8

    src = _make_clip(generator, tmp_path / "in.mp4", n=4, audio=False)
    out = tmp_path / "out.mp4"
    rep = video.edit_clip(src, out, video.VideoEdit(deidentify=1.0, deid_seed=3), runtime=runtime, preset=QUICK)
    assert rep.edited == 4
    tr = video.track(src)
    net = IdentityNet.load("cpu")

    def embed(path: Path) -> np.ndarray:
        crops = [align_face(f.rgb, tr.landmarks[k]).image for k, f in enumerate(video.frames(path))]
        with torch.no_grad():
            return net.embed_aligned(from_uint8(np.stack(crops))).numpy()

    a, b = embed(src), embed(out)
    assert np.linalg.norm(a - b, axis=1).min() > 0.5  # far from the source on every frame (its own frames: < 0.2)
    assert max(np.linalg.norm(b[i] - b[i + 1]) for i in range(3)) < 0.35  # the same one throughout


def test_a_clips_identity_amount_is_chosen_once_for_every_frame(generator, runtime) -> None:  # noqa: ANN001
    """A fractional --id-alpha maps to one point of the blend's line for the whole clip (measured
    on the clip's mean code), so frames whose own mapping would differ still move alike."""
    import torch

    from latentstudio.identity import api

    models = runtime.identity()
    w = torch.stack([generator.seed_w(s, 0.7) for s in (21, 22, 23)]).numpy()
    a, b, other = (np.repeat(x[None], 23, 0).astype(np.float32) for x in w)
    codes = {0: a, 1: (0.7 * a + 0.3 * b).astype(np.float32), 2: (0.4 * a + 0.6 * b).astype(np.float32)}
    edit = video.VideoEdit(identity=other, id_alpha=0.4)
    identity, amount = video._clip_identity(codes, edit, models)
    mean = np.mean(np.stack(list(codes.values())), axis=0).astype(np.float32)
    assert amount == api.even_amount(mean, other, 0.4, 0.0, models=models) and 0.0 < amount < 1.0
    own = [api.even_amount(c, other, 0.4, 0.0, models=models) for c in codes.values()]
    assert max(own) - min(own) > 1e-3  # each frame alone would take another point
    for c in codes.values():
        np.testing.assert_array_equal(video._identity_stage(c, identity, amount, edit, models),
                                      api.blend(c, other, amount, 0.0, even=False, models=models))


def test_cli_video_edits_a_clip(generator, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: ANN001
                                monkeypatch: pytest.MonkeyPatch) -> None:
    from latentstudio.cli import main

    monkeypatch.setattr(video, "WARM_STEPS", 2)
    src = _make_clip(generator, tmp_path / "in.mp4", n=4)
    out = tmp_path / "out.mp4"
    assert main(["video", str(src), "-o", str(out), "--set", "smile=1", "--steps", "3", "--start", "0.05"]) == 0
    err = capsys.readouterr()
    assert "wrote" in err.out and "track" in err.err
    assert len(_frames(out)) == 3 and video.probe(out).has_audio  # --start dropped the first frame


def test_session_opens_a_clip_moves_between_frames_and_exports_the_edits(generator, runtime, quick,  # noqa: ANN001
                                                                         tmp_path: Path) -> None:
    """The app's video workflow without Qt: open (a document of the first frame), an edit, another
    frame (the edit and the history stay), export (every frame gets the edit)."""
    from latentstudio.session import Session

    src = _make_clip(generator, tmp_path / "in.mp4", n=4, audio=False)
    s = Session(runtime)
    s.invert_steps = 3
    message = s.open_task(src)()
    assert "4 frames" in message and s.video is not None and s.video.frame == 0
    first = s.doc
    assert first.source.can_paste_back and first.source.placement.size == (W, H)
    s.set_value("age", 2.0)
    s.frame_task(2)()
    assert s.doc is not first and s.video.frame == 2 and s.doc.state.values == {"age": 2.0}
    assert s.history.count() == 1
    composed = s.doc.compose(np.zeros((64, 64, 3), np.uint8))  # pasted into frame 2, not frame 0
    assert composed.shape == (H, W, 3)
    out = tmp_path / "edited.mp4"
    assert s.video_export_task(out)().startswith(f"Exported {out} (4 of 4 frames")
    a, b = _frames(src), _frames(out)
    assert all(np.abs(x.astype(int) - y.astype(int)).mean(-1)[110:150, 120:180].mean() > 8 for x, y in zip(a, b))
    with pytest.raises(Exception, match="frames 0 to 3"):
        s.frame_task(9)


def test_phone_rotation_and_variable_frame_rate_are_kept(generator, runtime, quick, tmp_path: Path) -> None:  # noqa: ANN001
    """A portrait clip stored landscape with a display rotation comes out upright; irregular frame
    times stay irregular."""
    from fractions import Fraction

    import cv2

    from latentstudio.models.generator import to_uint8

    face = to_uint8(generator.synthesize(generator.seed_w(5, 0.7), size=256))[0]
    upright = np.full((320, 240, 3), 90, np.uint8)
    upright[60:240, 30:210] = cv2.resize(face, (180, 180), interpolation=cv2.INTER_AREA)
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # what the phone wrote: landscape
    src = tmp_path / "phone.mp4"
    c = av.open(str(src), "w")
    vs = c.add_stream("libx264", rate=10)
    vs.width, vs.height, vs.pix_fmt = stored.shape[1], stored.shape[0], "yuv420p"
    vs.time_base = vs.codec_context.time_base = Fraction(1, 1000)
    vs.set_display_rotation(-90)  # players turn it clockwise: upright
    times = [0, 100, 150, 400]  # ms: a variable frame rate
    for t in times:
        f = av.VideoFrame.from_ndarray(stored, format="rgb24")
        f.pts, f.time_base = t, Fraction(1, 1000)
        for p in vs.encode(f):
            c.mux(p)
    for p in vs.encode():
        c.mux(p)
    c.close()
    decoded = list(video.frames(src))
    assert [round(f.time * 1000) for f in decoded] == times
    assert decoded[0].rgb.shape == upright.shape  # rotated upright on decoding
    assert np.abs(decoded[0].rgb.astype(int) - upright).mean() < 6
    out = tmp_path / "out.mp4"
    rep = video.edit_clip(src, out, video.VideoEdit(), runtime=runtime, preset=QUICK)
    assert rep.edited == 4
    got = [round(f.time * 1000) for f in video.frames(out)]
    assert got == times and video.probe(out).height == 320
