#!/bin/bash
# usage: eval1.sh PROPOSAL SEED
export PYTHONPATH=/work/wt-significance PATH=/work/main/.venv/bin:$PATH
cd /tmp/sig-e2e
c=voc07-rfcn-resnet101-$1
if [ $2 = 0 ]; then out=results/$c; else out=results/seed$2/$c; fi
klrpn evaluate $c --profile smoke --params params-s$2 --out $out > log-eval-$c-s$2.txt 2>&1 && echo OK || echo FAIL $c $2
