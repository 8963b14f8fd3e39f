"""``latentstudio`` with no arguments: the desktop editor."""

from __future__ import annotations

import gc
import os
import sys
import traceback
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path


def run_app(argv: Sequence[str] | None = None) -> int:
    """Start the editor; ``argv`` may hold one photo or project to open. Returns the exit code."""
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from latentstudio.gui.main_window import MainWindow
    from latentstudio.gui.session import EditorSession
    from latentstudio.project import recoverable
    from latentstudio.safety import explain

    args = list(argv or [])
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "latentstudio"])
    app.setApplicationName("LatentStudio")
    app.setOrganizationName("LatentStudio")
    app.setDesktopFileName("latentstudio")
    settings = QSettings()
    device = str(settings.value("device", "auto"))
    session = EditorSession(device=device if device in ("auto", "cpu", "cuda") else "auto")
    window = MainWindow(session, settings)

    def excepthook(kind, exc, tb) -> None:  # noqa: ANN001 - a bug must not take the work with it
        details = "".join(traceback.format_exception(kind, exc, tb))
        sys.stderr.write(details)
        window.show_error("Unexpected error", explain(exc).message, details)

    sys.excepthook = excepthook
    window.show()
    session.start()
    gc.freeze()  # the long-lived startup objects (torch, Qt) leave the collector's scans: fewer UI pauses

    def after_start() -> None:
        if args:
            window.open_path(Path(args[0]))
            return
        crashed = recoverable()
        if not crashed:
            return
        when = datetime.fromtimestamp(crashed[0].stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        answer = QMessageBox.question(
            window, "Recover unsaved work?",
            f"LatentStudio did not close properly last time. Recover the session autosaved at {when}?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Discard)
        recover = answer == QMessageBox.StandardButton.Yes
        if recover:
            session.recover(crashed[0])  # deleted once it is open
        for old in crashed[1 if recover else 0:]:  # older autosaves are not kept around
            old.unlink(missing_ok=True)

    QTimer.singleShot(0, after_start)
    smoke = os.environ.get("LATENTSTUDIO_SMOKE_QUIT_MS")  # packaging check: start, then quit
    if smoke:
        shot = os.environ.get("LATENTSTUDIO_SMOKE_SHOT")  # … saving a screenshot first

        def quit_now() -> None:
            if shot:
                window.grab().save(shot)
            window.confirm_close = False
            window.close()

        QTimer.singleShot(int(smoke), quit_now)
    return int(app.exec())
