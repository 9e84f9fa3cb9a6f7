#!/usr/bin/env bash
# The study of docs/study.md at the paper's scale (options/study/paper_gpu.yml: 64 features, teacher 32 / exit 8,
# DIV2K, GT 96, 40,000 iterations, 5 seeds for the claim's arms), for a machine with a GPU. Resumable: rerunning the
# same command continues it. Usage:
#   DIV2K_ROOT=/data/DIV2K bash scripts/study_gpu.sh [PARALLEL]     (PARALLEL runs share the GPU; default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DIV2K_ROOT:?set DIV2K_ROOT to the folder that holds DIV2K_train_HR/}"
SHARED=${SHARED:-../shared/data}
BIN=.venv/bin
[ -d datasets/DIV2K/DIV2K_train_HR_sub.lmdb ] || \
  $BIN/sd-prepare div2k --root "$DIV2K_ROOT" --out datasets/DIV2K --scale 4 --lmdb
for set in Set5 Set14; do
  [ -d "datasets/$set/GTmod4" ] || $BIN/sd-prepare benchmark --hr "$SHARED/$set/HR" --name "$set" --out "datasets/$set" \
    --scale 4
done
$BIN/sd-study options/study/paper_gpu.yml --out results/study_gpu --parallel "${1:-4}" --report docs/study_gpu
