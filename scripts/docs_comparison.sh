#!/usr/bin/env bash
# docs/comparison.png: scikit-image's chelsea (not in any training or validation set of the study), x4, through the
# study's seed-0 models: MSRResNet-4 trained alone, the SD-16 student (exit 4) and its teacher. Needs the study's runs
# under results/study (sd-study options/study/proxy.yml --out results/study).
set -euo pipefail
cd "$(dirname "$0")/.."
R=results/study/runs
HR=$(mktemp -d)/chelsea.png
.venv/bin/python -c "import cv2, skimage.data; cv2.imwrite('$HR', skimage.data.chelsea()[..., ::-1])"
.venv/bin/sd-compare --hr "$HR" --crop 150,60,64,64 --zoom 2 --out docs/comparison.png --overwrite \
  --model "alone=$R/alone4_seed0/experiments/alone4_seed0/models/net_g_latest.pth" \
  --model "SD student=$R/sd16_seed0/experiments/sd16_seed0/models/net_g_latest.pth:4" \
  --model "SD teacher=$R/sd16_seed0/experiments/sd16_seed0/models/net_g_latest.pth"
