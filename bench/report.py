"""What every benchmark does with its table: print it, and append it to a results file when asked."""

from __future__ import annotations


def publish(text: str, results: str = "") -> None:
    """Print ``text``; with ``results`` (a path), also append it there after a blank line."""
    print(text)
    if results:
        with open(results, "a", encoding="utf-8") as f:
            f.write("\n" + text)
