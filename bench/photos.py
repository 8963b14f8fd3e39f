"""Real portraits for the benchmarks: fetched once from PyPI (pinned sha256), never shipped.

    python bench/photos.py            # fetch (if needed) and list the photos

The face_recognition 1.3.0 sdist (MIT) carries four portraits in its tests: three of Barack
Obama and one of Joe Biden, White House photographs (works of the US federal government, in
the public domain). With scikit-image's ``astronaut`` (NASA, public domain) that makes five
real photos of three people, at 600–2300 px, faces 150–450 px wide: different light, pose and
background, and no other photo source is reachable offline. They are benchmark inputs only: the
repository neither contains nor redistributes them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from latentstudio import paths
from latentstudio.cli.common import progress_printer
from latentstudio.models.fetch import FetchError, fetch_members
from latentstudio.models.registry import Carrier

CARRIER = Carrier("face_recognition", "1.3.0", "sdist",
                  "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec", 3.2)
MEMBERS = tuple(f"tests/test_images/{n}" for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"))


def folder() -> Path:
    return paths.home() / "cache" / "bench_photos"


def astronaut() -> Path:
    """scikit-image's astronaut as a PNG file (written once)."""
    from PIL import Image
    from skimage import data

    path = folder() / "astronaut.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part.png")
        Image.fromarray(data.astronaut()).save(tmp)
        tmp.replace(path)
    return path


def real_photos(fetch: bool = True, source_dir: Path | None = None) -> list[Path]:
    """The astronaut plus the PyPI portraits (fetched when missing and ``fetch``; when the
    download fails the reason is printed and only the photos at hand are returned)."""
    wanted = [folder() / Path(m).name for m in MEMBERS]
    if fetch and not all(p.is_file() for p in wanted):
        try:
            fetch_members(CARRIER, MEMBERS, folder(), source_dir=source_dir,
                          progress=progress_printer())
        except FetchError as exc:
            print(f"benchmark photos unavailable ({exc}); using the astronaut only", file=sys.stderr)
    return [astronaut(), *(p for p in wanted if p.is_file())]


if __name__ == "__main__":
    for p in real_photos():
        print(p)
