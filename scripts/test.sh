#!/usr/bin/env bash
# The test command: set up .venv, then run the whole test suite (unit tests, the Snakemake lint,
# the paper-DAG dry run and a smoke run of one RPN and one KL-RPN cell; see tests/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One worker per core (at most 4), each test module on one worker (module fixtures run once);
# KLRPN_TEST_WORKERS=0 runs everything in this process.
exec .venv/bin/python -m pytest -n "${KLRPN_TEST_WORKERS:-auto}" --maxprocesses 4 --dist loadscope "$@"
