#!/usr/bin/env bash
# Issue 26: every router against the fixed exits at equal MACs, on Set5 and Set14 at budgets 0.5 to 0.8 (sd-eval
# --budget ... --vs-fixed): docs/routing/vs_fixed.json (the fixed exits' PSNR linearly interpolated at the MACs each
# router actually ran), docs/routing/vs_fixed.md (the whole table: images ahead / tied / behind the fixed exits,
# images where one output ran everywhere, ms per image next to the teacher's). CKPT is calibrated first (T91 +
# BSD200 HR, as scripts/routing_study.sh does) unless it has a calibration already. The default model is the family
# study's paper-recipe network, seed 0 (options/study/family.yml, 8,000 iterations: scripts/family_study.sh trains it),
# copied to results/routing_family/.
#   scripts/routing_vs_fixed.sh                                               # the family study's sd32, seed 0
#   CKPT=results/routing_short/sd32_short.pth scripts/routing_vs_fixed.sh     # routing_short_model.sh's stand-in
#   BIN=.venv/bin DATA=datasets TRAIN=../shared/data                         # where the tools and the data are
#   BEFORE=901fe62 ROUTERS="edge edge+bicubic oracle" scripts/routing_vs_fixed.sh   # instead: the same evaluation
#     with the code of commit BEFORE (git archive into results/), written to results/routing_vs_fixed/before.json and
#     summarised (against the fixed exits) by scripts/routing_summary.py; docs/routing/ is left alone
#   MARGIN=0 ROUTERS="edge learned" scripts/routing_vs_fixed.sh   # instead: the current code with another --margin
#     (default: sd-eval's), written to results/routing_vs_fixed/margin_$MARGIN.json and summarised likewise;
#     docs/routing/ is left alone
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DATA=${DATA:-datasets}
TRAIN=${TRAIN:-../shared/data}
FAMILY=results/family/runs/sd32_seed0/experiments/sd32_seed0/models/net_g_latest.pth
CKPT=${CKPT:-results/routing_family/sd32_family_s0.pth}
if [ "$CKPT" = results/routing_family/sd32_family_s0.pth ] && [ ! -f "$CKPT" ]; then
  [ -f "$FAMILY" ] || { echo "$FAMILY: missing; train it first (scripts/family_study.sh)" >&2; exit 1; }
  mkdir -p results/routing_family && cp "$FAMILY" "$CKPT"
fi
ROUTERS=${ROUTERS:-edge learned random oracle edge+bicubic random+bicubic}
OUT=results/routing_vs_fixed
mkdir -p "$OUT" docs/routing
export OMP_NUM_THREADS=1
if [ -n "${BEFORE:-}" ]; then
  CODE=results/code_$BEFORE
  mkdir -p "$CODE"
  git archive "$BEFORE" sd_plugin | tar -x -C "$CODE"
  PYTHONPATH=$CODE "$BIN/sd-eval" "$CKPT" --data "$DATA" --sets Set5 Set14 --budget 0.5 0.6 0.7 0.8 \
    --router $ROUTERS --threads 1 --quiet --overwrite --json "$OUT/before.json"
  "$BIN/python" scripts/routing_summary.py "$OUT/before.json" --budgets 0.5 0.6 0.7 0.8
  exit
fi
if [ -n "${MARGIN:-}" ]; then
  "$BIN/sd-eval" "$CKPT" --data "$DATA" --sets Set5 Set14 --budget 0.5 0.6 0.7 0.8 --router $ROUTERS \
    --margin "$MARGIN" --threads 1 --quiet --overwrite --json "$OUT/margin_$MARGIN.json"
  "$BIN/python" scripts/routing_summary.py "$OUT/margin_$MARGIN.json" --budgets 0.5 0.6 0.7 0.8
  exit
fi
[ -f "$CKPT.routing.json" ] || "$BIN/sd-calibrate" "$CKPT" --data "$TRAIN/T91/HR" "$TRAIN/BSD200/HR" --threads 1
"$BIN/sd-eval" "$CKPT" --data "$DATA" --sets Set5 Set14 --budget 0.5 0.6 0.7 0.8 --router $ROUTERS \
  --threads 1 --quiet --overwrite --json "$OUT/budget.json" --markdown "$OUT/vs_fixed.md" \
  --vs-fixed "$OUT/vs_fixed.json"
cp "$OUT/vs_fixed.json" "$OUT/vs_fixed.md" docs/routing/
# The summary line of one image (Set5's bird at 0.6): which plan ran, and the predicted gains it compared.
"$BIN/sd-upscale" "$DATA/Set5/LRbicx4/bird.png" --model "$CKPT" --budget 0.6 --tile 0 --threads 1 --quiet \
  --overwrite --out "$OUT/upscaled"
