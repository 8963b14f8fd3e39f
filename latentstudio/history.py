"""The undo stack of an editing session (no Qt): every step swaps one immutable ``EditState``
for another.

Steps pushed with the same ``merge_key`` as the step on top coalesce into it (one step per slider
drag), and a merged step that ends where it started disappears. The "clean" index marks the state
last saved; ``listeners`` are told after every change (the GUI redraws its history panel).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from latentstudio.document import EditState


@dataclass
class Step:
    text: str
    before: EditState
    after: EditState
    merge_key: object = None


class History:
    """Undo / redo over ``EditState`` steps."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.index = 0  # steps[:index] are done
        self.clean_index: int | None = 0  # None: the saved state cannot be reached any more
        self.listeners: list[Callable[[], None]] = []

    def _changed(self) -> None:
        for f in list(self.listeners):
            f()

    def push(self, before: EditState, after: EditState, text: str, merge_key: object = None) -> None:
        """Record ``before`` → ``after`` (already applied by the caller); drops the redo tail."""
        if self.clean_index is not None and self.clean_index > self.index:
            self.clean_index = None  # the saved state was in the dropped tail
        del self.steps[self.index:]
        top = self.steps[-1] if self.steps else None
        if merge_key is not None and top is not None and top.merge_key == merge_key and self.clean_index != self.index:
            top.after, top.text = after, text
            if top.after == top.before:  # a drag that ended where it started leaves no step
                self.steps.pop()
        else:
            self.steps.append(Step(text, before, after, merge_key))
        self.index = len(self.steps)
        self._changed()

    def undo(self) -> EditState | None:
        """The state to go back to (None when there is nothing to undo)."""
        if self.index == 0:
            return None
        self.index -= 1
        self._changed()
        return self.steps[self.index].before

    def redo(self) -> EditState | None:
        """The state to go forward to (None when there is nothing to redo)."""
        if self.index == len(self.steps):
            return None
        self.index += 1
        self._changed()
        return self.steps[self.index - 1].after

    def go_to(self, index: int) -> EditState | None:
        """Undo or redo until ``index`` steps are done; the state there (None if out of range)."""
        if not 0 <= index <= len(self.steps) or index == self.index:
            return None
        self.index = index
        self._changed()
        return self.steps[index - 1].after if index else self.steps[0].before

    def count(self) -> int:
        return len(self.steps)

    def can_undo(self) -> bool:
        return self.index > 0

    def can_redo(self) -> bool:
        return self.index < len(self.steps)

    def undo_text(self) -> str:
        return self.steps[self.index - 1].text if self.index else ""

    def redo_text(self) -> str:
        return self.steps[self.index].text if self.index < len(self.steps) else ""

    def is_clean(self) -> bool:
        return self.clean_index == self.index

    def set_clean(self) -> None:
        self.clean_index = self.index
        self._changed()

    def reset_clean(self) -> None:
        """No state is the saved one (recovered work)."""
        self.clean_index = None
        self._changed()

    def clear(self) -> None:
        self.steps.clear()
        self.index, self.clean_index = 0, 0
        self._changed()
