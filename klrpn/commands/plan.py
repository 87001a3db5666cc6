"""``klrpn plan``: the runs a profile would train, their estimated GPU-hours and disk, and which
are already complete (klrpn.plan; nothing is trained or written)."""

from __future__ import annotations

import argparse
import json
import sys

from klrpn.commands.report import seed_list


def register(subparsers) -> None:
    from klrpn.throughput import DEFAULT_GPU_MODEL

    p = subparsers.add_parser(
        "plan", help="list the runs that would train: iterations, estimated GPU-hours, disk, "
                     "which are complete", description=__doc__)
    p.add_argument("--profile", default="paper", help="params profile: paper (default) or smoke")
    p.add_argument("--params", default=None, help="params folder (default $KLRPN_PARAMS or ./params)")
    p.add_argument("--results", default="results",
                   help="results folder holding the run folders (default results)")
    p.add_argument("--seeds", type=seed_list, default=[0],
                   help="seeds to plan, e.g. 0,1,2 (default 0; run folders as klrpn.layout.run_dir)")
    p.add_argument("--gpus", type=int, default=None,
                   help="GPUs each cell may train on (default: its train.gpus); sets GPUs and wall hours")
    p.add_argument("--gpu-model", default=DEFAULT_GPU_MODEL,
                   help=f"use throughput measured on this GPU (a part of its name; default "
                        f"{DEFAULT_GPU_MODEL}); none measured: exit status 2")
    p.add_argument("--throughput", nargs="+", default=None, metavar="FILE",
                   help="benchmarks/bench_train.py JSON lines files to use instead of the "
                        "measurements packaged with klrpn")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from klrpn.config import ParamsError
    from klrpn.plan import PlanError, format_plan, make_plan
    from klrpn.throughput import ThroughputError

    try:
        plan = make_plan(args.profile, results=args.results, params_dir=args.params,
                         gpus=args.gpus, gpu_model=args.gpu_model, throughput=args.throughput,
                         seeds=tuple(args.seeds))
    except (ThroughputError, PlanError) as err:
        print(f"klrpn plan: {err}", file=sys.stderr)
        return 2
    except ParamsError as err:
        print(f"klrpn plan: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(plan, sort_keys=True, default=str))
    else:
        print(format_plan(plan), end="")
    return 0
