"""Merge the boundary-score cache (one npz per 100 seeds) into one float32 npz per predictor
version, small enough for the device tool's 16 MiB return limit."""
import sys
from pathlib import Path

import numpy as np

root = Path(sys.argv[1])
out = Path(sys.argv[2])
for folder in sorted(root.glob("psi0.7_size256_pred*")):
    files = sorted(folder.glob("seeds_*.npz"))
    if not files:
        continue
    parts = [dict(np.load(f)) for f in files]
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    merged = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in merged.items()}
    np.savez_compressed(out / f"scores_{folder.name}.npz", **merged)
    print(folder.name, len(merged["seeds"]), "seeds")
