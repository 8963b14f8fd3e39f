"""The attribute panel: one row per direction (slider + value box, keep lock, reset, slot range).

Rows are generated from the document's directions (shipped boundaries, PCA, user imports),
grouped by where they come from. The panel only emits intents; the session turns them into
undoable edits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider, QLabeledRangeSlider

from latentstudio.document import NUM_SLOTS, EditState

GROUPS = (("trained", "Attributes"), ("imported", "Imported"), ("user", "User directions"),
          ("pca", "PCA (unsupervised)"))


class SliderRow(QWidget):
    """One direction: label, slider with value box, keep toggle, reset; slot range below."""

    valueEdited = Signal(str, float)
    dragStarted = Signal(str)
    dragFinished = Signal(str)
    keepToggled = Signal(str, bool)
    layersEdited = Signal(str, object)  # (first, last) inclusive
    resetRequested = Signal(str)

    def __init__(self, direction: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = direction.name
        self.default_layers = tuple(direction.layers)
        lo, hi = direction.range
        self.label = QLabel(direction.label)
        tip = [direction.label]
        if getattr(direction, "sign", ""):
            tip.append(direction.sign)
        if getattr(direction, "val_accuracy", None) is not None:
            tip.append(f"validation accuracy {direction.val_accuracy:.0%}")
        self.label.setToolTip("\n".join(tip))
        self.slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(lo, hi)
        self.slider.setDecimals(2)
        self.slider.setSingleStep((hi - lo) / 60)
        self.slider.setValue(0.0)
        self.slider.setToolTip(f"{direction.label}: {lo:g} … {hi:g}")
        self.keep = QToolButton(text="Keep", checkable=True)
        self.keep.setStyleSheet("QToolButton:checked { background: palette(highlight); "
                                "color: palette(highlighted-text); border-radius: 3px; }")
        self.keep.setToolTip("Keep this attribute fixed while other sliders move (conditional editing)")
        self.reset = QToolButton(text="↺")
        self.reset.setToolTip(f"Reset {direction.label}")
        self.slots = QLabeledRangeSlider(Qt.Orientation.Horizontal)
        self.slots.setRange(0, NUM_SLOTS - 1)
        self.slots.setValue(self.default_layers)
        self.slots.setHandleLabelPosition(QLabeledRangeSlider.LabelPosition.NoLabel)
        self.slots.setEdgeLabelMode(QLabeledRangeSlider.EdgeLabelMode.LabelIsValue)  # "first … last"
        self.slots.setToolTip("W+ slots this direction is applied to (coarse 0–6: pose, shape; "
                              "middle 7–12: expression, eyes; fine 13–22: colour, texture)")
        self.slots.setVisible(False)

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 2, 0, 2)
        grid.addWidget(self.label, 0, 0)
        grid.addWidget(self.slider, 0, 1)
        grid.addWidget(self.keep, 0, 2)
        grid.addWidget(self.reset, 0, 3)
        self.slots_label = QLabel("slots")
        self.slots_label.setVisible(False)
        grid.addWidget(self.slots_label, 1, 0, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.slots, 1, 1, 1, 3)
        grid.setColumnStretch(1, 1)
        self.label.setMinimumWidth(90)

        self.slider.valueChanged.connect(lambda v: self.valueEdited.emit(self.name, float(v)))
        for w in (self.slider, self.slots):
            w.sliderPressed.connect(lambda: self.dragStarted.emit(self.name))
            w.sliderReleased.connect(lambda: self.dragFinished.emit(self.name))
            # a press on the handle moves the value *before* sliderPressed: start the drag first
            inner = w.findChild(QSlider)
            if inner is not None:
                inner.installEventFilter(self)
        self.slots.valueChanged.connect(lambda v: self.layersEdited.emit(self.name, tuple(int(x) for x in v)))
        self.keep.toggled.connect(lambda on: self.keepToggled.emit(self.name, on))
        self.reset.clicked.connect(lambda: self.resetRequested.emit(self.name))

    def show_slots(self, on: bool) -> None:
        self.slots.setVisible(on)
        self.slots_label.setVisible(on)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.MouseButtonPress:
            self.dragStarted.emit(self.name)
        elif event.type() == QEvent.Type.MouseButtonRelease:
            self.dragFinished.emit(self.name)
        return False

    def show_state(self, state: EditState) -> None:
        """Reflect ``state`` without emitting edits."""
        value = state.value(self.name)
        if abs(self.slider.value() - value) > 1e-9:
            with QSignalBlocker(self.slider):
                self.slider.setValue(value)
        if self.keep.isChecked() != (self.name in state.keep):
            with QSignalBlocker(self.keep):
                self.keep.setChecked(self.name in state.keep)
        layers = tuple(state.layers.get(self.name, self.default_layers))
        if tuple(int(x) for x in self.slots.value()) != layers:
            with QSignalBlocker(self.slots):
                self.slots.setValue(layers)
        moved = value != 0.0 or self.name in state.layers
        if self.label.font().bold() != moved:
            font = self.label.font()
            font.setBold(moved)
            self.label.setFont(font)


class AttributePanel(QWidget):
    """All slider rows, a filter, "Reset all" and the advanced slot-range switch."""

    valueEdited = Signal(str, float)
    dragStarted = Signal(str)
    dragFinished = Signal(str)
    keepToggled = Signal(str, bool)
    layersEdited = Signal(str, object)
    resetRequested = Signal(str)
    resetAllRequested = Signal()
    importRequested = Signal()
    repairRequested = Signal(float)  # the strength

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: dict[str, SliderRow] = {}
        self.filter = QLineEdit(placeholderText="Filter sliders…", clearButtonEnabled=True)
        self.advanced = QCheckBox("Slot ranges")
        self.advanced.setToolTip("Show a W+ slot range under every slider (advanced)")
        self.reset_all = QPushButton("Reset all")
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Add a direction (.npy/.pt in W space) or PCA components (.npz)")
        self.repair = QPushButton("Repair artifacts")
        self.repair.setToolTip("Move the face's detail (W+ slots 4–22) off the artifact side until it "
                               "looks clean (melted features, holes, smears), keeping the head pose, "
                               "glasses, gender, age, hair colour and beard. Only the face changes: the "
                               "hair, headwear and background stay as they were. A face that already "
                               "looks clean is left alone")
        self.repair.setEnabled(False)
        self._repair_tip = self.repair.toolTip()
        self.repair_strength = QDoubleSpinBox(minimum=0.5, maximum=6.0, singleStep=0.5, value=3.0, decimals=1)
        self.repair_strength.setPrefix("strength ")
        self.repair_strength.setToolTip("How far the repair may move the face at most (it stops earlier "
                                        "once the face looks clean)")
        self.repair_note = QLabel()
        self.repair_note.setWordWrap(True)
        self.repair_note.setVisible(False)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.advanced)
        bottom = QHBoxLayout()
        bottom.addWidget(self.import_button)
        bottom.addWidget(self.repair)
        bottom.addWidget(self.repair_strength)
        bottom.addStretch(1)
        bottom.addWidget(self.reset_all)
        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(4, 4, 4, 4)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(self.body)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.note)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.repair_note)
        lay.addLayout(bottom)
        self.filter.textChanged.connect(self._apply_filter)
        self.advanced.toggled.connect(self._show_slots)
        self.reset_all.clicked.connect(self.resetAllRequested)
        self.import_button.clicked.connect(self.importRequested)
        self.repair.clicked.connect(lambda: self.repairRequested.emit(self.repair_strength.value()))

    def build(self, directions: Iterable[Any], note: str | None = None) -> None:
        """(Re)create the rows for ``directions``; ``note`` explains an empty or partial panel."""
        while self.body_layout.count():
            item = self.body_layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.rows.clear()
        dirs = list(directions)
        for source, title in GROUPS:
            group = [d for d in dirs if getattr(d, "source", "user") == source
                     or (source == "user" and getattr(d, "source", "user") not in dict(GROUPS))]
            if not group:
                continue
            header = QLabel(f"<b>{title}</b>")
            self.body_layout.addWidget(header)
            for d in group:
                row = SliderRow(d)
                row.show_slots(self.advanced.isChecked())
                for sig in ("valueEdited", "dragStarted", "dragFinished", "keepToggled",
                            "layersEdited", "resetRequested"):
                    getattr(row, sig).connect(getattr(self, sig))
                self.rows[d.name] = row
                self.body_layout.addWidget(row)
        self.body_layout.addStretch(1)
        text = note or ("" if dirs else "No editing directions installed.")
        self.note.setText(text)
        self.note.setVisible(bool(text))
        self._apply_filter(self.filter.text())

    def set_repair_available(self, reason: str | None) -> None:
        """Enable "Repair artifacts"; ``reason`` (why not) becomes the tooltip when disabled."""
        self.repair.setEnabled(reason is None)
        self.repair_strength.setEnabled(reason is None)
        self.repair.setToolTip(self._repair_tip if reason is None else f"Unavailable: {reason}")

    def show_state(self, state: EditState) -> None:
        for row in self.rows.values():
            row.show_state(state)
        r = state.repair
        if r is not None:
            self.repair_note.setText(f"Artifact repair applied: {r.alpha:+.2f} along the quality direction "
                                     f"(score {r.score_before:+.2f} → {r.score_after:+.2f}). "
                                     "Undo or “Reset all” removes it.")
        self.repair_note.setVisible(r is not None)

    def _show_slots(self, on: bool) -> None:
        for row in self.rows.values():
            row.show_slots(on)

    def _apply_filter(self, text: str) -> None:
        t = text.strip().lower()
        for name, row in self.rows.items():
            row.setVisible(not t or t in name.lower() or t in row.label.text().lower())
