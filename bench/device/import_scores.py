"""Unpack a merged score file from collect_scores.py into the local boundary-score cache, so that
`latentstudio boundaries train` and bench/edit.py here reuse the device's scores.

    python bench/device/import_scores.py scores_psi0.7_size256_predXXXX.npz
"""
import sys
from pathlib import Path

import numpy as np

from latentstudio.edit.train import CHUNK, Scores, _chunk_path, _write_chunk, default_cache_dir

path = Path(sys.argv[1])
folder = default_cache_dir() / path.stem.removeprefix("scores_")
folder.mkdir(parents=True, exist_ok=True)
with np.load(path) as data:
    merged = {k: data[k] for k in data.files}
seeds, valid = merged.pop("seeds"), merged.pop("valid")
written = 0
for i in range(0, len(seeds), CHUNK):
    part = slice(i, i + CHUNK)
    if _chunk_path(folder, int(seeds[i])).exists():
        continue  # keep what was scored here
    written += 1
    _write_chunk(_chunk_path(folder, int(seeds[i])),
                 Scores(seeds[part], {k: v[part].astype(np.float64) for k, v in merged.items()}, valid[part]))
print(f"{len(seeds)} seeds, {written} new chunks → {folder}")
