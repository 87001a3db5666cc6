"""What every report shares: the one metrics reader and the number formats.

Runs are read from ``klrpn.layout.run_dir(results, cell, seed)``: ``<results>/<cell>`` for seed
0 and ``<results>/seed<N>/<cell>`` for seed N; each ``metrics.json`` is validated against
``klrpn/schemas/metrics.schema.json``. Errors are :class:`~klrpn.paper.ReportError` naming the
file and the key.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import numpy as np

from klrpn.layout import METRICS_NAME, run_file
from klrpn.metrics_schema import metrics_schema as _metrics_schema
from klrpn.paper import ReportError

MISSING = "—"          # a cell with no metrics.json, or a number the paper does not print
UNDEFINED = "n/a"      # our metric is null in metrics.json (e.g. no small objects in the split)


RunKey = tuple[str, int]                          # (cell, seed)


def metrics_schema() -> dict:
    """The JSON schema of ``metrics.json`` (:mod:`klrpn.metrics_schema`); a ReportError when the
    package lacks it."""
    try:
        return _metrics_schema()
    except FileNotFoundError as err:
        raise ReportError(str(err)) from None


def load_metrics(path: str | os.PathLike, schema: dict | None = None) -> dict:
    """Read and validate one ``metrics.json``; errors name the file and the key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None
    validator = jsonschema.Draft202012Validator(schema or metrics_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        key = ".".join(str(p) for p in e.absolute_path) or "<top level>"
        raise ReportError(f"{path}: key '{key}': {e.message}")
    return data


def collect_runs(results_dir: str | os.PathLike, cells: Iterable[str], seeds: Iterable[int] = (0,),
                 *, profile: str | None = None, table: int | None = None,
                 check_seed: bool = True) -> tuple[dict[RunKey, dict | None], str | None]:
    """``({(cell, seed): metrics or None}, profile)`` for every cell and seed, the metrics read
    from ``run_dir(results_dir, cell, seed)/metrics.json`` (None where the file is absent).

    Each file must name its cell, and (if given) ``table``; with ``check_seed`` its
    ``provenance.seed`` must be the folder's seed (Tables 1-2 pass False: they read each cell's
    seed-0 folder whatever seed its params set). Every file must agree on the profile, and match
    ``profile`` if given; the profile returned is that one (None without files). Every file must
    also agree on its ``--set`` overrides (``provenance.overrides``, none for a cell's own run):
    a run trained with overrides into a cell's own folder (``--out``) is not mixed into a table of
    the cells' own runs.
    """
    schema = metrics_schema()
    shows = "a table" if table is not None else "a report"
    found: dict[RunKey, dict | None] = {}
    seen: tuple[str, str] | None = (profile, "--profile") if profile else None
    overrides: tuple[dict, str] | None = None
    for cell in cells:
        for seed in seeds:
            path = run_file(results_dir, cell, seed, METRICS_NAME)
            if not path.is_file():
                found[(cell, seed)] = None
                continue
            m = load_metrics(path, schema)
            if m["cell"] != cell:
                raise ReportError(f"{path}: key 'cell' is {m['cell']!r}, expected {cell!r}")
            if table is not None and m["table"] != table:
                raise ReportError(f"{path}: key 'table' is {m['table']!r}, expected {table}")
            if check_seed and m["provenance"]["seed"] != seed:
                raise ReportError(f"{path}: key 'provenance.seed' is {m['provenance']['seed']}, "
                                  f"but the folder is seed {seed}'s (klrpn.layout.run_dir)")
            if seen and m["profile"] != seen[0]:
                raise ReportError(f"{path}: key 'profile' is {m['profile']!r} but {seen[1]} is "
                                  f"{seen[0]!r}; {shows} shows one profile")
            seen = seen or (m["profile"], str(path))
            these = m["provenance"].get("overrides", {})
            if overrides and these != overrides[0]:
                raise ReportError(f"{path}: key 'provenance.overrides' is {these or 'none'} but "
                                  f"{overrides[1]} has {overrides[0] or 'none'}; {shows} shows runs "
                                  "of one set of --set overrides (each set trains into its own "
                                  "results/set-<hash>/)")
            overrides = overrides or (these, str(path))
            found[(cell, seed)] = m
    return found, seen[0] if seen else None


def seed_list(seeds: Iterable[int]) -> list[int]:
    """The seeds asked for, sorted and without repeats."""
    return sorted(set(int(s) for s in seeds))


def lookup(data: dict | None, keys: tuple[str, ...]) -> Any:
    """``data[k0][k1]...``, or None where a key is missing."""
    for k in keys:
        if not isinstance(data, dict) or k not in data:
            return None
        data = data[k]
    return data


def metric_of(m: dict | None, metric: str) -> float | None:
    """``metrics[metric]`` of a metrics document, None without one."""
    return None if m is None else m["metrics"].get(metric)


def sample_std(values: list[float]) -> float | None:
    """Sample standard deviation (ddof 1); None with fewer than two values."""
    return float(np.std(values, ddof=1)) if len(values) >= 2 else None


def fmt(x: float | None, digits: int = 1) -> str:
    """``x`` with ``digits`` decimals; :data:`MISSING` for None or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    return f"{x:.{digits}f}"


def fmt_signed(x: float | None, digits: int = 1) -> str:
    """``x`` with its sign; :data:`MISSING` for None."""
    return MISSING if x is None else f"{x:+.{digits}f}"


def mean_std_text(values: list[float], digits: int = 1) -> str:
    """``"+1.23 ± 0.45"`` over seeds, ``"+1.23 (one seed)"``, or :data:`MISSING`."""
    if not values:
        return MISSING
    std = sample_std(values)
    text = f"{float(np.mean(values)):+.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if std is not None else " (one seed)")
