#!/usr/bin/env bash
# Create ./.venv (once) and install klrpn with its pipeline and test extras into it.
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
# KLRPN_TORCH overrides the torch pin (e.g. KLRPN_TORCH="torch torchvision" for your CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp=.venv/.klrpn-installed
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing torch, torchvision and klrpn[pipeline,dev] into .venv (first time: a few minutes)"
  # shellcheck disable=SC2086
  .venv/bin/pip install --quiet --disable-pip-version-check ${KLRPN_TORCH:-torch==2.14.1 torchvision==0.29.1}
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[pipeline,dev]'
  touch "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)')"
