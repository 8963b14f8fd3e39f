"""The main window: canvas in the middle, attribute and identity panels and history in docks.

Widgets and wiring only; the work happens in ``EditorSession`` and the headless core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QStyle,
    QTabWidget,
    QWidget,
)

from latentstudio.codes import CODE_SUFFIXES
from latentstudio.gui.canvas import BEFORE_KEY, Canvas
from latentstudio.gui.dialogs import FacePicker, show_error
from latentstudio.gui.history import HistoryView, update_actions
from latentstudio.gui.identity import IdentityPanel
from latentstudio.gui.session import IMAGE_SUFFIXES, EditorSession, PendingPhoto
from latentstudio.session import VIDEO_SUFFIXES
from latentstudio.progress import Progress
from latentstudio.project import PROJECT_SUFFIX
from latentstudio.render import Frame

PHOTO_FILTER = "Photos (*.jpg *.jpeg *.png *.webp *.bmp *.tif *.tiff)"
VIDEO_FILTER = f"Videos ({' '.join('*' + s for s in sorted(VIDEO_SUFFIXES))})"
CODE_FILTER = f"Latent codes ({' '.join('*' + s for s in sorted(CODE_SUFFIXES))})"
PRESETS = (("quick", "Quick (from the encoder's guess)"), ("fast", "Fast (CPU friendly)"), ("quality", "Quality (slow on CPU)"))  # inversion presets
PROJECT_FILTER = f"LatentStudio projects (*{PROJECT_SUFFIX})"
EXPORT_FILTERS = {"PNG image (*.png)": ".png", "JPEG image (*.jpg *.jpeg)": ".jpg", "WebP image (*.webp)": ".webp"}
MAX_RECENT = 10


class MainWindow(QMainWindow):
    def __init__(self, session: EditorSession, settings: QSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from latentstudio.gui.sliders import AttributePanel

        self.session = session
        session.setParent(self)  # lives and dies with the window
        self.settings = settings or QSettings("LatentStudio", "LatentStudio")
        self.confirm_close = True  # ask about unsaved changes (tests turn it off)
        self.errors: list[tuple[str, str]] = []  # every error shown, for the status log and tests
        self.setWindowTitle("LatentStudio")
        self.setAcceptDrops(True)
        self.resize(1360, 880)

        self.canvas = Canvas()
        self.canvas.set_message("Loading the generator…")
        self.setCentralWidget(self.canvas)
        self.attributes = AttributePanel()
        self.identity = IdentityPanel()
        tabs = QTabWidget()
        tabs.addTab(self.attributes, "Attributes")
        tabs.addTab(self.identity, "Identity")
        self.tabs = tabs
        edit_dock = QDockWidget("Edit", self, objectName="editDock")
        edit_dock.setWidget(tabs)
        edit_dock.setMinimumWidth(380)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, edit_dock)
        self.history = HistoryView(lambda: session.history, session.go_to)
        hist_dock = QDockWidget("History", self, objectName="historyDock")
        hist_dock.setWidget(self.history)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, hist_dock)
        self.docks = (edit_dock, hist_dock)

        self.progress = QProgressBar(maximumWidth=240, visible=False)
        self.cancel_button = QPushButton("Cancel", visible=False)
        self.cancel_button.clicked.connect(session.cancel_task)
        self.info = QLabel()
        self.statusBar().addPermanentWidget(self.info)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)

        self._make_actions()
        self._make_menus()
        self._connect()
        self.identity.set_unavailable(session.identity_reason())
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)

    # ================================================================= actions & menus
    def _action(self, text: str, slot: Any, shortcut: Any = None, tip: str = "",
                checkable: bool = False) -> QAction:
        a = QAction(text, self, checkable=checkable)
        if shortcut is not None:
            a.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(tip)
        a.triggered.connect(slot)
        return a

    def _make_actions(self) -> None:
        S = QKeySequence.StandardKey
        self.act_open = self._action("&Open…", self.open_dialog, S.Open, "Open a photo or a project")
        self.act_demo = self._action("New &demo face", lambda: self.session.new_demo(), None,
                                     "Start again from the built-in generated face")
        self.act_save = self._action("&Save project", self.save, S.Save)
        self.act_save_as = self._action("Save project &as…", self.save_as, S.SaveAs)
        self.act_export = self._action("&Export face crop…", lambda: self.export_dialog("aligned"),
                                       "Ctrl+E", "Save the edited aligned face (1024²)")
        self.act_export_photo = self._action("Export into &photo…", lambda: self.export_dialog("photo"),
                                             "Ctrl+Shift+E", "Paste the edit back into the photo at full size")
        self.act_export_code = self._action("Export &code…", self.export_code_dialog, None,
                                            "Save the edited W+ code (.npz) for the command line")
        self.act_open_video = self._action("Open &video…", self.open_video_dialog, None,
                                           "Open a clip: the edits apply to every frame")
        self.act_export_video = self._action("Export v&ideo…", self.export_video_dialog, None,
                                             "Write the clip with the edits on every frame (background, Cancel)")
        self.act_export_video.setEnabled(False)
        self.act_import = self._action("&Import direction…", self.import_dialog, None,
                                       "Add a latent direction (.npy/.pt) or PCA components (.npz)")
        self.act_quit = self._action("&Quit", self.close, S.Quit)
        self.act_undo = self._action("&Undo", lambda: self.session.undo(), None)
        self.act_undo.setShortcuts(QKeySequence.keyBindings(S.Undo))
        self.act_redo = self._action("&Redo", lambda: self.session.redo(), None)
        self.act_redo.setShortcuts(QKeySequence.keyBindings(S.Redo) + [QKeySequence("Ctrl+Y")])
        self.act_reset = self._action("Reset all sliders", lambda: self.session.reset_all(), "Ctrl+R")
        self.act_repair = self._action("Repair &artifacts", lambda: self.session.repair_artifacts(
                                           self.attributes.repair_strength.value()),
                                       "Ctrl+Shift+R", "Move the face off the artifact side of the quality "
                                       "boundary until it looks clean")
        self.act_fit = self._action("&Fit", self.canvas.fit, "Ctrl+0", "Fit the image in the window")
        self.act_1to1 = self._action("&Actual pixels", self.canvas.actual_size, "Ctrl+1", "100 % (1:1)")
        self.act_zoom_in = self._action("Zoom &in", lambda: self.canvas.zoom_by(1), S.ZoomIn)
        self.act_zoom_out = self._action("Zoom &out", lambda: self.canvas.zoom_by(-1), S.ZoomOut)
        self.act_split = self._action("&Split before/after", self._toggle_split, "Y",
                                      "Before on the left, after on the right (drag the divider)",
                                      checkable=True)
        self.act_cancel = self._action("Cancel task", self.session.cancel_task, "Esc")
        self.view_box = QComboBox()
        self.view_box.addItem("Face crop", "aligned")
        self.view_box.addItem("In photo", "photo")
        self.view_box.setToolTip("Show the aligned face, or the edit pasted back into the photo")
        self.view_box.currentIndexChanged.connect(lambda _: self.session.set_view(self.view_box.currentData()))

    def _make_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        f.addAction(self.act_open)
        f.addAction(self.act_open_video)
        self.recent_menu = f.addMenu("Open &recent")
        f.addAction(self.act_demo)
        f.addSeparator()
        f.addActions([self.act_save, self.act_save_as])
        f.addSeparator()
        f.addActions([self.act_export, self.act_export_photo, self.act_export_code, self.act_export_video,
                      self.act_import])
        f.addSeparator()
        f.addAction(self.act_quit)
        e = mb.addMenu("&Edit")
        e.addActions([self.act_undo, self.act_redo])
        e.addSeparator()
        e.addAction(self.act_reset)
        e.addAction(self.act_repair)
        v = mb.addMenu("&View")
        v.addActions([self.act_fit, self.act_1to1, self.act_zoom_in, self.act_zoom_out])
        v.addSeparator()
        v.addAction(self.act_split)
        hint = v.addAction("Hold \\ to see the original")
        hint.setEnabled(False)
        v.addSeparator()
        v.addActions([d.toggleViewAction() for d in self.docks])
        dev = v.addMenu("Render &device")
        group = QActionGroup(self)
        cuda = _cuda_available()
        for key, text in (("auto", "Automatic (CUDA when present)"), ("cpu", "CPU"), ("cuda", "CUDA")):
            a = QAction(text, self, checkable=True)
            a.setChecked(key == self.session.device)
            a.setEnabled(key != "cuda" or cuda)
            a.triggered.connect(lambda _=False, k=key: self._set_device(k))
            group.addAction(a)
            dev.addAction(a)
        q = v.addMenu("Inversion &quality")
        group = QActionGroup(self)
        preset = str(self.settings.value("invert_preset", self.session.invert_preset))
        self.session.invert_preset = preset if preset in dict(PRESETS) else "fast"
        for key, text in PRESETS:
            a = QAction(text, self, checkable=True, checked=key == self.session.invert_preset)
            a.triggered.connect(lambda _=False, k=key: self._set_preset(k))
            group.addAction(a)
            q.addAction(a)
        q.addSeparator()
        self.act_high_fidelity = self._action(
            "&High fidelity: also tune the generator (about a minute more on the CPU)",
            self._set_high_fidelity, checkable=True,
            tip="Pivotal tuning: photos are reproduced more faithfully; slider edits keep about "
                "80 % of their strength")
        self.act_high_fidelity.setObjectName("highFidelity")
        if str(self.settings.value("high_fidelity", "false")).lower() == "true":  # remembered
            self.act_high_fidelity.setChecked(True)
            self.session.set_high_fidelity(True)
        q.addAction(self.act_high_fidelity)
        h = mb.addMenu("&Help")
        h.addAction(self._action("&About LatentStudio", self._about))
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        SP = QStyle.StandardPixmap
        for act, icon, short in ((self.act_open, SP.SP_DialogOpenButton, "Open"),
                                 (self.act_save, SP.SP_DialogSaveButton, "Save"),
                                 (self.act_export, SP.SP_ArrowDown, "Export"),
                                 (self.act_undo, SP.SP_ArrowBack, "Undo"),
                                 (self.act_redo, SP.SP_ArrowForward, "Redo"),
                                 (self.act_fit, SP.SP_TitleBarMaxButton, "Fit"),
                                 (self.act_1to1, SP.SP_TitleBarNormalButton, "1:1"),
                                 (self.act_split, SP.SP_ToolBarHorizontalExtensionButton, "Split")):
            act.setIcon(self.style().standardIcon(icon))
            act.setIconText(short)  # the toolbar's label; menus keep the long text ("Undo Smile +1.50")
            tb.addAction(act)
            if act in (self.act_export, self.act_redo, self.act_1to1):
                tb.addSeparator()
        tb.addWidget(self.view_box)
        self.frame_bar = self.addToolBar("Video frame")
        self.frame_bar.setObjectName("frameToolbar")
        self.frame_label = QLabel("Frame")
        self.frame_slider = QSlider(Qt.Orientation.Horizontal, minimumWidth=240, tracking=False)
        self.frame_slider.valueChanged.connect(self._frame_chosen)  # on release (no tracking)
        self.frame_bar.addWidget(self.frame_label)
        self.frame_bar.addWidget(self.frame_slider)
        self.frame_bar.setVisible(False)
        self.addAction(self.act_cancel)
        self._refresh_recent()

    # ================================================================= wiring
    def _connect(self) -> None:
        s, a, i = self.session, self.attributes, self.identity
        s.documentChanged.connect(self._document_changed)
        s.stateChanged.connect(self._state_changed)
        s.frameReady.connect(self._show_frame)
        s.beforeReady.connect(self.canvas.set_before)
        s.error.connect(self.show_error)
        s.status.connect(self._status)
        s.taskStarted.connect(self._task_started)
        s.taskProgress.connect(self._task_progress)
        s.taskEnded.connect(self._task_ended)
        s.facesFound.connect(self._pick_face)
        s.modelsMissing.connect(self._offer_fetch)
        s.otherChanged.connect(i.show_thumbnail)
        s.directionsChanged.connect(self._rebuild_sliders)
        s.historyChanged.connect(self._history_changed)
        self._history_changed()
        a.valueEdited.connect(s.set_value)
        a.dragStarted.connect(s.begin_drag)
        a.dragFinished.connect(s.end_drag)
        a.keepToggled.connect(s.set_keep)
        a.layersEdited.connect(s.set_layers)
        a.resetRequested.connect(s.reset)
        a.resetAllRequested.connect(s.reset_all)
        a.importRequested.connect(self.import_dialog)
        a.repairRequested.connect(s.repair_artifacts)
        i.loadPhotoRequested.connect(self._load_other_photo)
        i.generatedRequested.connect(s.use_generated_other)
        i.swapRequested.connect(s.swap_roles)
        i.clearRequested.connect(s.clear_other)
        i.deidentifyRequested.connect(s.deidentify)
        i.refineRequested.connect(lambda: s.refine_identity())
        i.amountEdited.connect(s.set_amount)
        i.surroundingsToggled.connect(lambda on: s.set_identity(
            "Keep the hair and background" if on else "The result's own hair and background", surroundings=on))
        i.dragStarted.connect(s.begin_drag)
        i.dragFinished.connect(s.end_drag)
        self.canvas.zoomChanged.connect(self._zoom_changed)

    def _status(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def _history_changed(self) -> None:
        history = self.session.history
        update_actions(self.act_undo, self.act_redo, history)
        self.history.refresh()
        self.setWindowModified(not history.is_clean())

    def _zoom_changed(self, zoom: float) -> None:
        self.info.setText(f"{zoom * 100:.0f} %")

    def _document_changed(self) -> None:
        doc = self.session.doc
        assert doc is not None
        self._rebuild_sliders()
        self.canvas.set_before(None)
        self.canvas.set_message("")
        can_photo = doc.source.can_paste_back
        self.view_box.model().item(1).setEnabled(can_photo)
        self.view_box.blockSignals(True)
        self.view_box.setCurrentIndex(1 if self.session.view == "photo" else 0)
        self.view_box.blockSignals(False)
        self.act_export_photo.setEnabled(can_photo)
        video = self.session.core.video
        self.act_export_video.setEnabled(video is not None)
        self.frame_bar.setVisible(video is not None)
        if video is not None:
            self.frame_slider.blockSignals(True)
            self.frame_slider.setRange(0, len(video.track.found) - 1)
            self.frame_slider.setValue(video.frame)
            self.frame_slider.blockSignals(False)
            self.frame_label.setText(f"Frame {video.frame}")
        name = self.session.project_path.name if self.session.project_path else doc.source.label
        self.setWindowTitle(f"{name}[*] — LatentStudio")
        self.setWindowModified(False)

    def _rebuild_sliders(self) -> None:
        doc = self.session.doc
        if doc is not None:
            self.attributes.build(doc.directions.values(), self.session.directions_note)
            self.attributes.show_state(doc.state)
            reason = self.session.can_repair()
            self.attributes.set_repair_available(reason)
            self.act_repair.setEnabled(reason is None)

    def _state_changed(self) -> None:
        doc = self.session.doc
        if doc is None:
            return
        self.attributes.show_state(doc.state)
        self.identity.show_state(doc.state.identity)
        self.setWindowModified(not self.session.history.is_clean())

    def _show_frame(self, frame: Frame) -> None:
        self.canvas.set_after(frame.image, frame.seq, self.session.logical_size())
        self.statusBar().showMessage(f"{frame.size}² render in {frame.seconds * 1000:.0f} ms", 3000)

    # ================================================================= tasks
    def _task_started(self, label: str) -> None:
        self.canvas.set_message(f"{label}…")
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.statusBar().showMessage(label)

    def _task_progress(self, p: Progress) -> None:
        if p.total > 0:
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
            self.progress.setFormat(f"{p.stage} {p.done}/{p.total}")
        if p.preview is not None:
            self.canvas.set_after(p.preview, -p.done - 1, (1024, 1024))  # the inversion converging
        if p.message:
            self.statusBar().showMessage(p.message)

    def _task_ended(self, how: str) -> None:
        self.canvas.set_message("")
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        if how != "done" and self.session.last_frame is not None:  # put the document back
            f = self.session.last_frame
            self.canvas.set_after(f.image, f.seq, self.session.logical_size())

    def _pick_face(self, pending: PendingPhoto) -> None:
        dlg = FacePicker(pending.rgb, pending.faces, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.accepted.connect(lambda: self.session.use_face(pending, dlg.chosen))
        dlg.rejected.connect(self.session.face_pick_cancelled)
        dlg.open()
        self.face_picker = dlg

    def _offer_fetch(self, message: str) -> None:
        self.canvas.set_message("Models are missing")
        box = QMessageBox(QMessageBox.Icon.Question, "Models are missing",
                          "LatentStudio needs its model weights (about 300 MB, downloaded once).",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setInformativeText(f"{message}\n\nFetch them now?")
        box.setObjectName("fetchDialog")
        box.buttonClicked.connect(lambda b: self.session.fetch_models()
                                  if box.standardButton(b) == QMessageBox.StandardButton.Yes else None)
        box.open()

    # ================================================================= files
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open", self._last_dir(),
                                              f"Photos and projects ({' '.join('*' + s for s in sorted(IMAGE_SUFFIXES))} "
                                              f"*{PROJECT_SUFFIX});;{PHOTO_FILTER};;{PROJECT_FILTER};;{CODE_FILTER}")
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> None:
        p = Path(path)
        self._add_recent(p)
        self.session.open_path(p)

    def open_video_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", self._last_dir(), VIDEO_FILTER)
        if path:
            self.open_path(path)

    def _frame_chosen(self, k: int) -> None:
        self.frame_label.setText(f"Frame {k}")
        self.session.show_frame(k)

    def export_video_dialog(self) -> None:
        video = self.session.core.video
        if video is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export video",
                                              str(Path(self._last_dir()) / f"{video.path.stem}_edited.mp4"),
                                              "MP4 video (*.mp4)")
        if path:
            self.session.export_video(Path(path).with_suffix(".mp4") if not Path(path).suffix else Path(path))

    def _load_other_photo(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Second face", self._last_dir(),
                                              f"{PHOTO_FILTER};;{CODE_FILTER}")
        if path:
            self.session.open_other(path)

    def save(self) -> bool:
        if self.session.project_path is None:
            return self.save_as()
        return self.session.save_project(self.session.project_path)

    def save_as(self) -> bool:
        start = str(Path(self._last_dir()) / f"untitled{PROJECT_SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(self, "Save project", start, PROJECT_FILTER)
        if not path:
            return False
        ok = self.session.save_project(path)
        if ok and self.session.project_path:
            self._add_recent(self.session.project_path)
            self.setWindowTitle(f"{self.session.project_path.name}[*] — LatentStudio")
        return ok

    def export_dialog(self, mode: str) -> None:
        if self.session.doc is None:
            return
        stem = Path(self.session.doc.source.label).stem.replace(" ", "_")
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export face crop" if mode == "aligned" else "Export into photo",
            str(Path(self._last_dir()) / f"{stem}_edited.png"), ";;".join(EXPORT_FILTERS))
        if not path:
            return
        p = Path(path)
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
            p = p.with_suffix(EXPORT_FILTERS.get(chosen, ".png"))
        self.session.export(p, mode)

    def export_code_dialog(self) -> None:
        if self.session.doc is None:
            return
        stem = Path(self.session.doc.source.label).stem.replace(" ", "_")
        path, _ = QFileDialog.getSaveFileName(self, "Export code", str(Path(self._last_dir()) / f"{stem}_edited.npz"),
                                              "Latent code (*.npz)")
        if path:
            self.session.export_code(Path(path).with_suffix(".npz"))

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import direction", self._last_dir(),
                                              "Directions (*.npy *.pt *.npz)")
        if path:
            self.session.add_directions_from(path)

    def _last_dir(self) -> str:
        recent = self._recent()
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    def _recent(self) -> list[str]:
        value = self.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [v for v in (value or []) if isinstance(v, str)]

    def _add_recent(self, path: Path) -> None:
        p = str(Path(path).resolve())
        recent = [p] + [r for r in self._recent() if r != p]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for r in self._recent():
            a = self.recent_menu.addAction(Path(r).name)
            a.setToolTip(r)
            a.triggered.connect(lambda _=False, path=r: self.open_path(path))
        self.recent_menu.setEnabled(bool(self._recent()))

    # ================================================================= misc
    def show_error(self, title: str, message: str, details: str = "") -> None:
        self.errors.append((title, message))
        self.error_box = show_error(self, title, message, details)

    def _toggle_split(self, on: bool) -> None:
        self.canvas.split = on
        self.canvas.update()

    def _set_device(self, device: str) -> None:
        self.settings.setValue("device", device)
        self.session.set_device(device)

    def _set_preset(self, preset: str) -> None:
        self.settings.setValue("invert_preset", preset)
        self.session.invert_preset = preset

    def _set_high_fidelity(self, on: bool) -> None:
        self.settings.setValue("high_fidelity", bool(on))
        self.session.set_high_fidelity(on)

    def _about(self) -> None:
        from latentstudio import __version__

        QMessageBox.about(self, "About LatentStudio",
                          f"<b>LatentStudio {__version__}</b><p>Face editing in the W+ space of "
                          "MobileStyleGAN: InterFaceGAN sliders, conditional editing, identity mapper."
                          "<p>Hold <b>\\</b> to compare with the original; <b>Y</b> toggles the split view.")

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - before/after from anywhere
        if event.key() == BEFORE_KEY and not event.isAutoRepeat():
            self.canvas.show_before = True
            self.canvas.update()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == BEFORE_KEY and not event.isAutoRepeat():
            self.canvas.show_before = False
            self.canvas.update()
        else:
            super().keyReleaseEvent(event)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if _dropped_path(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        p = _dropped_path(event)
        if p is not None:
            event.acceptProposedAction()
            self.open_path(p)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.confirm_close and not self.session.history.is_clean():
            answer = QMessageBox.question(
                self, "Unsaved changes", "Save the project before closing?",
                QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                | QMessageBox.StandardButton.Cancel)
            if answer == QMessageBox.StandardButton.Cancel or (
                    answer == QMessageBox.StandardButton.Save and not self.save()):
                event.ignore()
                return
        self.settings.setValue("geometry", self.saveGeometry())
        self.session.shutdown()
        event.accept()


def _dropped_path(event: QDragEnterEvent | QDropEvent) -> Path | None:
    urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
    for u in urls:
        if u.isLocalFile():
            p = Path(u.toLocalFile())
            if p.suffix.lower() in {*IMAGE_SUFFIXES, *CODE_SUFFIXES, PROJECT_SUFFIX}:
                return p
    return None


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False
