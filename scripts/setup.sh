#!/usr/bin/env bash
# Create ./.venv (once) and install into it exactly the packages of requirements/lock.txt
# (versions and sha256 hashes; `bash scripts/lock.sh` regenerates it), then klrpn itself
# (editable, without dependencies). Checks afterwards that every locked package has its locked
# version. Re-running is cheap: it reinstalls only when the lock, pyproject.toml, KLRPN_TORCH or
# the Python changed, or an installed package no longer has its locked version.
# KLRPN_TORCH replaces the locked torch stack (torch, torchvision and the packages only they
# need: CUDA libraries, triton, ...) by pip arguments of your choice, installed first, e.g.
#   KLRPN_TORCH="torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cu126"
# the rest of the lock is then installed as locked.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
lock=requirements/lock.txt
stamp=.venv/.klrpn-lock
pip=(.venv/bin/pip install --quiet --disable-pip-version-check)
too_old() { ! "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
if [ ! -x .venv/bin/python ]; then
  if too_old "$python"; then
    echo "[setup] $python is $("$python" --version 2>&1 || echo missing): $lock is for Python >= 3.11" \
         "(snakemake 9 needs it); set PYTHON=python3.11 or newer" >&2
    exit 1
  fi
  echo "[setup] creating .venv with $($python --version)"
  "$python" -m venv .venv
elif too_old .venv/bin/python; then
  echo "[setup] .venv has $(.venv/bin/python --version); $lock is for Python >= 3.11: remove .venv" \
       "and rerun with PYTHON=python3.11 or newer" >&2
  exit 1
fi
key=$( { cat "$lock" pyproject.toml; echo "KLRPN_TORCH=${KLRPN_TORCH:-}"; .venv/bin/python -VV; } | sha256sum | cut -d' ' -f1)
check=(.venv/bin/python scripts/lockfile.py check "$lock")
if [ -n "${KLRPN_TORCH:-}" ]; then
  check+=(--except-torch)
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && ! "${check[@]}" --quiet; then
  echo "[setup] .venv no longer matches $lock (a package installed or changed by hand): reinstalling"
  rm -f "$stamp"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$key" ]; then
  rm -f "$stamp"
  if [ -n "${KLRPN_TORCH:-}" ]; then
    echo "[setup] installing KLRPN_TORCH ($KLRPN_TORCH), then the rest of $lock into .venv"
    # shellcheck disable=SC2086
    "${pip[@]}" $KLRPN_TORCH
    .venv/bin/python scripts/lockfile.py without-torch "$lock" .venv/.klrpn-lock-without-torch.txt
    "${pip[@]}" --no-deps --require-hashes -r .venv/.klrpn-lock-without-torch.txt
    printf '%s\n' "$KLRPN_TORCH" > .venv/.klrpn-torch
  else
    echo "[setup] installing $lock into .venv (into a new .venv: a few minutes)"
    "${pip[@]}" --no-deps --require-hashes -r "$lock"
    rm -f .venv/.klrpn-torch
  fi
  # pip keeps an installed version that satisfies the pin without being it (2.14.1+cu126 for
  # torch==2.14.1, e.g. after KLRPN_TORCH): reinstall whatever still differs from the lock
  if ! "${check[@]}" --quiet --write .venv/.klrpn-lock-differs.txt; then
    "${pip[@]}" --no-deps --require-hashes --force-reinstall -r .venv/.klrpn-lock-differs.txt
  fi
  "${pip[@]}" --no-deps --no-build-isolation -e .
  "${check[@]}"              # every locked package at its locked version, or stop here
  echo "$key" > "$stamp"
fi
versions=$(.venv/bin/python -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)')
echo "[setup] ready: $versions"
