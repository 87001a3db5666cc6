#!/usr/bin/env bash
# Regenerate requirements/lock.txt: the exact version and the sha256 hashes of every package
# scripts/setup.sh installs, for every Python >= 3.11 and platform (one universal file with
# environment markers). Inputs: pyproject.toml (dependencies, extras `pipeline` and `dev`) and
# requirements/lock.in (the torch pins, setuptools). Resolved with uv against PyPI.
#
#   bash scripts/lock.sh                           # keep the locked versions, add / drop what the inputs changed
#   bash scripts/lock.sh --upgrade                 # newest versions of everything the inputs allow
#   bash scripts/lock.sh --upgrade-package numpy   # newest numpy only
#
# Extra arguments go to `uv pip compile`. KLRPN_LOCK_INDEX replaces the index (default PyPI);
# UV names a uv binary to use instead of the pinned one this script installs into
# ${XDG_CACHE_HOME:-~/.cache}/klrpn/uv-<version>.
set -euo pipefail
cd "$(dirname "$0")/.."
uv_version=0.13.9
python=${PYTHON:-python3}
uv=${UV:-}
if [ -z "$uv" ]; then
  tool="${XDG_CACHE_HOME:-$HOME/.cache}/klrpn/uv-$uv_version"
  if [ ! -x "$tool/bin/uv" ]; then
    echo "[lock] installing uv $uv_version into $tool"
    "$python" -m venv "$tool"
    "$tool/bin/pip" install --quiet --disable-pip-version-check "uv==$uv_version"
  fi
  uv="$tool/bin/uv"
fi
"$uv" pip compile pyproject.toml requirements/lock.in \
  --extra pipeline --extra dev \
  --universal --python-version 3.11 --fork-strategy fewest \
  --generate-hashes --no-config \
  --index-url "${KLRPN_LOCK_INDEX:-https://pypi.org/simple}" \
  --custom-compile-command "bash scripts/lock.sh" \
  --quiet --output-file requirements/lock.txt "$@"
echo "[lock] wrote requirements/lock.txt; run bash scripts/setup.sh to install it into .venv"
