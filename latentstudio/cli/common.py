"""What every CLI command shares: the user-error type, turning the core's input errors into it,
the progress printer and Ctrl-C as cancel."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from latentstudio.progress import Progress, ProgressFn
from latentstudio.safety import InputError


PRESET_NAMES = ("quick", "fast", "quality")  # latentstudio.invert.PRESETS, without loading torch to parse
START_NAMES = ("average", "encoder", "encoder-w")  # latentstudio.invert.STARTS, the same way


class UserError(InputError):
    """A problem with what the user asked for; printed as one line, exit code 2."""


def user_error(msg: str) -> UserError:
    """A one-line, exit-code-2 error."""
    return UserError(msg)


@contextmanager
def as_user_errors() -> Iterator[None]:
    """Turn the core's own ValueErrors that are not InputErrors yet (mapper, data, chip errors …)
    into UserError; InputErrors pass through (``safety.explain`` already makes them exit 2)."""
    try:
        yield
    except InputError:
        raise
    except ValueError as exc:
        if type(exc).__module__.startswith("latentstudio"):
            raise user_error(str(exc)) from exc
        raise


def progress_printer(label: str = "") -> ProgressFn:
    """The CLI's one way of showing ``Progress``: on a terminal a progress bar per stage with its
    rate and time left (rich); otherwise (logs, pipes) a timed line on stderr at the start of each
    stage, about every 5 % of it, and at its end, e.g. ``[   4.2s] invert 60/138 loss 0.4120``."""
    if sys.stderr.isatty():
        try:
            return _bar(label)
        except ImportError:
            pass
    start = time.monotonic()
    last: list[str] = [""]

    def show(p: Progress) -> None:
        every = max(1, p.total // 20)
        if p.stage == last[0] and p.done != p.total and p.done % every:
            return
        last[0] = p.stage
        parts = [f"[{time.monotonic() - start:7.1f}s]", f"{label}:" if label else "", p.stage,
                 f"{p.done}/{p.total}", p.message, "" if p.loss is None else f"loss {p.loss:.4f}"]
        print(" ".join(x for x in parts if x), file=sys.stderr, flush=True)

    return show


def _bar(label: str) -> ProgressFn:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
              TextColumn("{task.fields[note]}"), transient=False)
    tasks: dict[str, int] = {}

    def show(p: Progress) -> None:
        if not tasks:
            bar.start()
        if p.stage not in tasks:
            tasks[p.stage] = bar.add_task(f"{label} {p.stage}".strip(), total=p.total or None, note="")
        note = p.message + ("" if p.loss is None else f" loss {p.loss:.4f}")
        bar.update(tasks[p.stage], completed=p.done, total=p.total or None, note=note)
        if p.total and p.done >= p.total and all(bar.tasks[t].finished for t in tasks.values()):
            bar.stop()

    return show


class StopFlag:
    """A ``cancelled()`` for the CLI: Ctrl-C once stops long work after its current step (what it
    finished is kept); twice aborts at once."""

    def __init__(self) -> None:
        self.flag = False

    def __call__(self) -> bool:
        return self.flag

    def on_sigint(self, signum, frame) -> None:  # noqa: ANN001
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        print("\nstopping after this step (work kept; Ctrl-C again to abort now)…", file=sys.stderr, flush=True)


@contextmanager
def interruptible() -> Iterator[StopFlag]:
    """``with interruptible() as cancelled:`` Ctrl-C sets ``cancelled`` while the block runs."""
    stop = StopFlag()
    try:
        previous = signal.signal(signal.SIGINT, stop.on_sigint)
    except ValueError:  # not the main thread: Ctrl-C stays a KeyboardInterrupt
        yield stop
        return
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)

#: ``--own-surroundings`` of every command that gives a face another person's identity
OWN_SURROUNDINGS_HELP = ("render the result's code alone, with the hair, clothes and background it brings "
                         "(default: the attribute face's own, around the new face)")
