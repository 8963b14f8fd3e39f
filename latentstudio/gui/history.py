"""The History panel and the Undo / Redo actions, as views of the session's ``History``
(``latentstudio.history``: the undo stack lives in the headless session, not in Qt)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QAbstractItemView, QListView

from latentstudio.history import History

Index = QModelIndex | QPersistentModelIndex


class HistoryModel(QAbstractListModel):
    """Row 0 is the state before any step ("Original"), row i the state after step i."""

    def __init__(self, history: Callable[[], History], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._history = history

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else self._history().count() + 1

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        h = self._history()
        if not index.isValid() or not 0 <= index.row() <= h.count():
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return "Original" if index.row() == 0 else h.steps[index.row() - 1].text
        if role == Qt.ItemDataRole.FontRole and index.row() > h.index:
            from PySide6.QtGui import QFont

            font = QFont()
            font.setItalic(True)  # undone steps (redo can bring them back)
            return font
        return None

    def refresh(self) -> None:
        self.beginResetModel()
        self.endResetModel()


class HistoryView(QListView):
    """Lists the steps; clicking one undoes or redoes to it (``go_to(row)``)."""

    def __init__(self, history: Callable[[], History], go_to: Callable[[int], Any]) -> None:
        super().__init__()
        self._history = history
        self.model_ = HistoryModel(history, self)
        self.setModel(self.model_)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.clicked.connect(lambda index: go_to(index.row()))

    def refresh(self) -> None:
        self.model_.refresh()
        self.setCurrentIndex(self.model_.index(self._history().index, 0))


def update_actions(undo: QAction, redo: QAction, history: History) -> None:
    """Enable and name the Undo / Redo actions after the steps they would undo / redo."""
    undo.setEnabled(history.can_undo())
    redo.setEnabled(history.can_redo())
    undo.setText("&Undo " + history.undo_text() if history.can_undo() else "&Undo")
    redo.setText("&Redo " + history.redo_text() if history.can_redo() else "&Redo")


__all__ = ["HistoryModel", "HistoryView", "update_actions"]
