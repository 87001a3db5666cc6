#!/usr/bin/env bash
# Everything this project checks on a GPU, in one short run (about 9 minutes on one H100, the most important first; the
# device time per session is about 15 minutes, start-up included). Writes into OUT_DIR:
#   gpu_checks.log     everything printed
#   bench_train.jsonl  bench_train.py: before/after runs per cell and their ratios (issue 11)
#   trace_*_VARIANT.txt  torch.profiler tables of five R-FCN / VGG-16 steps per variant
#   bench_eval.jsonl   bench_eval.py: two forward passes per test image vs one (issue 11)
#   pytest_cuda.log    tests that run on CUDA when present (fp32 box geometry under bf16, issue 8;
#                      page-locked training batches, issue 11)
#
#   bash benchmarks/gpu_checks.sh OUT_DIR
# Needs: python3 with torch/torchvision (CUDA), and this package's dependencies. The lent
# machines have torch but no network: carry the other wheels in .whl/ (kept out of git by
# .git/info/exclude), made here with
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --no-deps -d .whl \
#     jsonschema jsonschema-specifications referencing rpds-py pycocotools
# and installed there by the caller, before this script:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site bash benchmarks/gpu_checks.sh "$OUT"
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee -a "$out/gpu_checks.log") 2>&1
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
bench() {  # bench CELL SECONDS VARIANTS [extra args]: one process per variant
  local cell=$1 secs=$2 variants=$3; shift 3
  local n; n=$(tr ',' '\n' <<< "$variants" | wc -l)
  timeout $((n * (secs + 40) + 60)) $py benchmarks/bench_train.py "$cell" --data dataset --synthetic \
    --amp bf16 --device cuda --warmup 3 --iters 400 --max-seconds "$secs" --compare \
    --variants "$variants" --json "$out/bench_train.jsonl" "$@" || echo "bench_train $cell: exit $?"
}

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'gpus', torch.cuda.device_count())"
$py -m klrpn.cli data synth --root synthetic

step "1. training throughput, paper cells at full width, 600 px, bf16, before vs after (issue 11)"
# before: padding 32, losses read at once, torchvision's FrozenBatchNorm2d and masked-read RPN
# losses (--legacy-ops), pageable batches; before-bench: the same with cuDNN autotuning (the
# issue's figures)
bench coco-faster_rcnn-resnet101-klrpn 10 before,after
bench coco-faster_rcnn-vgg16-klrpn 10 before-bench,after,after-nobench,after+cl \
  --trace "$out/trace_coco-vgg16.txt"
bench coco-rfcn-resnet101-klrpn 10 before,after,after+cl --trace "$out/trace_coco-rfcn.txt"

step "2. evaluation: two forward passes per test image vs one; the whole evaluation (issue 11)"
timeout 150 $py benchmarks/bench_eval.py --profile paper --synthetic --device cuda --images 15 \
  --cells coco-faster_rcnn-resnet101-klrpn voc07-rfcn-resnet101-klrpn \
  | tee "$out/bench_eval.jsonl"; echo "bench_eval exit ${PIPESTATUS[0]}"
timeout 150 $py benchmarks/bench_eval.py --whole --rounds 1 --profile paper --synthetic --device cuda \
  --cells coco-faster_rcnn-resnet101-klrpn voc07-rfcn-resnet101-klrpn \
  | tee -a "$out/bench_eval.jsonl"; echo "bench_eval --whole exit ${PIPESTATUS[0]}"
step "3. CUDA tests: fp32 box geometry under bf16 autocast (issue 8), pinned batches (issue 11)"
timeout 180 $py -m pytest -q -p no:cacheprovider tests/models/test_fp32_geometry.py \
  tests/data/test_sampler.py -k cuda \
  > "$out/pytest_cuda.log" 2>&1; echo "pytest exit $?"; tail -n 3 "$out/pytest_cuda.log"

step "done"
