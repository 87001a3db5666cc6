"""``klrpn train CELL``: train one cell into ``--out`` (resumes from its newest checkpoint)."""

from __future__ import annotations

import argparse
import sys

from klrpn.commands import add_cell_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train one cell (resumable; see docs/training.md)",
                              description=__doc__)
    add_cell_arguments(p, out_help="output folder (default results/CELL)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N (default: CUDA when the cell has train.gpus > 0 and a GPU exists)")
    p.add_argument("--amp", choices=["bf16", "fp16", "off"], default=None,
                   help="autocast dtype on CUDA (default: train.amp, bf16 where supported)")
    p.add_argument("--restart-on-params-change", action="store_true",
                   help="if --out holds a run made with other params, data or training code "
                        "(klrpn.identity), move it to --out/stale-<run id>/ and train afresh "
                        "(default: refuse; the pipelines pass this)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from klrpn.checkpoint import CheckpointError
    from klrpn.config import ParamsError
    from klrpn.gpu import GPUClaimError
    from klrpn.runlock import RunLockError
    from klrpn.launch import train_cell
    from klrpn.monitor import DivergenceError

    try:
        return train_cell(args.cell, args.profile, args.out, params_dir=args.params,
                          device=args.device, amp=args.amp,
                           restart_on_params_change=args.restart_on_params_change,
                           seed=args.seed, overrides=args.set)
    except (ParamsError, CheckpointError, GPUClaimError, DivergenceError, RunLockError,
            FileNotFoundError) as e:
        print(f"klrpn train: {e}", file=sys.stderr)
        return 1
