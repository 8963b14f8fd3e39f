#!/usr/bin/env bash
# Inversion presets on a CUDA machine (issue 7's GPU figures). The GPU machine has no network:
# fetch the photos beforehand (python bench/photos.py) and carry $LATENTSTUDIO_HOME/cache/bench_photos
# (bench/device/README.md says how).
#
#   LATENTSTUDIO_HOME=... bash bench/invert_gpu.sh [RESULTS_DIR]
#
# In order (a run that fails does not stop the rest; each run's output goes to RESULTS_DIR):
# 0. the CUDA-graph step against the eager step (tests/test_invert.py; skipped without CUDA);
# 1. `quality` (CUDA graphs) on 10 generated faces (seeds 5000…) and the five benchmark photos;
# 2. `quality` eager on the photos: what the graphs save, same machine, same recipe;
# 3. `quality` at 500 steps (its step count before 2026-11-24) on the photos;
# 4. `fast` on faces and photos.
# Variants of a preset: --set FIELD=VALUE (e.g. --set delta_weight=5e-4), --steps N.
set -uo pipefail
RES="${1:-bench/out/invert_gpu}"
mkdir -p "$RES"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$RES/machine.txt"
python -c "import os, torch; print('torch', torch.__version__, 'cores', os.cpu_count())" | tee -a "$RES/machine.txt"
python -m pytest -q -p no:cacheprovider tests/test_invert.py -k cuda_graph 2>&1 | tail -15 | tee "$RES/0_graph_test.txt"
B="python bench/invert.py --device cuda --no-fetch --faces 10"
run() { local name="$1"; shift; echo "== $name: $*"; $B "$@" 2>&1 | tee "$RES/$name.txt" | grep -v '^fast\|^quality'; }
run 1_quality --presets quality
run 2_quality_eager --presets quality --photos-only --eager
run 3_quality_500 --presets quality --photos-only --steps 500
run 4_fast --presets fast
echo done
