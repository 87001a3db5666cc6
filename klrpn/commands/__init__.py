"""Sub-commands of the ``klrpn`` console command, one module each.

Every module here defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit status.
"""


def add_cell_arguments(parser, *, out_help: str) -> None:
    """The arguments every per-cell command shares: CELL, --profile, --params, --out, --seed,
    --set."""
    parser.add_argument("cell", help="cell id from params/cells.yaml, e.g. coco-faster_rcnn-vgg16-klrpn, "
                                     "or an ablation variant id from params/ablations.yaml")
    parser.add_argument("--profile", default="paper", help="params profile: paper (default) or smoke")
    parser.add_argument("--params", default=None, help="params folder (default $KLRPN_PARAMS or ./params)")
    parser.add_argument("--out", default=None, help=out_help)
    parser.add_argument("--seed", type=int, default=None,
                        help="run with this seed instead of the params' (own params hash; default "
                             "--out: klrpn.layout.run_dir, results/seed<N>/CELL for N > 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one params value, e.g. --set train.lr=0.002 (dotted key, "
                             "YAML value; repeatable; validated like a params file; own params "
                             "hash; default --out: results/set-<hash of the overrides>/CELL)")
