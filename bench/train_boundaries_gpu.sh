#!/usr/bin/env bash
# Train the shipped boundary set at full scale on a CUDA machine (N >= 200 000).
#
#   LATENTSTUDIO_HOME=... bash bench/train_boundaries_gpu.sh [N] [OUT]
#
# Renders N seeded samples (psi 0.7) at 256² on the GPU in batches of 256 and scores them with
# the (CPU, dlib-based) predictors in one process per spare core. Scores are cached per 100 seeds
# in $LATENTSTUDIO_HOME/cache/boundary_scores, so an interrupted run resumes where it stopped
# (rerun the same command). Budget: the predictors cost 45–80 ms per face per core, so 200 000
# faces took 20 min on an H200 machine with 13 workers (~160 faces/s, 2026-11-24); rendering the
# 256² previews on the GPU is not the bottleneck. See bench/device/README.md for running it there.
# With N = 200 000 the top/bottom 2 % give 4 000 samples per side (2 800 train / 1 200 val).
set -euo pipefail
N="${1:-200000}"
OUT="${2:-boundaries}"
WORKERS="${WORKERS:-$(( $(nproc) - 1 ))}"
export OMP_NUM_THREADS=1   # predictor workers are single-threaded; the GPU does the rendering
python -m latentstudio.cli boundaries train \
    --attributes all --n "$N" --seed 0 --psi 0.7 --size 256 --ratio 0.02 \
    --device cuda --batch 256 --workers "$WORKERS" --out "$OUT"
python -m latentstudio.cli boundaries pca --samples 1000000 --components 20 --seed 0 -o "$OUT/pca_w.npz"
python -m latentstudio.cli boundaries list
