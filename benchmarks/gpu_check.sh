#!/usr/bin/env bash
# GPU check of the benchmarks and a short real training, within 8 minutes on one GPU (H200).
#
#   bash benchmarks/gpu_check.sh --prepare        here, on CPU: write .device_data/ (git-ignored, ~50 MB): the 291
#                                                 training set (sd-prepare folder --subimages, as lossless WebP),
#                                                 Set5/Set14 (sd-prepare benchmark) and a copy of basicsr
#   bash benchmarks/gpu_check.sh [--out DIR]      on the GPU machine: reads only .device_data/ (and the working tree)
#   bash benchmarks/gpu_check.sh --dry-run        here, on CPU: the same steps with tiny sizes (prepares first when
#                                                 .device_data/ is missing)
#
# Steps: unpack the 291 set into .device_data/work/; bench_train, bench_infer and bench_val on CUDA in fp32 and bf16;
# sd-train of benchmarks/gpu/sd32_exit8_x4.yml (SelfDistillSRModel, SRResNet-32, exit 8) and of
# benchmarks/gpu/msrresnet8_x4.yml (SRModel, MSRResNet-8), 3,000 iterations each, validated on Set5/Set14; the
# per-exit PSNR table (benchmarks/gpu_summary.py); then the three benches with --compile, and bench_train --options,
# as far as the time budget (default 450 s, --budget S) allows: each step runs under `timeout` with what is left
# (those last four may run out of time without failing the check).
# Results: results/gpu_check/ (logs and JSON; --out DIR also gets results.tar.gz and summary.txt, for a device run
# where DIR is $OUT). Exit status: 0 when every step that ran passed, 1 otherwise.
set -u -o pipefail

MODE=gpu
OUT_DIR=
BUDGET=
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) MODE=prepare ;;
    --dry-run) MODE=dry ;;
    --out) OUT_DIR=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
if [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
export PYTHONPATH="$ROOT:$ROOT/.device_data/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if [ "$MODE" = prepare ]; then
  exec "$PY" benchmarks/device_data.py pack
fi

# the sd-train console script where installed (not on the GPU image), else the same entry point
if [ -x .venv/bin/sd-train ]; then SD_TRAIN=("$ROOT/.venv/bin/sd-train")
elif command -v sd-train >/dev/null 2>&1; then SD_TRAIN=(sd-train)
else SD_TRAIN=("$PY" -c 'import sys; sys.argv[0] = "sd-train"; from sd_plugin.train import main; main()')
fi

RES=$ROOT/results/gpu_check
if [ "$MODE" = dry ]; then
  RES=$ROOT/results/gpu_check_dryrun
  BUDGET=${BUDGET:-3600}
  if [ ! -f .device_data/MANIFEST.json ]; then
    "$PY" benchmarks/device_data.py pack || exit 1
  fi
  DEVICE=cpu
  # tiny sizes: the same code paths, minutes on 2 cores
  TRAIN_ARGS=(--quick --rounds 2 --batch 2 --gt-size 32)
  INFER_ARGS=(--quick --rounds 2 --lr-size 32x32)
  VAL_ARGS=(--quick --rounds 2 --lr-size 32x32)
  OPTIONS=(channels_last bf16 compile channels_last_bf16)
  SUFFIX=_dryrun
  FORCE=(num_gpu=0 train:total_iter=20 train:scheduler:periods=[20] network_g:num_feat=16
         datasets:train:batch_size_per_gpu=2 datasets:train:num_worker_per_gpu=0 datasets:train:prefetch_mode=~
         datasets:train:pin_memory=false val:val_freq=20 logger:print_freq=10 logger:save_checkpoint_freq=20)
  trap '"$PY" benchmarks/device_data.py clean-work' EXIT  # .device_data/work must not travel
else
  BUDGET=${BUDGET:-450}
  DEVICE=cuda
  TRAIN_ARGS=()
  INFER_ARGS=()
  VAL_ARGS=()
  OPTIONS=(channels_last bf16 fp16 compile channels_last_bf16 all)
  SUFFIX=
  FORCE=()
fi
rm -rf "$RES"
mkdir -p "$RES"
STATUS=()
FAILED=0

# step NAME CAP_S RESERVE_S CMD...: run CMD under timeout min(CAP, left - RESERVE), logging to $RES/NAME.log.
# A NAME starting with '?' is optional: running out of time there is reported but does not fail the check.
step() {
  local name=${1#\?} optional= cap=$2 reserve=$3
  [ "$name" != "$1" ] && optional=1
  shift 3
  local left=$((BUDGET - SECONDS - reserve)) limit=$cap
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    STATUS+=("$(printf '%-34s SKIPPED (time budget: %ss left)' "$name" $((BUDGET - SECONDS)))")
    echo "== $name: skipped, out of time budget" | tee -a "$RES/steps.log"
    [ -z "$optional" ] && FAILED=1
    return 0
  fi
  echo "== $name (limit ${limit}s, at ${SECONDS}s of ${BUDGET}s): $*" | tee -a "$RES/steps.log"
  local start=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$RES/$name.log"
  rc=${PIPESTATUS[0]}
  local took=$((SECONDS - start)) result=ok
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    result="TIMEOUT after ${limit}s"
    [ -z "$optional" ] && FAILED=1
  elif [ "$rc" -ne 0 ]; then result="FAILED (exit $rc)"; FAILED=1
  fi
  STATUS+=("$(printf '%-34s %-24s %4ss' "$name" "$result" "$took")")
  echo "== $name: $result in ${took}s" | tee -a "$RES/steps.log"
}

bench() {  # bench [?]CAP RESERVE KIND TAG [extra args...]: step KIND_TAG running benchmarks/bench_KIND.py
  local cap=${1#\?} reserve=$2 kind=$3 tag=$4 optional=
  [ "$cap" != "$1" ] && optional='?'
  shift 4
  local args_var="${kind^^}_ARGS[@]"
  step "$optional${kind}_$tag" "$cap" "$reserve" "$PY" "benchmarks/bench_$kind.py" --device "$DEVICE" \
    ${!args_var+"${!args_var}"} "$@" --json "$RES/${kind}_$tag.json"
}

train() {  # train CAP RESERVE YAML NAME: step sd_train_<yml name>, in a fresh experiments/NAME
  local cap=$1 reserve=$2 yml=$3 name=$4$SUFFIX
  rm -rf "experiments/$name"
  local force=()
  [ "$MODE" = dry ] && force=(--force_yml "${FORCE[@]}" "name=$name")
  step "sd_train_$(basename "$yml" .yml)" "$cap" "$reserve" "${SD_TRAIN[@]}" -opt "$yml" ${force[@]+"${force[@]}"}
}

echo "gpu_check.sh: mode $MODE, device $DEVICE, budget ${BUDGET}s, python $PY, results in $RES"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' | tee "$RES/environment.txt"
if [ "$DEVICE" = cuda ] && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu_check.sh: no CUDA here; use --dry-run on a CPU machine" >&2
  exit 1
fi

SD=gpu_check_sd32_exit8_x4
BASE=gpu_check_msrresnet8_x4
step unpack 120 330 "$PY" benchmarks/device_data.py unpack
for precision in fp32 bf16; do
  bench 60 300 train "$precision" --precision "$precision"
  bench 45 300 infer "$precision" --precision "$precision"
  bench 45 300 val "$precision" --precision "$precision"
done
train 170 110 benchmarks/gpu/sd32_exit8_x4.yml "$SD"
train 130 20 benchmarks/gpu/msrresnet8_x4.yml "$BASE"
step summary 30 0 "$PY" benchmarks/gpu_summary.py "$SD$SUFFIX" "$BASE$SUFFIX" --json "$RES/training_summary.json"
bench ?150 0 train compile --compile
bench ?90 0 infer compile --compile
bench ?90 0 val compile --compile
bench ?150 0 train options --options "${OPTIONS[@]}"

{
  echo
  echo "gpu_check.sh ($MODE, ${SECONDS}s of ${BUDGET}s): step results"
  printf '%s\n' "${STATUS[@]}"
  echo
  echo "Headline ratios (median of per-round ratios, MAC bound, goal):"
  for f in "$RES"/train_*.json "$RES"/infer_*.json "$RES"/val_*.json; do
    [ -f "$f" ] || continue
    "$PY" - "$f" <<'EOF'
import json, os, sys
r = json.load(open(sys.argv[1]))
for x in r['ratios']:
    verdict = x.get('verdict') or ('PASS' if x.get('passed') else 'MISS')
    goal = f"  goal {x['goal']}: {verdict}" if 'goal' in x else (f"  {verdict}" if x.get('verdict') else '')
    bound = '-' if x['bound'] is None else f"{x['bound']:.3f}"
    print(f"  {os.path.basename(sys.argv[1])[:-5]:15s} {x['name']:58s} {x['median']:.3f} "
          f"[{x['q1']:.3f}-{x['q3']:.3f}]  bound {bound}{goal}")
EOF
  done
  [ -f "$RES/summary.log" ] && { echo; grep -v '^==' "$RES/summary.log"; }
} | tee "$RES/summary.txt"

if [ -n "$OUT_DIR" ]; then
  mkdir -p "$OUT_DIR"
  tar -czf "$OUT_DIR/results.tar.gz" -C "$(dirname "$RES")" "$(basename "$RES")"
  cp "$RES/summary.txt" "$OUT_DIR/summary.txt"
fi
exit $FAILED
