"""The paper's published Tables 1-2 (``klrpn/reference/paper_tables.yaml``) and their pairs.

A low-level module: it imports only :mod:`klrpn.config` and :mod:`klrpn.layout`, so the
Snakemake workflow (``from klrpn.paper import ReportError, selected_pairs``) and every report
may use it without importing the reports layer.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import yaml

from klrpn.config import list_cells
from klrpn.layout import CELLS_INDEX

REFERENCE = "reference/paper_tables.yaml"      # inside the klrpn package
TABLES = (1, 2)
METRIC_OF_TABLE = {1: "AP", 2: "mAP"}          # the metric of a table's RPN / KL-RPN pairs


class ReportError(ValueError):
    """A metrics file, the cell list or the reference table is unusable; the message names it."""


def load_reference() -> dict:
    """The paper's Tables 1-2 (``klrpn/reference/paper_tables.yaml``)."""
    ref = resources.files("klrpn").joinpath(REFERENCE)
    return yaml.safe_load(ref.read_text(encoding="utf-8"))


def table_cells(table: int, *, cells_file: str | os.PathLike | None = None) -> list[str]:
    """The cells of a paper table in the paper's row order. They must be exactly the table's
    cells of ``cells_file`` (default ``params/cells.yaml``)."""
    params_dir = Path(cells_file).parent if cells_file else None
    cells = [c["id"] for c in list_cells(params_dir) if c["table"] == table]
    ref_cells = [row["cell"] for row in load_reference()[f"table{table}"]["rows"]]
    if sorted(ref_cells) != sorted(cells):
        raise ReportError(
            f"klrpn/{REFERENCE}: table{table} rows {sorted(ref_cells)} do not match "
            f"the table-{table} cells of {cells_file or 'params/' + CELLS_INDEX}: {sorted(cells)}")
    return ref_cells


def table_pairs(table: int) -> list[dict]:
    """The RPN / KL-RPN pairs of a paper table, in row order: ``{"rpn", "klrpn", "row"}`` (the
    paper row of the RPN cell) and ``paper_delta`` (KL-RPN − RPN in the table's metric)."""
    ref = load_reference()[f"table{table}"]
    rows = {row["cell"]: row for row in ref["rows"]}
    metric = METRIC_OF_TABLE[table]
    pairs = []
    for row in ref["rows"]:
        if not row["cell"].endswith("-rpn"):
            continue
        partner = row["cell"][: -len("-rpn")] + "-klrpn"
        if partner not in rows:
            raise ReportError(f"klrpn/{REFERENCE}: table{table} has {row['cell']} but no {partner}")
        a, b = row["values"].get(metric), rows[partner]["values"].get(metric)
        pairs.append({"rpn": row["cell"], "klrpn": partner, "row": row, "table": table,
                      "metric": metric,
                      "paper_delta": None if a is None or b is None else round(b - a, 10)})
    return pairs


def selected_pairs(pairs: list[str] | None = None, tables=TABLES) -> list[dict]:
    """The RPN / KL-RPN pairs of ``tables`` in row order; ``pairs`` (RPN cell ids, or None for
    all) keeps only those, and one that is not the RPN cell of a pair is an error naming it."""
    every = [p for t in tables for p in table_pairs(t)]
    if pairs is None:
        return every
    known = {p["rpn"] for p in every}
    unknown = [c for c in pairs if c not in known]
    if unknown:
        raise ReportError(f"pairs: {', '.join(unknown)} is not the RPN cell of a pair of Tables "
                          f"1-2 (known: {', '.join(sorted(known))})")
    return [p for p in every if p["rpn"] in set(pairs)]
