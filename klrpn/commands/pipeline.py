"""``klrpn pipeline dvc-runs``: (re)generate DVC's per-run list from the cell list and seeds."""

from __future__ import annotations

import argparse
import sys

from klrpn.layout import DVC_RUNS_FILE


def register(subparsers) -> None:
    p = subparsers.add_parser("pipeline", help="files the pipelines derive from the cell list",
                              description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    runs = sub.add_parser("dvc-runs", help=f"write {DVC_RUNS_FILE} (one entry per cell and seed)")
    runs.add_argument("--params", default="params", help="params folder with cells.yaml")
    runs.add_argument("--dvc-vars", default="workflow/config/dvc-vars.yaml",
                      help="DVC's variables file (its `seeds`)")
    runs.add_argument("--config", default="workflow/config/config.yaml",
                      help="the workflow config (its `results`)")
    runs.add_argument("--out", default=DVC_RUNS_FILE, help="the file to write")
    runs.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 if the file is not current")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from klrpn.pipelines import PipelineConfigError, write_dvc_runs

    try:
        current = write_dvc_runs(args.out, check=args.check, params_dir=args.params,
                                 dvc_vars=args.dvc_vars, config=args.config)
    except PipelineConfigError as e:
        print(f"klrpn pipeline: {e}", file=sys.stderr)
        return 1
    if current:
        print(f"{args.out} is current")
        return 0
    if args.check:
        print(f"klrpn pipeline: {args.out} is not current: run `klrpn pipeline dvc-runs`",
              file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0
