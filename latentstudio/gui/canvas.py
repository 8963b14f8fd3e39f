"""The image view: zoom (wheel, around the cursor), pan (drag), fit, 1:1, before/after and split.

Images are shown at a *logical* size (1024² for the aligned face, the photo's size when pasted
back), so a 256² preview and the 1024² render it is replaced by cover the same area.
Hold ``\\`` to see the before image; the split view shows before | after with a movable divider.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPen, QWheelEvent
from PySide6.QtWidgets import QWidget

BEFORE_KEY = Qt.Key.Key_Backslash
MIN_ZOOM, MAX_ZOOM = 0.02, 32.0


def to_qimage(rgb: np.ndarray) -> QImage:
    """(H,W,3) uint8 → QImage sharing the array's memory (the array is kept alive on it), in
    Qt's native 32-bit layout so that painting it scaled needs no conversion each time."""
    h, w = rgb.shape[:2]
    a = np.empty((h, w, 4), np.uint8)
    a[..., 0], a[..., 1], a[..., 2], a[..., 3] = rgb[..., 2], rgb[..., 1], rgb[..., 0], 255  # B, G, R, A in memory
    img = QImage(a.data, w, h, 4 * w, QImage.Format.Format_RGB32)
    img._keep = a  # type: ignore[attr-defined] - QImage does not own the buffer
    return img


class Canvas(QWidget):
    """Shows the "after" image (and optionally "before"); emits ``painted(seq)`` when a new frame
    reaches the screen and ``zoomChanged(factor)``."""

    painted = Signal(int)
    zoomChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(320, 320)
        self.setMouseTracking(True)
        self._after: QImage | None = None
        self._before: QImage | None = None
        self._logical = (1024, 1024)
        self._seq = 0
        self._painted_seq = 0
        self._zoom = 1.0
        self._fit = True
        self._center = QPointF(512, 512)  # logical point shown at the widget centre
        self._drag_from: QPointF | None = None
        self._drag_split = False
        self.show_before = False
        self.split = False
        self.split_pos = 0.5  # fraction of the widget width
        self.message = ""

    # ----------------------------------------------------------------- content
    @property
    def frame_seq(self) -> int:
        return self._seq

    @property
    def painted_seq(self) -> int:
        return self._painted_seq

    def set_after(self, rgb: np.ndarray, seq: int, logical: tuple[int, int] | None = None) -> None:
        self._after = to_qimage(rgb)
        self._seq = seq
        if logical is not None:
            self._set_logical(logical)
        self.update()

    def set_before(self, rgb: np.ndarray | None) -> None:
        self._before = None if rgb is None else to_qimage(rgb)
        self.update()

    def clear(self, message: str = "") -> None:
        self._after = self._before = None
        self.message = message
        self.update()

    def set_message(self, text: str) -> None:
        self.message = text
        self.update()

    def _set_logical(self, size: tuple[int, int]) -> None:
        if size != self._logical:
            self._logical = size
            self._center = QPointF(size[0] / 2, size[1] / 2)
            self._fit = True

    # ----------------------------------------------------------------- zoom / pan
    @property
    def zoom(self) -> float:
        return self._fit_zoom() if self._fit else self._zoom

    def fit(self) -> None:
        self._fit = True
        self._center = QPointF(self._logical[0] / 2, self._logical[1] / 2)
        self.zoomChanged.emit(self.zoom)
        self.update()

    def actual_size(self) -> None:
        self.set_zoom(1.0 / self.devicePixelRatioF())

    def set_zoom(self, factor: float, anchor: QPointF | None = None) -> None:
        """Zoom to ``factor`` keeping the logical point under ``anchor`` (widget coords) still."""
        factor = min(MAX_ZOOM, max(MIN_ZOOM, factor))
        if anchor is not None:
            before = self._to_logical(anchor)
        self._zoom, self._fit = factor, False
        if anchor is not None:
            after = self._to_logical(anchor)
            self._center += before - after
        self.zoomChanged.emit(factor)
        self.update()

    def zoom_by(self, steps: float, anchor: QPointF | None = None) -> None:
        self.set_zoom(self.zoom * 1.25 ** steps, anchor)

    def _fit_zoom(self) -> float:
        w, h = self._logical
        return max(MIN_ZOOM, min((self.width() - 16) / w, (self.height() - 16) / h))

    def _to_logical(self, p: QPointF) -> QPointF:
        z = self.zoom
        return QPointF(self._center.x() + (p.x() - self.width() / 2) / z,
                       self._center.y() + (p.y() - self.height() / 2) / z)

    def _target(self) -> QRectF:
        """Where the logical image lands in widget coordinates."""
        z = self.zoom
        w, h = self._logical
        x0 = self.width() / 2 - self._center.x() * z
        y0 = self.height() / 2 - self._center.y() * z
        return QRectF(x0, y0, w * z, h * z)

    # ----------------------------------------------------------------- events
    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        self.zoom_by(event.angleDelta().y() / 120.0, event.position())

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            if self.split and abs(event.position().x() - self.split_pos * self.width()) < 8:
                self._drag_split = True
            else:
                self._drag_from = event.position()
                self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag_split:
            self.split_pos = min(1.0, max(0.0, event.position().x() / max(1, self.width())))
            self.update()
        elif self._drag_from is not None:
            d = event.position() - self._drag_from
            self._drag_from = event.position()
            if self._fit:
                self._zoom, self._fit = self.zoom, False
            self._center -= d / self.zoom
            self.update()
        elif self.split:
            near = abs(event.position().x() - self.split_pos * self.width()) < 8
            self.setCursor(Qt.CursorShape.SplitHCursor if near else Qt.CursorShape.ArrowCursor)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._drag_from = None
        self._drag_split = False
        self.unsetCursor()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.fit()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == BEFORE_KEY and not event.isAutoRepeat():
            self.show_before = True
            self.update()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == BEFORE_KEY and not event.isAutoRepeat():
            self.show_before = False
            self.update()
        else:
            super().keyReleaseEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: ANN001, N802
        if self._fit:
            self.zoomChanged.emit(self.zoom)
        super().resizeEvent(event)

    # ----------------------------------------------------------------- painting
    def paintEvent(self, event) -> None:  # noqa: ANN001, N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(38, 38, 40))
        target = self._target()
        z = self.zoom
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, z < 2.0)
        main = self._before if (self.show_before and self._before is not None) else self._after
        if main is None:
            p.setPen(QColor(200, 200, 200))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.message or "No image")
            p.end()
            return
        p.drawImage(target, main, QRectF(main.rect()))
        if self.split and self._before is not None and not self.show_before:
            x = self.split_pos * self.width()
            p.save()
            p.setClipRect(QRectF(0, 0, x, self.height()))
            p.drawImage(target, self._before, QRectF(self._before.rect()))
            p.restore()
            p.setPen(QPen(QColor(255, 255, 255, 200), 2))
            p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
            self._label(p, QPointF(x - 70, 22), "Before")
            self._label(p, QPointF(x + 12, 22), "After")
        elif self.show_before:
            self._label(p, QPointF(12, 22), "Before")
        if self.message:
            self._label(p, QPointF(12, self.height() - 12), self.message)
        p.end()
        if self._seq != self._painted_seq:
            self._painted_seq = self._seq
            self.painted.emit(self._seq)

    @staticmethod
    def _label(p: QPainter, at: QPointF, text: str) -> None:
        rect = p.fontMetrics().boundingRect(text).adjusted(-6, -3, 6, 3)
        rect.moveBottomLeft(at.toPoint())
        p.fillRect(rect, QColor(0, 0, 0, 150))
        p.setPen(QColor(240, 240, 240))
        p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
