#!/usr/bin/env bash
# The main job on the embedded default: set up .venv, then run the whole smoke DAG on CPU —
# synthetic data, the smoke profile of all 12 cells, Figure 3 and the reports.
# Extra arguments go to Snakemake (e.g. `bash scripts/smoke.sh -n` for a dry run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
start=$(date +%s)
.venv/bin/snakemake --profile workflow/profiles/smoke "$@"
echo
echo "Smoke run finished in $(( $(date +%s) - start )) s. Reports:"
for f in reports/table1.md reports/table2.md reports/figure3.md reports/figure3.png; do
  [ -e "$f" ] && echo "  $PWD/$f"
done
echo "Per-cell results (metrics.json, checkpoints, training curves): $PWD/results/"
