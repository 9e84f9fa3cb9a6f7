#!/usr/bin/env bash
# Prepare the data of the CPU-budget experiments (options/cpu/, sd-reproduce) from ../shared/data, or from the
# folder given as $1 (holding T91/HR, BSD200/HR, Set5/HR, Set14/HR), into datasets/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-../shared/data}
PREP=.venv/bin/sd-prepare
[ -d datasets/291/HR_sub.lmdb ] || $PREP folder --hr "$SRC/T91/HR" "$SRC/BSD200/HR" --name 291 --out datasets/291 \
  --scale 4 --subimages --lmdb
for set in Set5 Set14; do
  [ -d "datasets/$set/GTmod4" ] || $PREP benchmark --hr "$SRC/$set/HR" --name "$set" --out "datasets/$set" --scale 2 3 4
done
