#!/usr/bin/env bash
# Train the inversion encoder on a CUDA machine, then benchmark the fast preset that starts from it.
#
#   LATENTSTUDIO_HOME=... bash bench/train_encoder_gpu.sh [CHUNKS] [STEPS]
#
# 1. data: CHUNKS (default 200 = 200 000 faces; the CPU run used 23) chunks of 1 000 generated faces,
#    single-w and style-mixed codes at psi 0.5-1, 256² renders reduced to 128²; cached in
#    $LATENTSTUDIO_HOME/cache/encoder_data: rerun to resume.
# 2. encoder: STEPS (default 100 000) steps of 32 faces of code regression, then STEPS / 10 steps
#    of 32 with LPIPS-Alex + MSE of the guess's 128² render added (the image phase); checkpoints in
#    $LATENTSTUDIO_HOME/cache/encoder_train (each phase resumes from its last one).
# 3. the quick and fast presets on generated faces and the real portraits, on the GPU and on the CPU.
set -euo pipefail
CHUNKS="${1:-200}"
STEPS="${2:-100000}"
python bench/fit_encoder.py data --device cuda --chunks "$CHUNKS"
python bench/fit_encoder.py train --device cuda --steps "$STEPS" --minutes 600 --out /tmp/encoder_regression.safetensors
python bench/fit_encoder.py train --device cuda --steps "$((STEPS / 10))" --minutes 600 --lr 3e-4 \
    --image-weight 1 --init /tmp/encoder_regression.safetensors --out assets/encoder.safetensors
python bench/invert.py --presets quick,fast --faces 10 --device cuda
python bench/invert.py --presets quick,fast --faces 10 --device cpu
