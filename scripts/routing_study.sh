#!/usr/bin/env bash
# Issue 17, routing under a MAC budget: calibrate the routers of the multi-exit model of options/study/routing.yml
# (32 features, 32 blocks, exits 4, 8, 16; trained by: sd-study options/study/routing.yml --out results/routing),
# evaluate them on Set5 / Set14 and draw the route map of one photo. Everything is written under results/routing_eval
# (git-ignored); the small JSON / markdown / PNG files are copied to docs/routing/.
#   ITER=8000 scripts/routing_study.sh      # the checkpoint's iteration (default: the latest saved one)
#   MAP="--budget 0.6 --router edge --bicubic"   # the route map's budget and router (default: this)
# Run it on a quiet machine (nothing else running): step 2 and 5 time every routed run against the teacher.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=results/routing/runs/sd32_seed0/experiments/sd32_seed0/models
ITER=${ITER:-$(ls "$MODELS" | sed -n 's/^net_g_\([0-9]*\)\.pth$/\1/p' | sort -n | tail -1)}
OUT=results/routing_eval
MAP=${MAP:---budget 0.6 --router edge --bicubic}
ROUTERS="edge learned random oracle edge+bicubic learned+bicubic random+bicubic oracle+bicubic"
mkdir -p "$OUT" docs/routing
# A copy of the checkpoint: its calibration (CKPT.routing.json) is written beside it, never into the study's folder.
CKPT=$OUT/sd32_${ITER}.pth
cp "$MODELS/net_g_${ITER}.pth" "$CKPT"
export OMP_NUM_THREADS=1

# 1. Calibrate on the 291 training images (T91 + BSD200 HR; never the benchmark sets): the edge table and the
#    learned router (a ~400-parameter regressor on the trunk's features, fitted with the network frozen).
.venv/bin/sd-calibrate "$CKPT" --data ../shared/data/T91/HR ../shared/data/BSD200/HR --threads 1 --overwrite

# 2. Evaluate every router at every budget on Set5 and Set14 (1 thread; CPU ms per image, paired with the teacher).
#    --vs-fixed: each router and budget against the fixed exits at the MACs it actually ran (issue 26).
.venv/bin/sd-eval "$CKPT" --data datasets --sets Set5 Set14 --budget 0.5 0.6 0.7 0.8 0.85 1 \
  --router $ROUTERS --threads 1 --overwrite \
  --json "$OUT/budget.json" --markdown "$OUT/budget.md" --plot "$OUT/budget.png" --vs-fixed "$OUT/vs_fixed.json"

# The summary and plot are views of the records: scripts/routing_summary.py redraws them (and prints every router
# against random at 0.6 and 0.7, paired by image) without rerunning the evaluation.
.venv/bin/python scripts/routing_summary.py "$OUT/budget.json" --plot "$OUT/budget.png"

# 3. The route map of one photo: scikit-image's chelsea (in no training or benchmark set), its x4 MATLAB-bicubic LR.
LR=$OUT/chelsea_lr.png
.venv/bin/python -c "
import cv2, skimage.data
from sd_plugin.compare import derive_lr
_, lr = derive_lr(skimage.data.chelsea(), 4)
cv2.imwrite('$LR', lr[..., ::-1])"
.venv/bin/sd-upscale "$LR" --model "$CKPT" $MAP --tile 0 --threads 1 --overwrite \
  --out "$OUT/upscaled" --route-map "$OUT/route_map.png"

# 4. The route tile: Set5 at budget 0.7 with 16 and 64 LR-pixel tiles (32, the default, is in step 2).
for T in 16 64; do
  .venv/bin/sd-eval "$CKPT" --data datasets --sets Set5 --budget 0.7 --router $ROUTERS \
    --route-tile $T --threads 1 --overwrite --json "$OUT/tile$T.json" --markdown "$OUT/tile$T.md"
done

# 5. Times again, routers that need no ground truth only: budget 0.7, Set5 and Set14.
.venv/bin/sd-eval "$CKPT" --data datasets --sets Set5 Set14 --budget 0.7 \
  --router edge learned random edge+bicubic learned+bicubic random+bicubic --threads 1 \
  --overwrite --quiet --json "$OUT/paused_set5.json" --markdown "$OUT/paused_set5.md"
cp "$OUT/paused_set5.md" docs/routing/timing_quiet.md

cp "$OUT/budget.json" "$OUT/budget.md" "$OUT/budget.png" "$OUT/vs_fixed.json" "$OUT/route_map.png" "$OUT"/tile*.md \
  docs/routing/
echo "checkpoint: net_g_${ITER}.pth; results in $OUT and docs/routing"
