"""Top-level test setup: tests/ on sys.path, so that every test folder can ``import helpers``."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
