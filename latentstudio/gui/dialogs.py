"""Dialogs: errors with their cause (and how exceptions are worded for them), the face picker."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QListWidget, QListWidgetItem, QMessageBox, QVBoxLayout, QWidget

from latentstudio.gui.canvas import to_qimage


def show_error(parent: QWidget, title: str, message: str, details: str = "") -> QMessageBox:
    """A window-modal error box with the cause; non-blocking (``open``), returned for tests."""
    box = QMessageBox(QMessageBox.Icon.Critical, title, title, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("errorDialog")
    box.setInformativeText(message)
    if details:
        box.setDetailedText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def face_crop(rgb: np.ndarray, box: tuple[float, float, float, float], size: int = 112) -> np.ndarray:
    """A square thumbnail around a face box (with some margin): (size,size,3) uint8."""
    import cv2

    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 0.8
    h, w = rgb.shape[:2]
    a, b = int(max(0, cx - half)), int(max(0, cy - half))
    c, d = int(min(w, cx + half)), int(min(h, cy + half))
    crop = rgb[b:d, a:c] if d > b and c > a else rgb
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)


class FacePicker(QDialog):
    """Shows every detected face; the chosen index is ``chosen`` after ``accept``."""

    def __init__(self, rgb: np.ndarray, faces: list[Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Which face?")
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(112, 112))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setMinimumSize(520, 200)
        for i, f in enumerate(faces):
            icon = QIcon(QPixmap.fromImage(to_qimage(face_crop(rgb, f.box))))
            tag = "" if f.confident else " (unsure)"
            item = QListWidgetItem(icon, f"Face {i + 1}{tag}")
            item.setToolTip(f"detector score {f.score:.2f}, eyes {f.eye_distance:.0f} px apart")
            self.list.addItem(item)
        self.list.setCurrentRow(0)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.list.itemDoubleClicked.connect(lambda _: self.accept())
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"{len(faces)} faces were found. Pick the one to edit:"))
        lay.addWidget(self.list)
        lay.addWidget(buttons)

    @property
    def chosen(self) -> int:
        return max(0, self.list.currentRow())


def describe_error(exc: BaseException, details: str) -> tuple[str, str, str]:
    """(title, cause, details) for an error dialog: the same words as the command line
    (``safety.explain``)."""
    from latentstudio.safety import explain

    told = explain(exc)
    text = told.message
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return "Out of memory", (f"{text}\n\nClose other programs, or switch the render device "
                                 "to CPU (View ▸ Render device)."), details
    return told.title, text, details or (repr(exc) if told.internal else "")
