#!/usr/bin/env bash
# Issue 26's times, one thread: `--budget` next to the nearest fixed exit, the whole command (process start, model
# load, calibration check, I/O: `sd-upscale` on Set14's ppt3, ROUNDS times each, interleaved) and the loop alone
# (`sd-eval` ms per image on Set5 and Set14, every fixed exit and the teacher timed in the same run). Run it with
# nothing else on the machine (the family study paused: kill -STOP its trainings, kill -CONT afterwards); the CKPT
# must be calibrated (scripts/routing_vs_fixed.sh). Writes results/routing_timing/ and docs/routing/timing_vs_fixed.md.
#   ROUNDS=5 scripts/routing_timing.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DATA=${DATA:-datasets}
CKPT=${CKPT:-results/routing_family/sd32_family_s0.pth}
ROUNDS=${ROUNDS:-5}
OUT=results/routing_timing
mkdir -p "$OUT" docs/routing
export OMP_NUM_THREADS=1
IMG="$DATA/Set14/LRbicx4/ppt3.png"
{
  echo "# --budget against the nearest fixed exit, 1 thread ($(date -u +%F), load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  echo "Whole command: \`sd-upscale $IMG --model CKPT --tile 0 --threads 1\` with the option below, $ROUNDS rounds,"
  echo "interleaved; median wall seconds (process start, imports, model load and I/O included)."
  echo
  echo "| option | median s | all rounds (s) |"
  echo "|---|---|---|"
} > "$OUT/timing.md"
declare -A TIMES
OPTS=("--exit 8" "--budget 0.6" "--exit 16" "--budget 0.7" "--exit 32")
for r in $(seq "$ROUNDS"); do
  for o in "${OPTS[@]}"; do
    s=$(date +%s.%N)
    "$BIN/sd-upscale" "$IMG" --model "$CKPT" $o --tile 0 --threads 1 --quiet --overwrite --out "$OUT/up" > /dev/null
    TIMES[$o]="${TIMES[$o]:-} $(echo "$(date +%s.%N) - $s" | bc)"
  done
done
for o in "${OPTS[@]}"; do
  med=$(echo ${TIMES[$o]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  echo "| \`$o\` | $(printf %.2f "$med") | $(for t in ${TIMES[$o]}; do printf '%.2f ' "$t"; done)|" >> "$OUT/timing.md"
done
echo >> "$OUT/timing.md"
echo "The loop (\`sd-eval --budget 0.6 0.7 --router edge\`, ms per image; the fixed exits and the teacher in the same run):" >> "$OUT/timing.md"
echo >> "$OUT/timing.md"
"$BIN/sd-eval" "$CKPT" --data "$DATA" --sets Set5 Set14 --budget 0.6 0.7 --router edge --threads 1 --quiet \
  --overwrite --json "$OUT/loop.json" --markdown "$OUT/loop.md"
cat "$OUT/loop.md" >> "$OUT/timing.md"
cp "$OUT/timing.md" docs/routing/timing_vs_fixed.md
cat "$OUT/timing.md"
