"""The JSON schema of ``metrics.json`` (``klrpn/schemas/metrics.schema.json``, docs/metrics-json.md):
the one loader, used by the evaluation that writes the file and the reports that read it."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

SCHEMA_FILE = "schemas/metrics.schema.json"   # inside the klrpn package


@lru_cache(maxsize=1)
def metrics_schema() -> dict:
    """The schema; FileNotFoundError naming the file when the package lacks it."""
    ref = resources.files("klrpn").joinpath(SCHEMA_FILE)
    if not ref.is_file():
        raise FileNotFoundError(f"klrpn/{SCHEMA_FILE} is missing from the klrpn package")
    return json.loads(ref.read_text(encoding="utf-8"))
