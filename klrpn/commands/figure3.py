"""``klrpn figure3``: the paper's Figure 3 (offsets of high- vs low-objectness proposals)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "figure3", help="Figure 3: offset distributions of high vs low objectness proposals",
        description=__doc__)
    p.add_argument("--rpn", required=True, help="results directory of the RPN cell (holds model_final.pt)")
    p.add_argument("--klrpn", required=True, help="results directory of the KL-RPN cell")
    p.add_argument("--out", required=True, help="directory for figure3.png, figure3.csv, figure3.md")
    p.add_argument("--num-images", type=int, default=100, help="test images to use (paper: 100)")
    p.add_argument("--k-per-gt", type=int, default=5, help="samples per GT box and group (paper: 5)")
    p.add_argument("--device", default="cpu", help="torch device for the proposals (default cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from klrpn.figure3 import Figure3Error, run as figure3

    if args.num_images < 1 or args.k_per_gt < 1:
        print("klrpn figure3: --num-images and --k-per-gt must be >= 1", file=sys.stderr)
        return 2
    try:
        paths = figure3(args.rpn, args.klrpn, args.out, args.num_images, args.k_per_gt, args.device)
    except Figure3Error as e:
        print(f"klrpn figure3: {e}", file=sys.stderr)
        return 2
    print(f"klrpn figure3: wrote {', '.join(str(p) for p in paths.values())}")
    return 0
