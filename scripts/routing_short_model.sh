#!/usr/bin/env bash
# A shorter stand-in for the routing study's model (issue 26): options/study/routing.yml's sd32 arm (32 features,
# 32 blocks, exits 4, 8, 16; seed 0, paired initial weights) trained for ITERS iterations only (default 3500), one
# thread, without the alone4 baseline and with one validation at the end. For when the long run's checkpoint is not
# at hand; docs that use it say so. The checkpoint lands in results/routing_short/ (git-ignored):
#   ITERS=3500 DATA=datasets scripts/routing_short_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${ITERS:-3500}
DATA=${DATA:-datasets}
BIN=$(cd "${BIN:-.venv/bin}" && pwd)
OUT=results/routing_short
mkdir -p "$OUT"
"$BIN/python" - "$ITERS" "$DATA" "$OUT" <<'PY'
import sys
from os import path as osp

from sd_plugin.study.runner import run_dir, write_init
from sd_plugin.study.spec import load_spec, run_options, write_yaml

iters, data, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
spec = load_spec('options/study/routing.yml', iters=iters, val_freq=iters, seeds=[0])
opt = run_options(spec, 'sd32', 0, osp.abspath(write_init(spec, 'sd32', 0, out)))
opt['train']['scheduler']['milestones'] = [int(iters * 0.6), int(iters * 0.8)]  # the long run's shape, scaled
for dataset in opt['datasets'].values():
    for key in ('dataroot_gt', 'dataroot_lq'):
        dataset[key] = osp.abspath(osp.join(data, dataset[key].split('/datasets/', 1)[1]))
write_yaml(opt, osp.join(run_dir(out, 'sd32', 0), 'opt.yml'))
PY
cd "$OUT/runs/sd32_seed0"
OMP_NUM_THREADS=1 "$BIN/sd-train" -opt opt.yml --auto_resume
cd "$OLDPWD"
cp "$OUT/runs/sd32_seed0/experiments/sd32_seed0/models/net_g_latest.pth" "$OUT/sd32_short.pth"
echo "checkpoint: $OUT/sd32_short.pth ($ITERS iterations)"
