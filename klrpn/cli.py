"""The ``klrpn`` console command: discovers the sub-commands in :mod:`klrpn.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from klrpn import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="klrpn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"klrpn {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
