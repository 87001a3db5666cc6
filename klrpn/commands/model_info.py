"""``klrpn model-info CELL``: the architecture summary of one cell."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("model-info", help="parameter count and structure of a cell's model")
    p.add_argument("cell", help="cell id from params/cells.yaml, e.g. coco-faster_rcnn-vgg16-klrpn")
    p.add_argument("--profile", default="paper", help="params profile: paper (default) or smoke")
    p.add_argument("--params", default=None, help="params folder (default $KLRPN_PARAMS or ./params)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from klrpn.models.info import model_info

    info = model_info(args.cell, profile=args.profile, params_dir=args.params)
    if args.json:
        print(json.dumps(info, sort_keys=True))
    else:
        for key, value in info.items():
            print(f"{key:>18}: {value}")
    return 0
