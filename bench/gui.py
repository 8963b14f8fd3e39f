"""Slider-event-to-pixels latency of the real editor window (CPU by default).

    QT_QPA_PLATFORM=offscreen python bench/gui.py [--threads 2] [--append bench/RESULTS.md]
                                                  [--identity FACE.npz OTHER.npz [--own-surroundings]]

Mouse events go to the real slider widget of the main window (press on the handle, moves,
release). A move's latency is the time from the event to the canvas painting the first frame
rendered from a request made at or after it, so during a continuous drag it includes waiting
for the render that was already running. Measured:

* isolated preview: one move at a time with an idle renderer (pure render + paint);
* continuous drag: moves at 30 Hz for ``--drag-seconds`` (what a user feels);
* release → full-size frame;
* UI thread: the longest slider-event handler and the longest stall of a 5 ms heartbeat timer
  during the drag (rendering runs on the render thread; the UI thread only posts requests and
  paints);
* peak resident memory of the process.

``--identity FACE OTHER``: the window opened on the code file FACE with OTHER as the identity
panel's second face, and the panel's attribute-amount slider dragged instead (each new amount
needs the attribute lock, which a drag's previews borrow from the nearest amount measured); every
frame shows the result in the attribute face's surroundings (``identity.surroundings``), or, with
``--own-surroundings``, the result's code alone (the panel's "Keep the hair and background" off).
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
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the 2-core target)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--isolated", type=int, default=15, help="isolated preview samples")
    ap.add_argument("--drag-seconds", type=float, default=4.0)
    ap.add_argument("--releases", type=int, default=5, help="release → full-size samples")
    ap.add_argument("--append", type=Path, help="append a '## GUI (issue 6)' section to this file")
    ap.add_argument("--own-surroundings", action="store_true",
                    help="with --identity: frames of the result's code alone (not in the face's surroundings)")
    ap.add_argument("--identity", nargs=2, type=Path, metavar=("FACE", "OTHER"),
                    help="drag the identity panel's attribute amount instead: FACE (a code file) open, "
                         "OTHER (a code file) as the second face")
    args = ap.parse_args()

    import numpy as np
    import torch
    from PySide6.QtCore import QElapsedTimer, QEvent, QPointF, QSettings, Qt, QTimer
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication, QStyle

    torch.set_num_threads(args.threads)
    app = QApplication(sys.argv[:1])
    from latentstudio.gui.main_window import MainWindow
    from latentstudio.gui.session import EditorSession
    from latentstudio.project import Autosave

    tmp = Path(tempfile.mkdtemp(prefix="ls-bench-"))
    session = EditorSession(device=args.device, autosave=Autosave(tmp / "autosave"))
    win = MainWindow(session, QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    win.confirm_close = False
    win.resize(1400, 900)
    win.show()
    session.start()

    clock = QElapsedTimer()
    clock.start()
    now = lambda: clock.nsecsElapsed() / 1e6  # noqa: E731 - ms

    def pump(ms: float) -> None:
        end = now() + ms
        while now() < end:
            app.processEvents()
            time.sleep(0.0005)

    def until(cond, timeout_ms: float = 600_000) -> None:  # noqa: ANN001
        end = now() + timeout_ms
        while not cond():
            if now() > end:
                raise TimeoutError("timed out")
            app.processEvents()
            time.sleep(0.0005)

    def settled() -> bool:
        f = session.last_frame
        return (session.doc is not None and f is not None and f.size == session.full_size
                and f.tag[1] == session.doc.state and win.canvas.painted_seq == f.seq
                and session.bridge.renderer.wait_idle(0))

    until(settled)
    if args.identity:  # the identity panel's attribute amount, between two faces' codes
        face, other = args.identity
        first = session.doc
        session.open_path(face)
        until(lambda: session.doc is not first and settled())
        session.open_other(other)
        until(lambda: session.doc.state.identity.other is not None and settled())
        if args.own_surroundings:
            session.set_identity("The result's own hair and background", surroundings=False)
            until(lambda: not session.doc.state.identity.surroundings and settled())
        shown = "own surroundings" if args.own_surroundings else "in its surroundings"
        name = f"identity attribute amount ({face.stem} ← {other.stem}, {shown})"
        inner = win.identity.attr_amount._slider
    else:
        name = next(iter(win.attributes.rows))
        inner = win.attributes.rows[name].slider._slider  # the QDoubleSlider the user actually drags
    painted: list[tuple[int, float]] = []
    win.canvas.painted.connect(lambda seq: painted.append((seq, now())))

    # heartbeat: how long the UI thread is ever unavailable
    beats: list[float] = []
    heart = QTimer(timerType=Qt.TimerType.PreciseTimer, interval=5)
    heart.timeout.connect(lambda: beats.append(now()))
    handler_ms: list[float] = []

    def handle_pos() -> QPointF:
        opt = inner._styleOption
        return QPointF(inner.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                                    QStyle.SubControl.SC_SliderHandle, inner).center())

    def mouse(kind: QEvent.Type, pos: QPointF) -> float:
        """Send one mouse event to the slider; returns when it was sent (ms)."""
        buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else Qt.MouseButton.LeftButton
        ev = QMouseEvent(kind, pos, inner.mapToGlobal(pos), Qt.MouseButton.LeftButton, buttons,
                         Qt.KeyboardModifier.NoModifier)
        t = now()
        QApplication.sendEvent(inner, ev)
        handler_ms.append(now() - t)
        return t

    def move_once(pos: QPointF, dx: float) -> tuple[float, int | None, QPointF]:
        """One move; the request it caused (None when the value did not change: no render)."""
        p = QPointF(pos.x() + dx, pos.y())
        before = session.doc.state
        t = mouse(QEvent.Type.MouseMove, p)
        changed = session.doc.state != before
        return t, session.bridge.renderer.last_seq if changed else None, p

    def latency(t: float, seq: int) -> float | None:
        for s, tp in painted:
            if s >= seq and tp >= t:
                return tp - t
        return None

    # --- isolated previews
    iso = []
    pos = handle_pos()
    mouse(QEvent.Type.MouseButtonPress, pos)
    direction = 1.0
    for i in range(args.isolated):
        if i % 5 == 4:
            direction = -direction
        t, seq, pos = move_once(pos, 4.0 * direction)
        if seq is None:
            continue
        until(lambda: latency(t, seq) is not None)
        iso.append(latency(t, seq))
        pump(30)
    mouse(QEvent.Type.MouseButtonRelease, pos)
    until(settled)

    # --- continuous drag at 30 Hz
    painted.clear()
    handler_ms.clear()
    pos = handle_pos()
    mouse(QEvent.Type.MouseButtonPress, pos)
    heart.start()
    events = []
    n = int(args.drag_seconds * 30)
    for i in range(n):
        step = 2.0 if (i // 20) % 2 == 0 else -2.0  # back and forth, never against the end stops
        events.append(move_once(pos, step)[:2])
        pos = QPointF(pos.x() + step, pos.y())
        pump(1000 / 30)
    last = next((e for e in reversed(events) if e[1] is not None), None)
    if last is not None:  # the hand rests before letting go: the last preview lands first
        until(lambda: latency(*last) is not None)
    mouse(QEvent.Type.MouseButtonRelease, pos)
    until(settled)
    heart.stop()
    drag = [latency(t, s) for t, s in events if s is not None]
    drag = [d for d in drag if d is not None]
    skipped_events = sum(s is None for _, s in events)
    gaps = np.diff(beats) - 5.0 if len(beats) > 1 else np.zeros(1)
    drag_handler = list(handler_ms)

    # --- release → full-size frame
    full = []
    for i in range(args.releases):
        pos = handle_pos()
        mouse(QEvent.Type.MouseButtonPress, pos)
        move_once(pos, 8.0 if i % 2 else -8.0)
        until(lambda: session.bridge.renderer.wait_idle(0))
        pump(50)
        painted.clear()
        t = mouse(QEvent.Type.MouseButtonRelease, QPointF(pos.x() + (8.0 if i % 2 else -8.0), pos.y()))
        seq = session.bridge.renderer.last_seq
        until(settled)
        full.append(latency(t, seq))

    stats = session.bridge.renderer.stats
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    sizes = np.array(stats.sizes)
    secs = np.array(stats.seconds) * 1000
    prev_ms, full_ms = secs[sizes == session.preview_size], secs[sizes == session.full_size]
    pct = lambda a, q: float(np.percentile(a, q)) if len(a) else float("nan")  # noqa: E731
    load = os.getloadavg()
    title = f"### {args.device}, {args.threads} torch thread{'s' if args.threads > 1 else ''}"
    lines = [
        title,
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}: {os.cpu_count()} CPUs visible, load average "
        f"{load[0]:.1f}/{load[1]:.1f} during the run (the machine is shared with other jobs), Python "
        f"{platform.python_version()}; slider '{name}' of the real main window; preview "
        f"{session.preview_size}², full {session.full_size}².",
        "",
        "| measure | median | p95 | max | n |",
        "|---|---|---|---|---|",
        f"| isolated preview: move → pixels (ms) | {pct(iso, 50):.0f} | {pct(iso, 95):.0f} | {max(iso):.0f} | {len(iso)} |",
        f"| 30 Hz drag: move → pixels (ms) | {pct(drag, 50):.0f} | {pct(drag, 95):.0f} | {max(drag):.0f} | {len(drag)} |",
        f"| release → full-size pixels (ms) | {pct(full, 50):.0f} | {pct(full, 95):.0f} | {max(full):.0f} | {len(full)} |",
        f"| render thread: one {session.preview_size}² render (ms) | {pct(prev_ms, 50):.0f} | {pct(prev_ms, 95):.0f} | {prev_ms.max():.0f} | {len(prev_ms)} |",
        f"| render thread: one {session.full_size}² render (ms) | {pct(full_ms, 50):.0f} | {pct(full_ms, 95):.0f} | {full_ms.max():.0f} | {len(full_ms)} |",
        f"| UI thread: slider event handler (ms) | {pct(drag_handler, 50):.2f} | {pct(drag_handler, 95):.2f} | {max(drag_handler):.2f} | {len(drag_handler)} |",
        f"| UI thread: heartbeat stall during the drag (ms) | {pct(gaps, 50):.1f} | {pct(gaps, 95):.1f} | {gaps.max():.1f} | {len(gaps)} |",
        "",
        f"Peak resident memory: {rss_gb:.2f} GB. Drag: {n} move events ({skipped_events} did not "
        f"change the value and are not counted); whole run: {stats.rendered} renders, "
        f"{stats.skipped} requests superseded before they started, {stats.dropped} stale results "
        f"dropped, {stats.interrupted} renders abandoned for a newer preview. Finished renders by size: "
        + ", ".join(f"{v}²: {int((sizes == v).sum())}" for v in sorted(set(sizes.tolist()))) + ".",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.append:
        _append(args.append, text)
    session.shutdown()
    win.close()
    return 0


HEADER = "## GUI (issue 6)"
INTRO = f"""{HEADER}

`python bench/gui.py --threads N --append bench/RESULTS.md`: mouse events are sent to the real
slider widget of the main window; a move's latency runs from the event to the canvas painting
the first frame rendered from a request made at or after it (so in a drag it includes waiting
for the render already running). The heartbeat is a 5 ms timer on the UI thread; its stall is
how late it fired. Targets (2 CPU cores): preview median ≤ 80 ms, p95 ≤ 150 ms; UI thread never
blocked > 16 ms during a drag; peak memory ≤ 2.5 GB.
"""


def _append(path: Path, subsection: str) -> None:
    """Put ``subsection`` (### …) into the '## GUI (issue 6)' section, replacing one with the same
    title; every other section of the file stays as it is."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    head, sep, rest = text.partition(HEADER)
    nxt = rest.find("\n## ")
    body, tail = (rest[:nxt], rest[nxt:]) if nxt >= 0 else (rest, "")
    title = subsection.splitlines()[0]
    subs = [s for s in ("\n" + body).split("\n### ")[1:] if not ("### " + s).startswith(title)] if sep else []
    parts = ["### " + s.strip("\n") for s in subs] + [subsection.strip("\n")]
    section = INTRO.rstrip("\n") + "\n\n" + "\n\n".join(parts) + "\n"
    out = (head.rstrip("\n") + "\n\n" if head.strip() else "") + section + tail
    path.write_text(out, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
