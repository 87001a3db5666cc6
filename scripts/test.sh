#!/usr/bin/env bash
# The test command: set up .venv, then run the whole test suite (unit tests, the Snakemake lint,
# the paper-DAG dry run and a smoke run of one RPN and one KL-RPN cell; see tests/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
