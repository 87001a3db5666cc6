"""``klrpn evaluate CELL``: metrics.json and detections.json from ``--out``/model_final.pt."""

from __future__ import annotations

import argparse
import sys

from klrpn.commands import add_cell_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a trained cell -> metrics.json",
                              description=__doc__)
    add_cell_arguments(p, out_help="the cell's training folder (default results/CELL)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda:N (default: one free GPU when the cell trains on GPUs, else cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from klrpn.checkpoint import CheckpointError
    from klrpn.config import ParamsError
    from klrpn.evaluate import evaluate_cell
    from klrpn.gpu import GPUClaimError

    try:
        evaluate_cell(args.cell, args.profile, args.out, params_dir=args.params, device=args.device,
                      seed=args.seed, overrides=args.set)
    except (ParamsError, CheckpointError, GPUClaimError, FileNotFoundError) as e:
        print(f"klrpn evaluate: {e}", file=sys.stderr)
        return 1
    return 0
