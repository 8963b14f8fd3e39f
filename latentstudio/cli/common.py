"""What every CLI command shares: the user-error type, turning the core's input errors into it,
and the progress printers."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from latentstudio.safety import InputError


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


def stage_printer(prefix: str) -> Callable[[object], None]:
    """Progress with stages (``stage``, ``done``, ``total``, ``message``): one line each, timed."""
    start = time.monotonic()

    def show(p: object) -> None:
        print(f"[{time.monotonic() - start:7.1f}s] {prefix} {p.stage} {p.done}/{p.total} {p.message}",  # type: ignore[attr-defined]
              file=sys.stderr, flush=True)

    return show


def step_printer(label: str) -> Callable[[object], None]:
    """Progress of an optimisation (``step``, ``total``, ``loss``): one line, rewritten in place."""
    def show(p) -> None:  # noqa: ANN001 - InvertProgress
        if p.step == p.total or p.step % max(1, p.total // 20) == 0:
            print(f"\r{label}: step {p.step}/{p.total} loss {p.loss:.4f}", end="",
                  file=sys.stderr, flush=True)
            if p.step == p.total:
                print(file=sys.stderr)
    return show
