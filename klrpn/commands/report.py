"""``klrpn report {table1,table2}``: render a paper table from results/<cell>/metrics.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="render reports/table{1,2}.md from results/*/metrics.json",
        description=__doc__)
    p.add_argument("table", choices=["table1", "table2"])
    p.add_argument("--results", default="results", help="directory holding <cell>/metrics.json")
    p.add_argument("--out", required=True, help="markdown file to write (atomically)")
    p.add_argument("--params", default=None,
                   help="params directory holding cells.yaml (default: $KLRPN_PARAMS or ./params)")
    p.add_argument("--profile", default=None,
                   help="require every metrics.json to come from this profile (smoke|paper)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from klrpn.config import ParamsError
    from klrpn.report import ReportError, write_table

    cells_file = Path(args.params) / "cells.yaml" if args.params else None
    try:
        out = write_table(int(args.table[-1]), args.out, args.results, cells_file, args.profile)
    except (ReportError, ParamsError) as e:
        print(f"klrpn report: {e}", file=sys.stderr)
        return 2
    print(f"klrpn report: wrote {out}")
    return 0
