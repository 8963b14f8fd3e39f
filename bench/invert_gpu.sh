#!/usr/bin/env bash
# Inversion presets on a CUDA machine (issue 7's GPU figures): fast and quality on 10 generated
# faces and the astronaut (plus any photos given), LPIPS-VGG / PSNR / identity / seconds per face.
#
#   LATENTSTUDIO_HOME=... bash bench/invert_gpu.sh [PHOTO ...] | tee bench/out/invert_gpu.md
#
# Not run yet: no GPU has been lent to this project's tasks so far (bench/RESULTS.md has the CPU run).
set -euo pipefail
python bench/invert.py --presets fast,quality --faces 10 --device cuda ${1:+--photos "$@"}
