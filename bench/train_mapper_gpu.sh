#!/usr/bin/env bash
# Build the identity mapper's training faces, distil the landmark net and train the mapper on a
# CUDA machine, then benchmark on real photos.
#
#   LATENTSTUDIO_HOME=... bash bench/train_mapper_gpu.sh [CHUNKS] [STEPS]
#
# 1. data: CHUNKS (default 250 = 50 000 faces) chunks of 200 generated W+ codes (broadcast and
#    style-mixed, psi 0.7), rendered at 256² and measured (dlib landmarks, dlib descriptor);
#    cached in $LATENTSTUDIO_HOME/cache/identity_data: rerun to resume.
# 2. landmark net: bench/fit_landmark_net.py (60 epochs).
# 3. mapper: STEPS (default 3000) steps of 16 pairs at 256², with the shipped recipe's settings
#    (no background loss, correction lr 2e-4, no pose/expression augmentation; the CPU run used
#    600 steps at 128², batch 4, then 200 steps at 256² from those weights, assets/MODELS.md).
#    KEEP=yaw,pitch,smile,mouth_open,surprise,eyes_open,lighting keeps B's light too (measured on
#    the CPU as a fine-tune: bench/RESULTS.md, "The result is lit as A, not as B").
# Checkpoints go to $LATENTSTUDIO_HOME/cache/identity_train; Ctrl-C once stops after a step.
set -euo pipefail
CHUNKS="${1:-250}"
STEPS="${2:-3000}"
MACHINE="${MACHINE:-$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $(nproc) cores}"
python -m latentstudio.cli identity data --device cuda --chunks "$CHUNKS"
python bench/fit_landmark_net.py --epochs 60 --threads "$(nproc)" --out assets/landmark_net.safetensors
python -m latentstudio.cli identity train --device cuda --steps "$STEPS" --batch 16 --size 256 \
    --w-bg 0 --lr-rank 0.0002 --augment 0 ${KEEP:+--keep "$KEEP"} \
    --machine "$MACHINE" -o assets/mapper.safetensors
python -m latentstudio.cli identity info
python bench/transfer.py --device cuda --refine 40 --results bench/RESULTS.md
