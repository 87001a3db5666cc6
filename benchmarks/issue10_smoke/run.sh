#!/bin/bash
# usage: run.sh SEED
export PYTHONPATH=/work/wt-significance PATH=/work/main/.venv/bin:$PATH
cd /tmp/sig-e2e
s=$1
if [ $s = 0 ]; then base=results; else base=results/seed$s; fi
for p in rpn klrpn; do
  c=voc07-rfcn-resnet101-$p
  klrpn train $c --profile smoke --params params-s$s --out $base/$c > log-train-$c-s$s.txt 2>&1 || echo FAIL $c $s
done
echo DONE
