"""Top-level test setup: tests/ on sys.path, so that every test folder can ``import helpers``."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def pytest_collection_modifyitems(config, items):
    """The end-to-end modules (marked slow or slurm) first, the rest after, each in collection
    order: with `pytest -n N --dist loadscope` (scripts/test.sh) the long modules start at once
    instead of last, which keeps the workers busy until the end."""
    def long_module(item):
        return any(item.get_closest_marker(m) for m in ("slow", "slurm"))
    items.sort(key=lambda item: not long_module(item))
