"""latentstudio.gui: the Qt widgets of the desktop editor (a thin layer over the headless core).

Importing this package applies ``guard_refcount_bug`` (see there).
"""

from __future__ import annotations

import sys


def guard_refcount_bug() -> bool:
    """Work around a PySide6/shiboken6 6.12.0 bug on Python < 3.12.

    Every call of a Python override of a C++ virtual (``paintEvent``, mouse and key handlers,
    ``QUndoCommand.redo`` … in our code and in superqt's) drops one reference to ``None`` (and
    some to ``True``/``False``) that it never took. Their counts start near 5000, so the process
    aborts with "Fatal Python error: none_dealloc" after a few thousand UI events. Python 3.12
    made these singletons immortal; on older Pythons with an affected shiboken6 we give them a
    reference count they cannot run down (they are static objects that are never freed).
    PySide6 6.11.3 does not have the bug. Returns True if the guard was applied.
    """
    if sys.version_info >= (3, 12) or not _affected():
        return False
    import ctypes

    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    return True


def _affected() -> bool:
    """shiboken6 6.12 or newer (6.11.3 is fine; raising the counts is harmless if later
    releases fix it)."""
    import shiboken6

    return tuple(shiboken6.__version_info__[:2]) >= (6, 12)


REFCOUNT_GUARD = guard_refcount_bug()
