#!/usr/bin/env bash
# Peak resident memory (/usr/bin/time -v "Maximum resident set size") of sd-upscale on the CPU: one SIZE x SIZE RGB
# PNG (default 2000 -> 8000 x 8000 at x4) through a random 32-feature, 4-block MSRResNet, tiled and untiled, plus a
# 64 x 64 image as the baseline (Python, torch, the model).
#
#   bash benchmarks/upscale_memory.sh [SIZE] [TILE...]        e.g. bash benchmarks/upscale_memory.sh 2000 200 512 0
#
# A tile needs about 7.4 kB per LR pixel of the padded tile with this network (measured untiled at 500 and 1000 px),
# plus the input and the output. TILE 0 is the untiled pass: about 28 GiB at 2000 x 2000. It runs under `ulimit -v`
# (UNTILED_AS_GB, default: 80 % of MemAvailable + 4 GB of address space for the libraries): where it does not fit, it
# stops with sd-upscale's per-file "out of memory" line (exit 1) instead of waking the OOM killer among the machine's
# other processes.
# Run from the repository root; files go to $WORK (default /tmp/sd_upscale_memory). THREADS (default 1) torch threads.
set -euo pipefail
SIZE=${1:-2000}
if [ $# -gt 1 ]; then TILES=("${@:2}"); else TILES=(200 0); fi
PY=${PY:-.venv/bin/python}
UPSCALE=$(dirname "$PY")/sd-upscale
WORK=${WORK:-/tmp/sd_upscale_memory}
THREADS=${THREADS:-1}
mkdir -p "$WORK"

"$PY" - "$WORK" "$SIZE" <<'EOF'
import sys
from os import path as osp

import sd_plugin  # noqa: F401  (before basicsr)
import cv2
import numpy as np
import torch
from basicsr.archs.srresnet_arch import MSRResNet

work, size = sys.argv[1], int(sys.argv[2])
model = osp.join(work, 'msrresnet_f32_b4_x4.pth')
if not osp.exists(model):
    torch.manual_seed(0)
    torch.save({'params': MSRResNet(num_feat=32, num_block=4, upscale=4).state_dict()}, model)
for side in (64, size):
    path = osp.join(work, f'rgb_{side}.png')
    if not osp.exists(path):  # smooth waves plus noise: compresses like a photo, not like a flat image
        rng = np.random.default_rng(side)
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
        img = np.stack([np.sin(xx * rng.uniform(0.01, 0.1) + yy * rng.uniform(0.01, 0.1) + c) for c in range(3)], 2)
        img = (img + 1) * 110 + rng.normal(0, 8, img.shape)
        cv2.imwrite(path, np.clip(img, 0, 255).astype(np.uint8))
EOF

run() {  # run LABEL SIDE TILE [ulimit -v KB]
  local label=$1 side=$2 tile=$3 limit=${4:-unlimited} log="$WORK/time_$1.log"
  local status=0
  (ulimit -v "$limit"; /usr/bin/time -v "$UPSCALE" "$WORK/rgb_$side.png" --model "$WORK/msrresnet_f32_b4_x4.pth" \
      --out "$WORK/out_$label" --tile "$tile" --device cpu --threads "$THREADS" --overwrite --quiet) \
      >"$WORK/stdout_$label.log" 2>"$log" || status=$?
  local rss wall
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
  printf '%-22s %5sx%-5s tile %-4s max RSS %8.1f MiB  wall %s  exit %s\n' "$label" "$side" "$side" "$tile" \
    "$(echo "$rss / 1024" | bc -l)" "$wall" "$status"
  grep -h 'error' "$log" | head -2 || true
}

run baseline_64 64 0
for tile in "${TILES[@]}"; do
  if [ "$tile" = 0 ]; then
    avail_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
    limit_kb=$(( ${UNTILED_AS_GB:-$(( avail_kb * 8 / 10 / 1048576 + 4 ))} * 1048576 ))
    run "untiled_$SIZE" "$SIZE" 0 "$limit_kb"
  else
    run "tile${tile}_$SIZE" "$SIZE" "$tile"
  fi
done
