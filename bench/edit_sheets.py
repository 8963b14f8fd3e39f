"""Contact sheets of edits: the shipped boundaries beside another set, same faces, same α.

    latentstudio boundaries train --attributes gender,age,smile --n 200000 --seed 0 --psi 0.7 \\
        --size 256 --ratio 0.02 --whiten none --out /tmp/raw      # the raw-W fits, from the score cache
    python bench/edit_sheets.py --other /tmp/raw --names gender,age,smile

One JPEG per boundary under ``--out``: a row per face (seeds ``seed …``, ψ 0.7, held out from
training and from bench/edit.py), α ∈ {−3, −1.5, 0, 1.5, 3} on the shipped boundary's default slot
range; left block the shipped normal, right block the other folder's normal of the same name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from latentstudio.edit.apply import apply_edits
from latentstudio.edit.boundaries import SHIPPED_DIR, load_index
from latentstudio.models.generator import Generator, to_uint8

ALPHAS = (-3.0, -1.5, 0.0, 1.5, 3.0)
TILE = 160


def sheet(g: Generator, codes: np.ndarray, name: str, sets: list[dict]) -> Image.Image:
    """(faces × len(sets)·5) tiles of ``TILE``² px, a gap between the sets."""
    rows = []
    for code in codes:
        blocks = []
        for bs in sets:
            edited = np.stack([apply_edits(code, {name: a}, bs, layers={name: sets[0][name].layers}) for a in ALPHAS])
            images = to_uint8(g.synthesize(edited, size=256))
            blocks.append(np.concatenate([np.asarray(Image.fromarray(im).resize((TILE, TILE))) for im in images], 1))
            blocks.append(np.full((TILE, 12, 3), 255, np.uint8))
        rows.append(np.concatenate(blocks[:-1], 1))
    return Image.fromarray(np.concatenate(rows, 0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other", type=Path, required=True, help="boundary folder to show beside the shipped one")
    ap.add_argument("--names", default="gender,age,smile")
    ap.add_argument("--faces", type=int, default=6)
    ap.add_argument("--seed", type=int, default=3_000_400)
    ap.add_argument("--out", type=Path, default=Path("bench/contact_sheets/edits"))
    args = ap.parse_args()
    g = Generator.load("cpu")
    shipped, other = load_index(SHIPPED_DIR), load_index(args.other)
    codes = np.tile(g.map(g.sample_z(args.seed, args.faces), 0.7).numpy()[:, None], (1, 23, 1))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names.split(","):
        path = args.out / f"{name}_shipped_vs_{args.other.name}.jpg"
        sheet(g, codes, name, [shipped, other]).save(path, quality=85)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
