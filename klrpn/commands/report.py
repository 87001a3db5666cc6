"""``klrpn report``: render a report from the runs' metrics.json files.

table1 / table2: the paper's tables from results/<cell>/metrics.json. significance, proposals,
ablations (issue 10): over the seeds given by --seeds, each seed's run read from
klrpn.layout.run_dir(--results, cell, seed) (results/<cell> for seed 0,
results/seed<N>/<cell> for seed N).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def seed_list(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0 1 2"`` -> [0, 1, 2] (integers >= 0, at least one)."""
    try:
        seeds = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: expected integers like 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: expected integers >= 0")
    return seeds


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="render reports/{table1,table2,significance,proposals,ablations}.md",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=["table1", "table2", "significance", "proposals", "ablations"])
    p.add_argument("--results", default="results", help="directory holding <cell>/metrics.json")
    p.add_argument("--out", required=True, help="markdown file to write (atomically)")
    p.add_argument("--params", default=None,
                   help="params directory holding cells.yaml (default: $KLRPN_PARAMS or ./params)")
    p.add_argument("--profile", default=None,
                   help="require every metrics.json to come from this profile (smoke|paper)")
    p.add_argument("--seeds", type=seed_list, default=[0],
                   help="seeds to read (significance, proposals, ablations), e.g. 0,1,2 (default 0)")
    p.add_argument("--pairs", default=None,
                   help="significance, proposals: only these pairs, by RPN cell, comma-separated "
                        "(default: every pair of Tables 1-2)")
    p.add_argument("--csv", default=None,
                   help="significance: the CSV to write (default: --out with .csv)")
    p.add_argument("--png", default=None,
                   help="proposals: the figure to write (default: --out with .png)")
    p.add_argument("--resamples", type=int, default=1000,
                   help="significance: bootstrap resamples (default 1000)")
    p.add_argument("--bootstrap-seed", type=int, default=0,
                   help="significance: seed of the bootstrap's resampling (default 0)")
    p.add_argument("--workers", type=int, default=1,
                   help="significance: processes sharing the resamples (default 1; same result)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from klrpn import reports
    from klrpn.config import ParamsError
    from klrpn.layout import CELLS_INDEX

    out = Path(args.out)
    pairs = [c for c in args.pairs.replace(",", " ").split()] if args.pairs else None
    try:
        if args.table in ("table1", "table2"):
            cells_file = Path(args.params) / CELLS_INDEX if args.params else None
            written = [reports.write_table(int(args.table[-1]), out, args.results,
                                           cells_file=cells_file, profile=args.profile)]
        elif args.table == "significance":
            if args.resamples < 1000:
                print(f"klrpn report: note: {args.resamples} resamples (< 1000)", file=sys.stderr)
            csv = Path(args.csv) if args.csv else out.with_suffix(".csv")
            reports.write_significance(out, csv, args.results, args.seeds, params_dir=args.params,
                                       profile=args.profile, resamples=args.resamples,
                                       bootstrap_seed=args.bootstrap_seed, workers=args.workers,
                                       pairs=pairs)
            written = [out, csv]
        elif args.table == "proposals":
            png = Path(args.png) if args.png else out.with_suffix(".png")
            reports.write_proposals(out, png, args.results, args.seeds, profile=args.profile,
                                    pairs=pairs)
            written = [out, png]
        else:
            reports.write_ablations(out, args.results, args.seeds, params_dir=args.params,
                                    profile=args.profile)
            written = [out]
    except (reports.ReportError, ParamsError, ValueError, FileNotFoundError) as e:
        print(f"klrpn report: {e}", file=sys.stderr)
        return 2
    print(f"klrpn report: wrote {', '.join(map(str, written))}")
    return 0
