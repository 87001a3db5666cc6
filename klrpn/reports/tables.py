"""The paper's Tables 1-2 from ``results/<cell>/metrics.json`` (issue 5).

Each table shows, per cell and metric, our number, the paper's and the difference; a cell
without ``metrics.json`` renders as "—". Every deviation from the paper's protocol that the
metrics reveal becomes a footnote; a recipe section says where each cell's schedule and scales
come from, and a provenance footer lists commit, params hash, hardware, package versions and
date per cell.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from klrpn.atomic import atomic_write_text
from klrpn.config import ParamsError, load_cell, recipe_of
from klrpn.paper import ReportError, load_reference, table_cells
from klrpn.provenance import PACKAGES
from klrpn.render import template
from klrpn.reports.common import MISSING, UNDEFINED, collect_runs, fmt, lookup

#: Table columns: (header, where our value lives in metrics.json, key in the paper's row values)
COLUMNS: dict[int, list[tuple[str, tuple[str, ...], str | None]]] = {
    1: [
        ("AP", ("metrics", "AP"), "AP"),
        ("AP50", ("metrics", "AP50"), "AP50"),
        ("AP75", ("metrics", "AP75"), "AP75"),
        ("APS", ("metrics", "APS"), "APS"),
        ("APM", ("metrics", "APM"), "APM"),
        ("APL", ("metrics", "APL"), "APL"),
        ("Param(M)", ("params_M",), "params_M"),
        ("Speed(ms)", ("speed", "ms_per_image"), "speed_ms"),
        ("AR@1000", ("proposals", "AR@1000"), None),
    ],
    2: [
        ("mAP", ("metrics", "mAP"), "mAP"),
    ],
}


def table_metrics(table: int, results_dir: str | os.PathLike, *,
                  cells_file: str | os.PathLike | None = None,
                  profile: str | None = None) -> tuple[list[str], dict[str, dict | None], str | None]:
    """The table's cells (paper row order), their metrics (``None`` if absent) and the profile.

    ``profile`` (if given) must match every metrics file; otherwise all files must agree.
    """
    cells = table_cells(table, cells_file=cells_file)
    runs, profile = collect_runs(results_dir, cells, (0,), profile=profile, table=table,
                                 check_seed=False)
    return cells, {cell: runs[(cell, 0)] for cell in cells}, profile


def _digits(header: str) -> int:
    return {"Param(M)": 2, "Speed(ms)": 0}.get(header, 1)


def build_frame(table: int, cells: list[str], metrics: dict[str, dict | None]) -> pd.DataFrame:
    """Long frame: one row per (cell, column) with ours, paper and diff (NaN where undefined)."""
    ref = {row["cell"]: row for row in load_reference()[f"table{table}"]["rows"]}
    records = []
    for cell in cells:
        m = metrics[cell]
        for header, ours_key, paper_key in COLUMNS[table]:
            ours = lookup(m, ours_key) if m is not None else None
            paper = ref[cell]["values"].get(paper_key) if paper_key else None
            records.append({
                "cell": cell, "column": header, "present": m is not None,
                "ours": float(ours) if ours is not None else math.nan,
                "paper": float(paper) if paper is not None else math.nan,
                "ambiguous": bool(paper_key and paper_key in ref[cell].get("ambiguous", [])),
                "in_paper": paper_key is not None,
            })
    frame = pd.DataFrame.from_records(records)
    frame["diff"] = frame["ours"] - frame["paper"]
    return frame


def _cell_text(r: pd.Series, marks: dict[str, str]) -> str:
    d = _digits(r["column"])
    if not r["present"]:
        ours = MISSING
    elif math.isnan(r["ours"]):
        ours = UNDEFINED
    else:
        ours = fmt(r["ours"], d)
    if not r["in_paper"]:
        return ours + marks.get("not_in_paper", "")
    if r["ambiguous"]:
        paper = "?" + marks.get("ambiguous", "").strip()
    else:
        paper = fmt(r["paper"], d)
    diff = "" if math.isnan(r["diff"]) else f", {r['diff']:+.{d}f}"
    return f"{ours} ({paper}{diff})"


def _has_null(m: dict, table: int) -> bool:
    return any(lookup(m, key) is None for _, key, _ in COLUMNS[table])


def _footnotes(table: int, metrics: dict[str, dict | None]) -> tuple[list[str], dict[str, str]]:
    """Deviation footnotes derived from the metrics, and the marks placed in the table."""
    reference = load_reference()
    ref = reference[f"table{table}"]
    splits = reference["splits"]
    rows = {row["cell"]: row for row in ref["rows"]}
    present = {c: m for c, m in metrics.items() if m is not None}
    notes: list[str] = []
    marks: dict[str, str] = {}

    def add(text: str) -> str:
        notes.append(text)
        return f" [{len(notes)}]"

    # test set
    tests = sorted({m["dataset"]["test"] for m in present.values()})
    paper_test = splits.get(ref["test_set"], ref["test_set"])
    if tests and tests != [paper_test]:
        sizes = ", ".join(f"{m['dataset']['test']}: {m['dataset']['num_test_images']} images"
                          for m in {m["dataset"]["test"]: m for m in present.values()}.values())
        marks["test"] = add(
            f"Evaluated on {', '.join(tests)} ({sizes}); the paper reports {ref['test_set']}."
            + (" The test-dev evaluation server is not used here, so the numbers are on a "
               "different image set." if ref["test_set"] == "test-dev" else ""))
    # training data, per row
    for cell, m in present.items():
        ours_train = list(m["dataset"]["train"])
        paper_name = rows[cell]["train_data"]
        paper_train = list(splits.get(paper_name, [paper_name]))
        if sorted(ours_train) != sorted(paper_train):
            marks[f"train:{cell}"] = add(
                f"`{cell}` was trained on {' + '.join(ours_train)} (metrics.json `dataset.train`); "
                f"the paper's row trains on \"{paper_name}\" (= {' + '.join(paper_train)}).")
    # ambiguity in the source
    for key, text in ref.get("ambiguities", {}).items():
        if key in {h for h, _, _ in COLUMNS[table]}:
            marks["ambiguous"] = add(f"Paper {key} for the marked rows is ambiguous in the source: "
                                     + " ".join(str(text).split()))
    # speed device
    if table == 1:
        devices = sorted({m["speed"]["device"] for m in present.values()
                          if m.get("speed") and m["speed"].get("device")})
        if devices and devices != [ref["speed_device"]]:
            marks["speed"] = add(
                f"Speed(ms) measured on {', '.join(devices)}; the paper's on a "
                f"{ref['speed_device']}. Differences reflect the device, not the method.")
        missing_paper = [row["cell"] for row in ref["rows"]
                         if row["values"].get("params_M") is None or row["values"].get("speed_ms") is None]
        if missing_paper:
            add(f"The paper prints no Param(M) / Speed(ms) for {', '.join(f'`{c}`' for c in missing_paper)}.")
        marks["not_in_paper"] = add("AR@1000 (class-agnostic proposal recall, top-1000 proposals) "
                                    "is ours; the paper does not report it.")
    if any(m is None for m in metrics.values()):
        add(f"{MISSING}: no `results/<cell>/metrics.json` for this cell yet (not run, or not finished).")
    if any(_has_null(m, table) for m in present.values()):
        add(f"{UNDEFINED}: the metric is undefined on our test split (null in metrics.json, e.g. no "
            "object of that size).")
    return notes, marks


def recipe_line(recipe: dict) -> dict:
    """``{"schedule", "scales"}`` sentences of a ``metrics.json`` / params ``recipe``: the values
    and the source each comes from (paper table or baseline file)."""
    sched = recipe["schedule"]
    unit = "epochs" if sched["unit"] == "epoch" else "iterations"
    steps = ", ".join(str(s) for s in sched["steps"]) or "none"
    sizes = recipe["train_min_size"]
    train = (f"{sizes[0]}" if len(sizes) == 1
             else f"one of {'/'.join(str(s) for s in sizes)} per batch")
    cap = "no long-side cap" if recipe["max_size"] is None else f"long side at most {recipe['max_size']}"
    return {"schedule": f"{sched['length']} {unit}, lr decay after {unit} {steps} — "
                        f"{recipe['sources']['schedule']}",
            "scales": f"train short side {train}, test {recipe['test_min_size']}, {cap} — "
                      f"{recipe['sources']['scales']}"}


def _recipes(cells: list[str], metrics: dict[str, dict | None], profile: str | None,
             params_dir: Path | None) -> list[dict]:
    """One recipe line per cell: from its ``metrics.json`` (what the run used) or, for a cell
    not run yet, from its params (``profile``, default paper)."""
    lines = []
    for cell in cells:
        m = metrics[cell]
        if m is not None and m.get("recipe"):
            recipe, origin = m["recipe"], "metrics.json"
        else:
            try:
                recipe = recipe_of(load_cell(cell, profile or "paper", params_dir))
            except ParamsError as e:
                raise ReportError(f"recipe of {cell}: {e}") from None
            origin = f"params ({profile or 'paper'} profile; no metrics.json)" if m is None \
                else f"params ({profile or 'paper'} profile; its metrics.json has no recipe)"
        lines.append({"cell": cell, "origin": origin, **recipe_line(recipe)})
    return lines


def versions_text(provenance: dict) -> str:
    """The footer's software column: ``"klrpn 0.1.0, torch 2.14.1, ..."`` for the packages of
    ``klrpn.provenance.PACKAGES`` the metrics.json records (torch and torchvision only in files
    written before the others were recorded); a package recorded as not installed shows MISSING."""
    return ", ".join(f"{name} {provenance[name] or MISSING}" for name in PACKAGES if name in provenance)


def _provenance(cells: list[str], metrics: dict[str, dict | None]) -> list[dict]:
    """The provenance footer: one row per cell with results."""
    rows = []
    for cell in cells:
        m = metrics[cell]
        if m is None:
            continue
        p = m["provenance"]
        weights = p.get("imagenet_weights")  # absent in metrics.json written before it existed
        rows.append({
            "cell": cell,
            "commit": (p["git_commit"] or "?")[:12] + (" (dirty)" if p.get("git_dirty") else ""),
            "params_hash": (p["params_hash"] or "")[:12],
            "seed": p.get("seed"),
            "iters": p.get("train_iters"),
            "wall": fmt(p.get("wall_time_s"), 0),
            "hardware": p.get("hardware") or MISSING,
            "speed_device": (m.get("speed") or {}).get("device") or MISSING,
            "date": p.get("date") or MISSING,
            "versions": versions_text(p),
            "test": f"{m['dataset']['test']} ({m['dataset']['num_test_images']} images)",
            "weights": (MISSING if not weights else
                        weights["style"] + ("" if weights["file"] else " (none loaded)")),
        })
    return rows


def render_table(table: int, results_dir: str | os.PathLike = "results", *,
                 cells_file: str | os.PathLike | None = None, profile: str | None = None) -> str:
    """The markdown of reports/table{1,2}.md."""
    if table not in COLUMNS:
        raise ReportError(f"unknown table {table!r}; expected 1 or 2")
    cells, metrics, profile = table_metrics(table, results_dir, cells_file=cells_file,
                                            profile=profile)
    ref = load_reference()[f"table{table}"]
    rows_ref = {row["cell"]: row for row in ref["rows"]}
    frame = build_frame(table, cells, metrics)
    notes, marks = _footnotes(table, metrics)

    headers = ["Method", "Backbone", "Region proposal", "Train data"] + [h for h, _, _ in COLUMNS[table]]
    body = []
    for cell in cells:
        row = rows_ref[cell]
        m = metrics[cell]
        train = " + ".join(m["dataset"]["train"]) if m else row["train_data"]
        train += marks.get(f"train:{cell}", "")
        cells_text = frame[frame["cell"] == cell].apply(lambda r: _cell_text(r, marks), axis=1).tolist()
        body.append([row["method"], row["backbone"], row["proposal"], train] + cells_text)
    if "test" in marks:
        headers[4] += marks["test"]
    if "speed" in marks:
        i = headers.index("Speed(ms)")
        headers[i] += marks["speed"]

    recipes = _recipes(cells, metrics, profile, Path(cells_file).parent if cells_file else None)
    return template("table.md.j2").render(
        table=table, title=ref["title"], caption=" ".join(ref["caption"].split()),
        profile=profile, headers=headers, rows=body, notes=notes,
        provenance=_provenance(cells, metrics), recipes=recipes,
        n_present=sum(m is not None for m in metrics.values()), n_cells=len(cells),
        legend_diff="ours (paper, ours − paper)",
    )


def write_table(table: int, out: str | os.PathLike, results_dir: str | os.PathLike = "results",
                *, cells_file: str | os.PathLike | None = None, profile: str | None = None) -> Path:
    """Render Table ``table`` and write it to ``out`` atomically."""
    return atomic_write_text(out, render_table(table, results_dir, cells_file=cells_file,
                                               profile=profile))
