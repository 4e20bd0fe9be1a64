#!/usr/bin/env bash
# Every GPU figure issue 28 asks for, and the CUDA tests, in one call of a lent GPU machine,
# most important first (a lent machine has minutes, not hours: docs/performance.md, GPU).
#
#   bash benchmarks/gpu_checks.sh OUT_DIR [PYTHON]     # from the repository root
#
# PYTHON (default python3) needs torch with CUDA and sddr's dependencies; sddr itself is read
# from this checkout (PYTHONPATH), not installed. Each check runs under its own time limit and
# a failed check does not stop the rest. OUT_DIR gets gpu_checks.log (everything printed) and
# gpu_checks.jsonl (one JSON object per benchmark, with the check's name). For a dry run of
# the plumbing on a CPU: SDDR_CHECK_DEVICE=cpu SDDR_CHECK_QUICK=1 bash benchmarks/gpu_checks.sh DIR
set -u
out=${1:?usage: bash benchmarks/gpu_checks.sh OUT_DIR [PYTHON]}
py=${2:-python3}
device=${SDDR_CHECK_DEVICE:-cuda}
quick=${SDDR_CHECK_QUICK:-0}
mkdir -p "$out"
log=$out/gpu_checks.log
jsonl=$out/gpu_checks.jsonl
: >"$jsonl"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# quick: tiny sizes, fp32 only (bf16 on a CPU without AMX is slower than fp32 by far)
if [ "$quick" = 1 ]; then small=64 large=128 repeats=1 batches="1 2" halves=fp32 half=fp32
else small=1024 large=2048 repeats=20 batches="1 2 4 8 16" halves="fp16 bf16" half=bf16; fi

step() {  # step NAME SECONDS COMMAND...: run it under a limit, log it, never stop the script
  local name=$1 limit=$2
  shift 2
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" >>"$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local status=$?
  echo "=== $name: exit $status" >>"$log"
  return 0
}

record() {  # record NAME SECONDS COMMAND...: like step, its JSON output into the jsonl
  local name=$1 limit=$2
  shift 2
  local report=$out/.report
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" >>"$log"
  timeout --kill-after=10 "$limit" "$@" >"$report" 2>>"$log"
  local status=$?
  cat "$report" >>"$log"
  echo "=== $name: exit $status" >>"$log"
  "$py" -c 'import json, sys
text = open(sys.argv[2]).read().strip()
try:
    report = json.loads(text)
except ValueError:  # a script that printed more: its report is the last line
    report = json.loads(text.splitlines()[-1]) if text else None
if report is not None:
    print(json.dumps({"check": sys.argv[1], **report}))' "$name" "$report" >>"$jsonl" \
    2>>"$log"
  rm -f "$report"
  return 0
}

bench() {  # bench NAME SECONDS ARGS...: `sddr bench --device DEVICE ARGS --json`, recorded
  local name=$1 limit=$2
  shift 2
  record "$name" "$limit" "$py" -c 'import sys
from sddr_core.cli.main import main
sys.exit(main(sys.argv[1:]))' bench --device "$device" "$@" --json
}

step environment 60 bash -c "nvidia-smi || true; $py -c 'import torch, sys; \
print(sys.version); print(torch.__version__, torch.version.cuda, torch.cuda.is_available())'"
[ "$device" = cuda ] && step cuda-tests 240 "$py" -m pytest -q -p no:cacheprovider -m cuda \
  tests/test_refiner.py tests/test_network.py tests/test_coarse_to_fine.py tests/test_clip.py \
  tests/test_edge_snap.py
for dtype in $halves; do
  bench "one-stage $small $dtype" 120 --weights default --size "$small" --dtype "$dtype" \
    --repeats "$repeats"
  bench "one-stage $large $dtype" 120 --weights default --size "$large" --dtype "$dtype" \
    --repeats "$repeats"
done
bench "one-stage $small fp32" 120 --weights default --size "$small" --dtype fp32 \
  --repeats "$repeats"
bench "two-stage $small $half" 180 --weights default --mode two-stage --size "$small" \
  --dtype "$half" --repeats 3
record "memory 4k two-stage $half" 180 "$py" benchmarks/memory_4k.py --mode two-stage \
  --weights default --device "$device" --dtype "$half"
for batch in $batches; do
  bench "batch $batch $small $half" 120 --weights default --size "$small" --dtype "$half" \
    --batch "$batch" --repeats "$repeats"
done
[ "$quick" = 1 ] || bench "one-stage $small $half compiled" 300 --weights default \
  --size "$small" --dtype "$half" --compile --repeats "$repeats"
echo "done: $(wc -l <"$jsonl") reports in $jsonl, log in $log"
