#!/usr/bin/env bash
# Everything this project checks on a GPU, in one short run (about 9 minutes on one H100, the
# most important first; the device time per session is about 15 minutes, start-up included).
# Writes into OUT_DIR:
#   gpu_checks.log     everything printed
#   bench_train.jsonl  bench_train.py: training throughput of this checkout ("after") against
#                      the package in BASELINE_SRC ("baseline"), paper cells at full width,
#                      600 px, bf16, at the per-GPU batch, then "after" at the whole global
#                      batch on one GPU; images/s, median step, GPU busy %, peak memory
#   trace_*_after.txt  torch.profiler tables of five R-FCN / VGG-16 steps
#   pytest_cuda.log    tests that run on CUDA when present (fp32 box geometry under bf16,
#                      page-locked training batches)
#   bench_eval.jsonl   only with GPU_CHECKS_EVAL=1: evaluation, two forward passes vs one
#
#   BASELINE_SRC=DIR bash benchmarks/gpu_checks.sh OUT_DIR
# BASELINE_SRC: klrpn/ and params/ of the code to compare against, made here with
#   bash benchmarks/baseline_src.sh REV .baseline_src   (and carried to the GPU machine);
# without it the baseline runs are skipped. Each timed run lasts SECONDS (default 30) after 3
# warm-up steps: 11 runs fit the 9 minutes.
# Needs: python3 with torch/torchvision (CUDA), and this package's dependencies. The lent
# machines have torch but no network: carry the other wheels in .whl/ (kept out of git by
# .git/info/exclude), made here with
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --no-deps -d .whl \
#     jsonschema jsonschema-specifications referencing rpds-py pycocotools
# and installed there by the caller, before this script:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site BASELINE_SRC=.baseline_src bash benchmarks/gpu_checks.sh "$OUT"
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee -a "$out/gpu_checks.log") 2>&1
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
secs=${SECONDS_PER_RUN:-30}
bench() {  # bench CELL BATCH VARIANTS [extra args]: one process per variant
  local cell=$1 batch=$2 variants=$3; shift 3
  local n; n=$(tr ',' '\n' <<< "$variants" | wc -l)
  local mode=(--compare --variants "$variants")
  if [ -z "${BASELINE_SRC:-}" ] || [ "$variants" = after ]; then
    mode=(--label after); n=1
  else
    mode+=(--baseline-src "$BASELINE_SRC")
  fi
  timeout $((n * (secs + 60) + 30)) $py benchmarks/bench_train.py "$cell" --data dataset --synthetic \
    --amp bf16 --device cuda --warmup 3 --iters 100000 --max-seconds "$secs" --batch-size "$batch" \
    "${mode[@]}" --json "$out/bench_train.jsonl" "$@" || echo "bench_train $cell: exit $?"
}

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'gpus', torch.cuda.device_count())"
$py -m klrpn.cli data synth --root synthetic

step "1. training throughput, paper cells, full width, 600 px, bf16: per-GPU batch, baseline vs after"
bench coco-faster_rcnn-vgg16-klrpn 4 baseline,after --trace "$out/trace_coco-vgg16.txt"
bench coco-faster_rcnn-resnet101-klrpn 4 baseline,after
bench coco-rfcn-resnet101-klrpn 2 baseline,after --trace "$out/trace_coco-rfcn.txt"
bench voc07-rfcn-resnet101-rpn 2 baseline,after  # per-GPU = global batch (one GPU)

step "2. CUDA tests: fp32 box geometry under bf16 autocast, pinned batches"
timeout 180 $py -m pytest -q -p no:cacheprovider tests/models/test_fp32_geometry.py \
  tests/data/test_sampler.py -k cuda \
  > "$out/pytest_cuda.log" 2>&1; echo "pytest exit $?"; tail -n 3 "$out/pytest_cuda.log"

step "3. the whole global batch on one GPU (what a one-GPU user gets), after"
bench coco-faster_rcnn-vgg16-klrpn 16 after
bench coco-faster_rcnn-resnet101-klrpn 16 after
bench coco-rfcn-resnet101-klrpn 8 after

if [ -n "${GPU_CHECKS_EVAL:-}" ]; then
  step "4. evaluation: two forward passes per test image vs one"
  timeout 150 $py benchmarks/bench_eval.py --profile paper --synthetic --device cuda --images 15 \
    --cells coco-faster_rcnn-resnet101-klrpn voc07-rfcn-resnet101-klrpn \
    | tee "$out/bench_eval.jsonl"; echo "bench_eval exit ${PIPESTATUS[0]}"
fi

step "done"
