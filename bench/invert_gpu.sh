#!/usr/bin/env bash
# Inversion presets on a CUDA machine (issue 7's GPU figures): fast and quality on 10 generated
# faces and the five benchmark photos (plus any photos given): LPIPS-VGG / PSNR / dlib and OpenFace
# identity / edit response / seconds per face, each preset also with pivotal tuning on top
# (paired rows: the same codes with and without tuning). The GPU machine has no network: fetch the
# photos beforehand (python bench/photos.py) and carry $LATENTSTUDIO_HOME/cache/bench_photos with it.
#
#   LATENTSTUDIO_HOME=... bash bench/invert_gpu.sh [PHOTO ...] | tee bench/out/invert_gpu.md
set -euo pipefail
python bench/invert.py --presets fast,quality --faces 10 --device cuda --no-fetch \
    --tune 200 --tune-size 1024 ${1:+--photos "$@"}
