"""Screenshots of the real window for the README (run under Xvfb; takes a few minutes on CPU).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshots/make_screenshots.py [--steps 80]

Uses the installed models and boundaries (``--e4e FOLDER`` adds the published e4e W directions
as imported ones), and the astronaut portrait from scikit-image. Writes docs/screenshots/*.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=80, help="inversion steps for the photo")
    ap.add_argument("--e4e", type=Path, help="folder with e4e age.npy / smile.npy / pose.npy")
    ap.add_argument("--only-repair", action="store_true", help="only the artifact-repair screenshot")
    ap.add_argument("--identity", nargs=2, type=Path, metavar=("PHOTO_CODE", "IDENTITY_CODE"),
                    help="only the identity panel: open PHOTO_CODE (an `invert` code whose photo is "
                         "still there), take the identity of IDENTITY_CODE, show it in the photo")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ls-shots-"))
    home = Path(os.environ.get("LATENTSTUDIO_HOME", "")).expanduser()
    if (home / "models").is_dir():  # a private home: our boundaries, the installed models
        (tmp / "models").symlink_to(home / "models")
        os.environ["LATENTSTUDIO_HOME"] = str(tmp)
    if args.e4e:
        _import_e4e(args.e4e, tmp / "boundaries")

    import torch
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    app = QApplication(sys.argv[:1])
    from latentstudio.gui.main_window import MainWindow
    from latentstudio.gui.session import EditorSession
    from latentstudio.project import Autosave

    session = EditorSession(device="cpu", autosave=Autosave(tmp / "autosave"))
    session.invert_steps = args.steps
    win = MainWindow(session, QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    win.confirm_close = False
    win.resize(1500, 940)
    win.show()
    session.start()

    def until(cond, timeout: float = 900.0) -> None:  # noqa: ANN001
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError("the app did not get there in time")
            app.processEvents()
            time.sleep(0.01)

    def settled() -> bool:
        f = session.last_frame
        return (session.doc is not None and f is not None and f.size == session.full_size
                and f.tag[1] == session.doc.state and win.canvas.painted_seq == f.seq
                and session.bridge.renderer.wait_idle(0))

    def shot(name: str) -> None:
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)
        screen = QApplication.primaryScreen()
        screen.grabWindow(win.winId()).save(str(OUT / name))
        print("wrote", OUT / name)

    until(settled)
    if args.identity:
        _identity_shot(args.identity, session, win, until, settled, shot)
        win.close()
        return 0
    if not args.only_repair:
        _main_shots(args, tmp, session, win, until, settled, shot)
    # artifact repair on a broken ψ = 1 sample, split view: before (left) / repaired (right)
    session.new_demo(700_013, 1.0)
    until(lambda: session.doc.source.seed == 700_013 and settled())
    session.repair_artifacts()
    until(lambda: session.task is None and session.doc.state.repair is not None and settled())
    win.act_split.trigger()
    shot("repair.png")
    win.close()
    return 0


def _main_shots(args, tmp, session, win, until, settled, shot) -> None:  # noqa: ANN001
    from PIL import Image

    rows = win.attributes.rows
    if "gender" in rows:
        rows["gender"].keep.click()  # conditional editing: the others must not move gender
    for name, value in (("smile", 1.6), ("age", 1.5)):
        if name in rows:
            rows[name].slider.setSliderDown(True)
            rows[name].slider.setValue(value)
            rows[name].slider.setSliderDown(False)
    until(settled)
    shot("main_window.png")

    photo = tmp / "astronaut.png"
    from skimage import data

    Image.fromarray(data.astronaut()).save(photo)
    win.open_path(photo)
    until(lambda: session.task is not None and win.progress.value() > args.steps // 3)
    shot("inversion_progress.png")
    until(lambda: session.doc is not None and session.doc.source.kind == "photo" and not session.core.guess_pending()
          and session.task is None and settled())
    for name, value in (("smile", 1.5), ("age", -1.0)):
        if name in win.attributes.rows:
            r = win.attributes.rows[name]
            r.slider.setSliderDown(True)
            r.slider.setValue(value)
            r.slider.setSliderDown(False)
    until(settled)
    win.act_split.trigger()
    shot("split_before_after.png")
    win.act_split.trigger()
    win.view_box.setCurrentIndex(1)  # pasted back into the photo
    until(settled)
    shot("pasted_back.png")
    win.attributes.advanced.setChecked(True)
    win.tabs.setCurrentIndex(0)
    shot("slot_ranges.png")
    win.attributes.advanced.setChecked(False)
    win.tabs.setCurrentIndex(1)
    shot("identity_panel.png")
    win.tabs.setCurrentIndex(0)
    win.view_box.setCurrentIndex(0)


def _identity_shot(codes, session, win, until, settled, shot) -> None:  # noqa: ANN001
    """Two real photos through the identity panel, shown pasted back into the first."""
    import time

    photo_code, identity_code = codes
    win.open_path(photo_code)
    until(lambda: session.doc is not None and session.doc.source.kind != "seed" and settled())
    win.tabs.setCurrentIndex(1)
    session.open_other(identity_code)
    until(lambda: session.doc.state.identity.other is not None and settled())
    win.view_box.setCurrentIndex(1)  # in the photo
    end = time.monotonic() + 5  # the full-size frame follows the preview
    until(lambda: time.monotonic() > end and settled())
    shot("identity_panel.png")


def _import_e4e(src: Path, dest: Path) -> None:
    """Published e4e W directions as "imported" boundaries in the private user folder."""
    if not src.is_dir():
        return
    import numpy as np

    from latentstudio.edit.boundaries import Boundary, save_index

    specs = {"e4e_age": ("Age (e4e)", "+ = older"), "e4e_smile": ("Smile (e4e)", "+ = more smiling"),
             "e4e_pose": ("Pose / yaw (e4e)", "+ = turns to the image's left")}
    found = [Boundary(name, np.load(src / f"{name[4:]}.npy"), label=label, sign=sign, source="imported")
             for name, (label, sign) in specs.items() if (src / f"{name[4:]}.npy").is_file()]
    if found:
        save_index(dest, found)


if __name__ == "__main__":
    sys.exit(main())
