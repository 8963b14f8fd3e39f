"""``latentstudio`` with no arguments: the desktop editor."""

from __future__ import annotations

import os
import sys
import traceback
from datetime import datetime
from collections.abc import Sequence
from pathlib import Path


def run_app(argv: Sequence[str] | None = None) -> int:
    """Start the editor; ``argv`` may hold one photo or project to open. Returns the exit code."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # faster CPU renders (torch allocator)
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from latentstudio.document import recoverable
    from latentstudio.gui.main_window import MainWindow
    from latentstudio.gui.session import EditorSession

    args = list(sys.argv[1:] if argv is None else argv)
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
        window.show_error("Unexpected error", f"{kind.__name__}: {exc}", details)

    sys.excepthook = excepthook
    window.show()
    session.start()

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
        recovered = answer == QMessageBox.StandardButton.Yes and session.recover(crashed[0])
        for old in crashed[1 if recovered else 0:]:  # older autosaves are not kept around
            old.unlink(missing_ok=True)

    QTimer.singleShot(0, after_start)
    return int(app.exec())
