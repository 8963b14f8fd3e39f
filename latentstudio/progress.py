"""One progress / cancel protocol for all long work (alignment, inversion, tuning, training,
refine, repair, calibration, model fetch, batch export).

A long function takes two optional callbacks and nothing else for this:

    progress(Progress)   called as the work advances (``done`` of ``total`` in ``stage``)
    cancelled() -> bool  polled between steps; True ends the work with ``Cancelled``

``Cancelled`` is the only way long work ends on a cancel; whatever the work already finished
(cached chunks, checkpoints) stays where it was, and the caller's state is unchanged. The CLI
prints ``Progress`` with one helper (``latentstudio.cli.common.progress_printer``), the GUI shows
it in its task bar; neither needs to know which work sent it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units of ``stage``; optional loss and a 256² RGB preview."""

    stage: str  # "invert", "tune", "train", "refine", "faces", "score", "fit", "fetch", "repair", …
    done: int
    total: int
    message: str = ""
    loss: float | None = None
    preview: np.ndarray | None = None  # (256, 256, 3) uint8 of the current result, now and then


ProgressFn = Callable[[Progress], None]
CancelFn = Callable[[], bool]


class Cancelled(Exception):
    """Long work stopped because ``cancelled()`` returned True (the message says where)."""

    title = "Cancelled"  # the heading of its error dialog

    exit_code = 130  # the CLI's exit status, as for Ctrl-C (``latentstudio.safety.explain``)


def check(cancelled: CancelFn | None, what: str) -> None:
    """Raise ``Cancelled(what)`` when ``cancelled()`` says so."""
    if cancelled is not None and cancelled():
        raise Cancelled(what)


def report(progress: ProgressFn | None, p: Progress) -> None:
    """Send ``p`` when there is someone to send it to."""
    if progress is not None:
        progress(p)
