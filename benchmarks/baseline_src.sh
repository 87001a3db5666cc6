#!/usr/bin/env bash
# Export another version's package and params for the before/after benchmarks
# (bench_host_ops.py --baseline-src, bench_train.py --baseline-src):
#   bash benchmarks/baseline_src.sh REV DIR
# writes DIR/klrpn and DIR/params of git revision REV (DIR must not exist yet).
set -euo pipefail
rev=${1:?usage: baseline_src.sh REV DIR}
dir=${2:?usage: baseline_src.sh REV DIR}
[ -e "$dir" ] && { echo "baseline_src.sh: $dir exists; give a new folder" >&2; exit 1; }
tmp="$dir.tmp.$$"
mkdir -p "$tmp"
git archive "$rev" klrpn params | tar -x -C "$tmp"
mv "$tmp" "$dir"
echo "$rev" > "$dir/REVISION"
echo "exported klrpn/ and params/ of $rev to $dir"
