#!/usr/bin/env bash
# The CUDA paths on one GPU machine, end to end (issue 4): a smoke cell with AMP, DDP through
# torchrun, a full-width VGG-16 Faster R-CNN paper cell at 600 px on synthetic data (bf16 and
# fp32), the KL-RPN/RPN latency ratio on the GPU. Writes logs and JSON lines into $1.
#   bash benchmarks/gpu_checks.sh results/gpu-checks
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'gpus', torch.cuda.device_count())"
$py -m klrpn.cli data synth --root synthetic

step "1. smoke cell on one GPU, AMP bf16"
$py -m klrpn.cli train coco-faster_rcnn-vgg16-klrpn --profile smoke --out "$out/smoke-vgg16-klrpn" \
  --device cuda --amp bf16 > "$out/smoke-train.log" 2>&1; echo "train exit $?"; tail -n 3 "$out/smoke-train.log"
$py -m klrpn.cli evaluate coco-faster_rcnn-vgg16-klrpn --profile smoke --out "$out/smoke-vgg16-klrpn" \
  --device cuda > "$out/smoke-eval.log" 2>&1; echo "evaluate exit $?"
$py -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['metrics'], m['proposals'], m['speed'])" \
  "$out/smoke-vgg16-klrpn/metrics.json"

step "2. DDP: torchrun, one process per GPU"
n=$($py -c "import torch; print(torch.cuda.device_count())")
torchrun --standalone --nproc_per_node="$n" -m klrpn.cli train voc07-rfcn-resnet101-rpn --profile smoke \
  --out "$out/ddp-rfcn" --device cuda --amp bf16 > "$out/ddp.log" 2>&1; echo "torchrun exit $?"; tail -n 3 "$out/ddp.log"

step "3. full-width VGG-16 Faster R-CNN (paper cell), 600 px, synthetic data"
for cell in coco-faster_rcnn-vgg16-rpn coco-faster_rcnn-vgg16-klrpn; do
  for amp in bf16 off; do
    $py benchmarks/bench_train.py "$cell" --data dataset --data-root synthetic/coco \
      --batch-size 4 --warmup 20 --iters 150 --amp "$amp" --device cuda --cudnn-benchmark \
      --json "$out/bench_train.jsonl" 2>&1 | tail -n 1
  done
done
$py benchmarks/bench_train.py coco-faster_rcnn-resnet101-klrpn --data dataset --data-root synthetic/coco \
  --batch-size 4 --warmup 10 --iters 60 --amp bf16 --device cuda --cudnn-benchmark \
  --json "$out/bench_train.jsonl" 2>&1 | tail -n 1

step "4. KL-RPN / RPN inference latency on the GPU"
$py benchmarks/bench_rpn_latency.py --device cuda --rounds 30 --warmup 5 | tee "$out/latency.md"
step "done"
