"""Undo commands: every edit swaps one immutable ``EditState`` for another.

Commands with the same ``merge_key`` coalesce (one step per slider drag); a drag that ends where
it started leaves no step behind.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QUndoCommand

from latentstudio.document import EditState

MERGE_ID = 6001


class StateCommand(QUndoCommand):
    def __init__(self, apply: Callable[[EditState], None], before: EditState, after: EditState,
                 text: str, merge_key: object = None) -> None:
        super().__init__(text)
        self._apply = apply
        self.before = before
        self.after = after
        self.merge_key = merge_key

    def id(self) -> int:  # noqa: A003 - Qt API
        return MERGE_ID if self.merge_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt API
        if not isinstance(other, StateCommand) or other.merge_key != self.merge_key:
            return False
        self.after = other.after
        self.setObsolete(self.after == self.before)
        return True

    def redo(self) -> None:
        self._apply(self.after)

    def undo(self) -> None:
        self._apply(self.before)
