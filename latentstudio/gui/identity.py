"""The identity panel: a second face (photo or generated) as identity or attribute source.

Two amounts go through the identity mapper: how much of the second face's identity and how much
of its attributes end up in the edited face. "Swap roles" flips which one the second face gives.
"De-identify" replaces the identity with a random one. Without the mapper every control is
disabled and says why.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from latentstudio.document import IdentityState
from latentstudio.gui.canvas import to_qimage

THUMB = 128


def _amount_slider(tip: str) -> QLabeledDoubleSlider:
    s = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
    s.setRange(0.0, 1.0)
    s.setDecimals(2)
    s.setSingleStep(0.05)
    s.setToolTip(tip)
    return s


class IdentityPanel(QWidget):
    loadPhotoRequested = Signal()
    generatedRequested = Signal(int)  # seed
    swapRequested = Signal()
    clearRequested = Signal()
    deidentifyRequested = Signal()
    refineRequested = Signal()
    amountEdited = Signal(str, float)  # "id_alpha" | "attr_alpha" | "deid_strength", value
    surroundingsToggled = Signal(bool)
    dragStarted = Signal()
    dragFinished = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.thumb = QLabel("No second face", alignment=Qt.AlignmentFlag.AlignCenter)
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setStyleSheet("border: 1px solid palette(mid);")
        self.name = QLabel("—")
        self.role = QLabel()
        self.load = QPushButton("Load photo…")
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=7)
        self.generated = QPushButton("Use generated face")
        self.swap = QPushButton("Swap roles")
        self.clear = QPushButton("Remove")
        self.id_amount = _amount_slider("How much of the second face's identity (0 = keep yours; evenly spaced "
                                        "by the face recogniser)")
        self.attr_amount = _amount_slider("How much of the second face's attributes "
                                          "(pose, expression, hair, lighting)")
        self.refine = QPushButton("Refine")
        self.refine.setToolTip("Optimise this blend against the real identity loss and the attribute "
                               "face's landmarks and surroundings (about 40 s on a 2-core CPU; Cancel stops it)")
        self.refined = QLabel()
        self.deid = QPushButton("De-identify")
        self.deid.setToolTip("Replace the identity with a random one, keeping pose and expression")
        self.deid_strength = _amount_slider("Strength of the de-identification")
        self.surroundings = QCheckBox("Keep the hair and background")
        self.surroundings.setToolTip("Show the new face in the attribute face's own hair, clothes and "
                                     "background (off: the result's own, which bring the other person's hair)")

        source = QGroupBox("Second face")
        g = QGridLayout(source)
        g.addWidget(self.thumb, 0, 0, 4, 1)
        g.addWidget(self.name, 0, 1, 1, 2)
        g.addWidget(self.role, 1, 1, 1, 2)
        g.addWidget(self.load, 2, 1, 1, 2)
        g.addWidget(self.seed, 3, 1)
        g.addWidget(self.generated, 3, 2)
        row = QHBoxLayout()
        row.addWidget(self.swap)
        row.addWidget(self.clear)
        g.addLayout(row, 4, 0, 1, 3)
        blend = QGroupBox("Blend through the identity mapper")
        f = QFormLayout(blend)
        f.addRow("Identity amount", self.id_amount)
        f.addRow("Attribute amount", self.attr_amount)
        f.addRow(self.refine, self.refined)
        anon = QGroupBox("Anonymise")
        fa = QFormLayout(anon)
        fa.addRow(self.deid)
        fa.addRow("Strength", self.deid_strength)
        self.reason = QLabel()
        self.reason.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.reason)
        lay.addWidget(source)
        lay.addWidget(blend)
        lay.addWidget(anon)
        lay.addWidget(self.surroundings)
        lay.addStretch(1)

        self.load.clicked.connect(self.loadPhotoRequested)
        self.generated.clicked.connect(lambda: self.generatedRequested.emit(self.seed.value()))
        self.swap.clicked.connect(self.swapRequested)
        self.clear.clicked.connect(self.clearRequested)
        self.deid.clicked.connect(self.deidentifyRequested)
        self.refine.clicked.connect(self.refineRequested)
        self.surroundings.toggled.connect(self.surroundingsToggled)
        for key, s in (("id_alpha", self.id_amount), ("attr_alpha", self.attr_amount),
                       ("deid_strength", self.deid_strength)):
            s.valueChanged.connect(lambda v, k=key: self.amountEdited.emit(k, float(v)))
            s.sliderPressed.connect(self.dragStarted)
            s.sliderReleased.connect(self.dragFinished)
        self._available = True
        self.show_state(IdentityState())

    def set_unavailable(self, reason: str | None) -> None:
        """Disable everything with ``reason`` as the tooltip (None enables the panel)."""
        self._available = reason is None
        for w in (self.load, self.seed, self.generated, self.swap, self.clear, self.id_amount,
                  self.attr_amount, self.refine, self.deid, self.deid_strength, self.surroundings):
            w.setEnabled(reason is None)
            w.setToolTip(reason or w.toolTip())
        self.reason.setText("" if reason is None else f"<i>{reason}</i>")
        self.reason.setVisible(reason is not None)

    def show_state(self, ident: IdentityState) -> None:
        has_other = ident.other is not None
        self.name.setText(ident.other.label if has_other else "—")
        self.role.setText(f"gives: <b>{ident.role}</b>" if has_other else "")
        for key, s in (("id_alpha", self.id_amount), ("attr_alpha", self.attr_amount),
                       ("deid_strength", self.deid_strength)):
            v = float(getattr(ident, key))
            if abs(s.value() - v) > 1e-9:
                with QSignalBlocker(s):
                    s.setValue(v)
        if self.surroundings.isChecked() != ident.surroundings:
            with QSignalBlocker(self.surroundings):
                self.surroundings.setChecked(ident.surroundings)
        self.refined.setText(f"refined ({ident.refined.steps} steps)" if ident.refined is not None else "")
        if self._available:
            for w in (self.swap, self.clear, self.id_amount, self.attr_amount):
                w.setEnabled(has_other)
            self.refine.setEnabled(has_other and bool(ident.id_alpha or ident.attr_alpha)
                                   and not ident.deid_strength)

    def show_thumbnail(self, rgb: np.ndarray | None) -> None:
        if rgb is None:
            self.thumb.setPixmap(QPixmap())
            self.thumb.setText("No second face")
            return
        pix = QPixmap.fromImage(to_qimage(rgb)).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                                      Qt.TransformationMode.SmoothTransformation)
        self.thumb.setPixmap(pix)
