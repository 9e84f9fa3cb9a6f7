#!/usr/bin/env bash
# Issue 23's family study: start it, or continue it where it stopped (finished runs are skipped, interrupted ones
# resume from their last checkpoint), then refresh docs/family/ (summary.json, summary.md, gaps.png) from the runs
# that have finished. Two runs at a time, one thread each; ~8 core-hours for seeds 0-2 of the paper's recipe and
# its twins, ~45 min of a core per remedy and seed (docs/study.md, "The family study").
#   nohup scripts/family_study.sh > results/family.log 2>&1 &
#   REPORT_ONLY=1 scripts/family_study.sh     # only refresh docs/family/ from what has finished
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/family}
scripts/prepare_cpu_data.sh
if [ -z "${REPORT_ONLY:-}" ]; then
  OMP_NUM_THREADS=1 .venv/bin/sd-study options/study/family.yml --out "$OUT" --parallel "${PARALLEL:-2}" || true
fi
.venv/bin/sd-study options/study/family.yml --out "$OUT" --report-only
mkdir -p docs/family
cp "$OUT/family/summary.json" "$OUT/family/summary.md" "$OUT/family/gaps.png" docs/family/
cat docs/family/summary.md
