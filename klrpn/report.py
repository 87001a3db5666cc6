"""Render the paper's Tables 1-2 from ``results/<cell>/metrics.json`` (issue 5).

The renderer reads only ``metrics.json`` files (validated against
``klrpn/schemas/metrics.schema.json``), the cell list ``params/cells.yaml`` and the paper's
published numbers ``klrpn/reference/paper_tables.yaml``. Each table shows, per cell and metric,
our number, the paper's and the difference; a cell without ``metrics.json`` renders as "—".
Every deviation from the paper's protocol that the metrics reveal becomes a footnote, and a
provenance footer lists commit, params hash, hardware and date per cell.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import jinja2
import jsonschema
import pandas as pd
import yaml

from klrpn.config import ParamsError, list_cells, load_cell, recipe_of

MISSING = "—"          # a cell with no metrics.json, or a number the paper does not print
UNDEFINED = "n/a"      # our metric is null in metrics.json (e.g. no small objects in the split)

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


class ReportError(ValueError):
    """A metrics file, the cell list or the reference table is unusable; the message names it."""


# ----------------------------------------------------------------------------------------------
# atomic output


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was, so a reader
    never sees a half-written report.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)     # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# inputs


def load_reference() -> dict:
    """The paper's Tables 1-2 (``klrpn/reference/paper_tables.yaml``)."""
    ref = resources.files("klrpn").joinpath("reference/paper_tables.yaml")
    return yaml.safe_load(ref.read_text(encoding="utf-8"))


def _metrics_schema() -> dict:
    ref = resources.files("klrpn").joinpath("schemas/metrics.schema.json")
    if not ref.is_file():
        raise ReportError("klrpn/schemas/metrics.schema.json is missing from the klrpn package")
    return json.loads(ref.read_text(encoding="utf-8"))


def load_metrics(path: str | os.PathLike, schema: dict | None = None) -> dict:
    """Read and validate one ``metrics.json``; errors name the file and the key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None
    validator = jsonschema.Draft202012Validator(schema or _metrics_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        key = ".".join(str(p) for p in e.absolute_path) or "<top level>"
        raise ReportError(f"{path}: key '{key}': {e.message}")
    return data


def _get(data: dict, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if not isinstance(data, dict) or k not in data:
            return None
        data = data[k]
    return data


def collect(table: int, results_dir: str | os.PathLike, cells_file: str | os.PathLike | None = None,
            profile: str | None = None) -> tuple[list[str], dict[str, dict | None], str | None]:
    """The table's cells (paper row order), their metrics (``None`` if absent) and the profile.

    ``profile`` (if given) must match every metrics file; otherwise all files must agree.
    """
    params_dir = Path(cells_file).parent if cells_file else None
    cells = [c["id"] for c in list_cells(params_dir) if c["table"] == table]
    ref = load_reference()[f"table{table}"]
    ref_cells = [row["cell"] for row in ref["rows"]]
    if sorted(ref_cells) != sorted(cells):
        raise ReportError(
            f"klrpn/reference/paper_tables.yaml: table{table} rows {sorted(ref_cells)} do not match "
            f"the table-{table} cells of {cells_file or 'params/cells.yaml'}: {sorted(cells)}")
    schema = _metrics_schema()
    results_dir = Path(results_dir)
    found: dict[str, dict | None] = {}
    seen_profile: tuple[str, Path] | None = (profile, Path("--profile")) if profile else None
    for cell in ref_cells:
        path = results_dir / cell / "metrics.json"
        if not path.is_file():
            found[cell] = None
            continue
        m = load_metrics(path, schema)
        if m["cell"] != cell:
            raise ReportError(f"{path}: key 'cell' is {m['cell']!r}, expected {cell!r}")
        if m["table"] != table:
            raise ReportError(f"{path}: key 'table' is {m['table']!r}, expected {table}")
        if seen_profile and m["profile"] != seen_profile[0]:
            raise ReportError(f"{path}: key 'profile' is {m['profile']!r} but {seen_profile[1]} is "
                              f"{seen_profile[0]!r}; a table shows one profile")
        seen_profile = seen_profile or (m["profile"], path)
        found[cell] = m
    return ref_cells, found, seen_profile[0] if seen_profile else None


# ----------------------------------------------------------------------------------------------
# table


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    return f"{x:.{digits}f}"


def _digits(header: str) -> int:
    return {"Param(M)": 2, "Speed(ms)": 0}.get(header, 1)


def build_frame(table: int, cells: list[str], metrics: dict[str, dict | None]) -> pd.DataFrame:
    """Long frame: one row per (cell, column) with ours, paper and diff (NaN where undefined)."""
    ref = {row["cell"]: row for row in load_reference()[f"table{table}"]["rows"]}
    records = []
    for cell in cells:
        m = metrics[cell]
        for header, ours_key, paper_key in COLUMNS[table]:
            ours = _get(m, ours_key) if m is not None else None
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
        ours = _fmt(r["ours"], d)
    if not r["in_paper"]:
        return ours + marks.get("not_in_paper", "")
    if r["ambiguous"]:
        paper = "?" + marks.get("ambiguous", "").strip()
    else:
        paper = _fmt(r["paper"], d)
    diff = "" if math.isnan(r["diff"]) else f", {r['diff']:+.{d}f}"
    return f"{ours} ({paper}{diff})"


# ----------------------------------------------------------------------------------------------
# footnotes


def _footnotes(table: int, cells: list[str], metrics: dict[str, dict | None]) -> tuple[list[str], dict[str, str]]:
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


def _has_null(m: dict, table: int) -> bool:
    return any(_get(m, key) is None for _, key, _ in COLUMNS[table])


# ----------------------------------------------------------------------------------------------
# render


def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("klrpn", "templates"),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True, autoescape=False)
    return env.get_template("table.md.j2")


def render_table(table: int, results_dir: str | os.PathLike = "results",
                 cells_file: str | os.PathLike | None = None, profile: str | None = None) -> str:
    """The markdown of reports/table{1,2}.md."""
    if table not in COLUMNS:
        raise ReportError(f"unknown table {table!r}; expected 1 or 2")
    cells, metrics, profile = collect(table, results_dir, cells_file, profile)
    ref = load_reference()[f"table{table}"]
    rows_ref = {row["cell"]: row for row in ref["rows"]}
    frame = build_frame(table, cells, metrics)
    notes, marks = _footnotes(table, cells, metrics)

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

    provenance = []
    for cell in cells:
        m = metrics[cell]
        if m is None:
            continue
        p = m["provenance"]
        provenance.append({
            "cell": cell,
            "commit": (p["git_commit"] or "?")[:12] + (" (dirty)" if p.get("git_dirty") else ""),
            "params_hash": (p["params_hash"] or "")[:12],
            "seed": p.get("seed"),
            "iters": p.get("train_iters"),
            "wall": _fmt(p.get("wall_time_s"), 0),
            "hardware": p.get("hardware") or MISSING,
            "speed_device": (m.get("speed") or {}).get("device") or MISSING,
            "date": p.get("date") or MISSING,
            "versions": f"torch {p.get('torch')}, torchvision {p.get('torchvision')}",
            "test": f"{m['dataset']['test']} ({m['dataset']['num_test_images']} images)",
        })
        weights = p.get("imagenet_weights")  # absent in metrics.json written before it existed
        provenance[-1]["weights"] = (MISSING if not weights else
                                     weights["style"] + ("" if weights["file"] else " (none loaded)"))
    recipes = _recipes(cells, metrics, profile, Path(cells_file).parent if cells_file else None)
    return _template().render(
        table=table, title=ref["title"], caption=" ".join(ref["caption"].split()),
        profile=profile, headers=headers, rows=body, notes=notes, provenance=provenance,
        recipes=recipes,
        n_present=sum(m is not None for m in metrics.values()), n_cells=len(cells),
        legend_diff="ours (paper, ours − paper)",
    )


def write_table(table: int, out: str | os.PathLike, results_dir: str | os.PathLike = "results",
                cells_file: str | os.PathLike | None = None, profile: str | None = None) -> Path:
    text = render_table(table, results_dir, cells_file, profile)
    atomic_write_text(out, text)
    return Path(out)


# ==============================================================================================
# Beyond the paper (issue 10): significance, proposal quality, ablations over seeds.
# Runs live in klrpn.config.run_dir(results, cell, seed): results/<cell> for seed 0,
# results/seed<N>/<cell> for seed N.

METRIC_OF_TABLE = {1: "AP", 2: "mAP"}


def _std(values: list[float]) -> float | None:
    """Sample standard deviation (ddof 1); None with fewer than two values."""
    import numpy as np

    return float(np.std(values, ddof=1)) if len(values) >= 2 else None


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
            raise ReportError(f"klrpn/reference/paper_tables.yaml: table{table} has "
                              f"{row['cell']} but no {partner}")
        a, b = row["values"].get(metric), rows[partner]["values"].get(metric)
        pairs.append({"rpn": row["cell"], "klrpn": partner, "row": row, "table": table,
                      "metric": metric,
                      "paper_delta": None if a is None or b is None else round(b - a, 10)})
    return pairs


def selected_pairs(pairs: list[str] | None = None, tables=(1, 2)) -> list[dict]:
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


def collect_runs(results_dir, cells: list[str], seeds: list[int],
                 profile: str | None = None) -> tuple[dict, str | None]:
    """``({(cell, seed): metrics or None}, profile)`` from ``run_dir(results, cell, seed)``;
    every metrics file must agree on the profile (and match ``profile`` if given)."""
    from klrpn.config import run_dir

    schema = _metrics_schema()
    found, seen = {}, ((profile, "--profile") if profile else None)
    for cell in cells:
        for seed in seeds:
            path = run_dir(results_dir, cell, seed) / "metrics.json"
            if not path.is_file():
                found[(cell, seed)] = None
                continue
            m = load_metrics(path, schema)
            if m["cell"] != cell:
                raise ReportError(f"{path}: key 'cell' is {m['cell']!r}, expected {cell!r}")
            if m["provenance"]["seed"] != seed:
                raise ReportError(f"{path}: key 'provenance.seed' is {m['provenance']['seed']}, "
                                  f"but the folder is seed {seed}'s (klrpn.config.run_dir)")
            if seen and m["profile"] != seen[0]:
                raise ReportError(f"{path}: key 'profile' is {m['profile']!r} but {seen[1]} is "
                                  f"{seen[0]!r}; a report shows one profile")
            seen = seen or (m["profile"], str(path))
            found[(cell, seed)] = m
    return found, seen[0] if seen else None


def _metric_of(m: dict | None, metric: str) -> float | None:
    return None if m is None else m["metrics"].get(metric)


def _fmt_signed(x: float | None, digits: int = 1) -> str:
    return MISSING if x is None else f"{x:+.{digits}f}"


def _mean_std_text(values: list[float], digits: int = 1) -> str:
    import numpy as np

    if not values:
        return MISSING
    std = _std(values)
    text = f"{float(np.mean(values)):+.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if std is not None else " (one seed)")


def _jinja(name: str) -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("klrpn", "templates"),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True, autoescape=False)
    return env.get_template(name)


# --- significance ------------------------------------------------------------------------------

def significance_rows(results_dir, seeds: list[int], *, params_dir=None, profile: str | None = None,
                      resamples: int = 1000, bootstrap_seed: int = 0, workers: int = 1,
                      tables=(1, 2), pairs: list[str] | None = None) -> tuple[list[dict], str | None]:
    """One row per RPN / KL-RPN pair: paper Δ, our Δ per seed (metrics.json), the paired
    bootstrap over the seeds where both cells have detections.json. Each detections.json is
    re-scored once by the per-image evaluator; its full-set metric must equal metrics.json's
    (else the two files are out of step and the report refuses)."""
    import numpy as np

    from klrpn.config import load_cell, run_dir
    from klrpn.data import build_dataset
    from klrpn.metrics.bootstrap import paired_bootstrap, per_image_eval
    from klrpn.metrics.coco_eval import load_detections

    pairs = selected_pairs(pairs, tables)
    cells = [c for p in pairs for c in (p["rpn"], p["klrpn"])]
    runs, profile = collect_runs(results_dir, cells, seeds, profile)
    datasets: dict[str, Any] = {}
    rows = []
    for p in pairs:
        metric = p["metric"]
        both = [s for s in seeds if runs[(p["rpn"], s)] is not None and runs[(p["klrpn"], s)] is not None]
        deltas = [_metric_of(runs[(p["klrpn"], s)], metric) - _metric_of(runs[(p["rpn"], s)], metric)
                  for s in both if None not in (_metric_of(runs[(p["klrpn"], s)], metric),
                                                _metric_of(runs[(p["rpn"], s)], metric))]
        boot = None
        if both:
            cfg = load_cell(p["rpn"], profile, params_dir)
            key = json.dumps(cfg["dataset"], sort_keys=True)
            if key not in datasets:
                datasets[key] = build_dataset(cfg, "test", train=False)
            evals = {}
            for cell in (p["rpn"], p["klrpn"]):
                for s in both:
                    path = run_dir(results_dir, cell, s) / "detections.json"
                    if not path.is_file():
                        raise ReportError(f"{path}: missing, but metrics.json is there: "
                                          f"re-run `klrpn evaluate {cell}`")
                    e = per_image_eval(datasets[key], load_detections(path), where=str(path))
                    ours = _metric_of(runs[(cell, s)], metric)
                    full = e.metric()
                    if ours is not None and full is not None and abs(full - ours) > 1e-6:
                        raise ReportError(
                            f"{path}: scores {metric} {full:.6f} but metrics.json next to it says "
                            f"{ours:.6f}: the two files are out of step; re-run `klrpn evaluate {cell}`")
                    evals[(cell, s)] = e
            boot = paired_bootstrap([evals[(p["rpn"], s)] for s in both],
                                    [evals[(p["klrpn"], s)] for s in both],
                                    resamples=resamples, seed=bootstrap_seed, workers=workers)
        row = p["row"]
        rows.append({
            "table": p["table"], "method": row["method"], "backbone": row["backbone"],
            "train_data": row["train_data"], "rpn_cell": p["rpn"], "klrpn_cell": p["klrpn"],
            "metric": metric, "paper_delta": p["paper_delta"], "seeds": both,
            "deltas": deltas,
            "delta_mean": float(np.mean(deltas)) if deltas else None,
            "delta_std": _std(deltas),
            "ci_low": boot["ci"][0] if boot else None, "ci_high": boot["ci"][1] if boot else None,
            "resamples": resamples if boot else None,
            "verdict": boot["verdict"] if boot else None,
        })
    return rows, profile


def render_significance(results_dir="results", seeds=(0,), *, params_dir=None,
                        profile: str | None = None, resamples: int = 1000,
                        bootstrap_seed: int = 0, workers: int = 1,
                        pairs: list[str] | None = None) -> tuple[str, pd.DataFrame]:
    """The markdown of reports/significance.md and the frame of significance.csv."""
    seeds = sorted(set(int(s) for s in seeds))
    rows, profile = significance_rows(results_dir, seeds, params_dir=params_dir, profile=profile,
                                      resamples=resamples, bootstrap_seed=bootstrap_seed,
                                      workers=workers, pairs=pairs)
    frame = pd.DataFrame.from_records([{
        "table": r["table"], "method": r["method"], "backbone": r["backbone"],
        "train_data": r["train_data"], "rpn_cell": r["rpn_cell"], "klrpn_cell": r["klrpn_cell"],
        "metric": r["metric"], "paper_delta": r["paper_delta"],
        "seeds": " ".join(map(str, r["seeds"])), "n_seeds": len(r["seeds"]),
        "delta_mean": r["delta_mean"], "delta_std": r["delta_std"],
        "ci_low": r["ci_low"], "ci_high": r["ci_high"], "resamples": r["resamples"],
        "verdict": r["verdict"] or ""} for r in rows])
    body = []
    for r in rows:
        ci = (MISSING if r["ci_low"] is None else f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]")
        body.append([f"Table {r['table']}", r["method"], r["backbone"], r["train_data"], r["metric"],
                     _fmt_signed(r["paper_delta"]), _mean_std_text(r["deltas"], 2),
                     str(len(r["seeds"])), ci, r["verdict"] or MISSING])
    text = _jinja("significance.md.j2").render(
        profile=profile, rows=body, seeds=seeds, resamples=resamples,
        bootstrap_seed=bootstrap_seed, n_present=sum(bool(r["seeds"]) for r in rows),
        n_pairs=len(rows), n_all=len(selected_pairs()), results=str(results_dir))
    return text, frame


def write_significance(out_md, out_csv, results_dir="results", seeds=(0,), **kwargs) -> Path:
    text, frame = render_significance(results_dir, seeds, **kwargs)
    with atomic_output(out_csv) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    atomic_write_text(out_md, text)
    return Path(out_md)


# --- proposals ---------------------------------------------------------------------------------

def _mean_curve(docs: list[dict], getter) -> dict | None:
    """Mean over seeds of ``getter(doc)`` (a ``{key: percent or None}``); None without docs."""
    import numpy as np

    curves = [getter(d) for d in docs]
    if not curves:
        return None
    return {k: (None if any(c[k] is None for c in curves) else float(np.mean([c[k] for c in curves])))
            for k in curves[0]}


def proposal_summary(results_dir, seeds, profile: str | None = None, tables=(1, 2),
                     pairs: list[str] | None = None):
    """Per pair, per cell: the seed-mean AR curve, recall-vs-IoU at 300 / 1000, rho and the
    mean number of proposals per image. A metrics.json of schema_version 1 (before proposal
    quality was measured) is an error that names the file."""
    import numpy as np

    from klrpn.config import run_dir

    pairs = selected_pairs(pairs, tables)
    cells = [c for p in pairs for c in (p["rpn"], p["klrpn"])]
    runs, profile = collect_runs(results_dir, cells, seeds, profile)
    for (cell, seed), m in runs.items():
        if m is not None and "proposal_quality" not in m:
            raise ReportError(f"{run_dir(results_dir, cell, seed) / 'metrics.json'}: schema_version "
                              f"{m['schema_version']} has no 'proposal_quality'; re-run "
                              f"`klrpn evaluate {cell}`")
    out = []
    for p in pairs:
        entry = {"pair": p, "cells": {}}
        for cell in (p["rpn"], p["klrpn"]):
            docs = [runs[(cell, s)] for s in seeds if runs[(cell, s)] is not None]
            q = [d["proposal_quality"] for d in docs]
            rhos = [x["score_iou"]["rho"] for x in q if x["score_iou"]["rho"] is not None]
            rhos_o = [x["score_iou"]["rho_overlapping"] for x in q
                      if x["score_iou"]["rho_overlapping"] is not None]
            entry["cells"][cell] = {
                "seeds": [s for s in seeds if runs[(cell, s)] is not None],
                "ar": _mean_curve(q, lambda x: x["ar_curve"]),
                "iou300": _mean_curve(q, lambda x: x["recall_vs_iou"]["300"]),
                "iou1000": _mean_curve(q, lambda x: x["recall_vs_iou"]["1000"]),
                "rho": float(np.mean(rhos)) if rhos else None,
                "rho_std": _std(rhos),
                "rho_overlapping": float(np.mean(rhos_o)) if rhos_o else None,
                "per_image": (float(np.mean([d["proposal_quality"]["score_iou"]["num_proposals"]
                                             / d["dataset"]["num_test_images"] for d in docs]))
                              if docs else None),
            }
        out.append(entry)
    return out, profile


def plot_proposals(summary: list[dict], out_png, profile: str | None) -> None:
    """proposals.png: per pair with results, AR vs number of proposals (log x) and recall vs
    IoU threshold at 300 (solid) and 1000 (dashed); RPN blue, KL-RPN orange."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [e for e in summary if any(c["ar"] for c in e["cells"].values())]
    n = max(len(present), 1)
    fig, axes = plt.subplots(n, 2, figsize=(10, 3.2 * n), squeeze=False)
    colors = {"rpn": "tab:blue", "klrpn": "tab:orange"}
    if not present:
        for ax in axes[0]:
            ax.axis("off")
        axes[0][0].text(0.5, 0.5, "no results yet", ha="center", va="center")
    for row, e in zip(axes, present):
        p = e["pair"]
        title = f"{p['row']['method']} {p['row']['backbone']}, {p['rpn'].split('-')[0]}"
        for kind in ("rpn", "klrpn"):
            c = e["cells"][p[kind]]
            if not c["ar"]:
                continue
            label = f"{'RPN' if kind == 'rpn' else 'KL-RPN'} ({len(c['seeds'])} seed{'s' * (len(c['seeds']) != 1)})"
            ks = [int(k) for k in c["ar"] if c["ar"][k] is not None]
            row[0].plot(ks, [c["ar"][str(k)] for k in ks], "o-", color=colors[kind], label=label)
            same = c["iou300"] == c["iou1000"]      # the model returns <= 300 proposals
            for key, style in (("iou300", "-"), ("iou1000", "--")):
                if same and key == "iou1000":
                    continue
                ts = [t for t in c[key] if c[key][t] is not None]
                text = "300 = 1000" if same else key[3:]
                row[1].plot([float(t) for t in ts], [c[key][t] for t in ts], linestyle=style,
                            marker=".", color=colors[kind], label=f"{label}, {text} proposals")
        row[0].set_xscale("log")
        row[0].set_xlabel("proposals per image")
        row[0].set_ylabel("AR (IoU .50:.95, %)")
        row[0].set_title(title, fontsize=10)
        row[1].set_xlabel("IoU threshold")
        row[1].set_ylabel("recall (%)")
        row[1].set_title(title + ": recall vs IoU", fontsize=10)
        for ax in row:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    if profile == "smoke":
        fig.suptitle("SMOKE RUN on synthetic data — not comparable to the paper", color="tab:red")
    fig.tight_layout()
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def render_proposals(results_dir="results", seeds=(0,), *, profile: str | None = None,
                     png_name: str = "proposals.png",
                     pairs: list[str] | None = None) -> tuple[str, list, str | None]:
    from klrpn.metrics.proposal_quality import AR_CURVE_K, IOU_THRESHOLDS

    seeds = sorted(set(int(s) for s in seeds))
    summary, profile = proposal_summary(results_dir, seeds, profile, pairs=pairs)
    ar_rows, iou_rows, rho_rows = [], [], []
    for e in summary:
        p = e["pair"]
        for kind in ("rpn", "klrpn"):
            cell = p[kind]
            c = e["cells"][cell]
            n = str(len(c["seeds"])) if c["seeds"] else MISSING
            ar_rows.append([f"`{cell}`", n] + [_fmt(c["ar"][str(k)]) if c["ar"] else MISSING
                                               for k in AR_CURVE_K])
            for key, k in (("iou300", 300), ("iou1000", 1000)):
                iou_rows.append([f"`{cell}`", str(k)] + [_fmt(c[key][f"{t:.2f}"]) if c[key] else MISSING
                                                         for t in IOU_THRESHOLDS])
            rho = MISSING if c["rho"] is None else (
                f"{c['rho']:+.3f}" + (f" ± {c['rho_std']:.3f}" if c["rho_std"] is not None else ""))
            rho_rows.append([f"`{cell}`", n, rho,
                             MISSING if c["rho_overlapping"] is None else f"{c['rho_overlapping']:+.3f}",
                             _fmt(c["per_image"], 0)])
    text = _jinja("proposals.md.j2").render(
        profile=profile, seeds=seeds, ar_headers=[str(k) for k in AR_CURVE_K], ar_rows=ar_rows,
        iou_headers=[f"{t:.2f}" for t in IOU_THRESHOLDS], iou_rows=iou_rows, rho_rows=rho_rows,
        png=png_name, n_pairs=len(summary), n_all=len(selected_pairs()))
    return text, summary, profile


def write_proposals(out_md, out_png, results_dir="results", seeds=(0,), **kwargs) -> Path:
    text, summary, profile = render_proposals(results_dir, seeds, png_name=Path(out_png).name,
                                              **kwargs)
    plot_proposals(summary, out_png, profile)
    atomic_write_text(out_md, text)
    return Path(out_md)


# --- ablations ---------------------------------------------------------------------------------

def render_ablations(results_dir="results", seeds=(0,), *, params_dir=None,
                     profile: str | None = None) -> str:
    """reports/ablations.md: each variant's metric (mean over seeds) and its Δ to the base
    cell, beside the seed noise of the base pair (std over seeds of the base cell's metric and
    of the base pair's Δ KL-RPN − RPN)."""
    import numpy as np

    from klrpn.config import list_variants

    seeds = sorted(set(int(s) for s in seeds))
    variants = list_variants(params_dir)
    if not variants:
        raise ReportError(f"{Path(params_dir or 'params') / 'ablations.yaml'}: no ablation variants")
    bases = sorted({v["base"] for v in variants})
    if len(bases) != 1:
        raise ReportError(f"ablations.yaml: the report shows one base cell, got {bases}")
    base = bases[0]
    rpn = base[: -len("-klrpn")] + "-rpn" if base.endswith("-klrpn") else None
    table = next(t for t in (1, 2) for p in table_pairs(t) if base in (p["rpn"], p["klrpn"]))
    metric = METRIC_OF_TABLE[table]
    cells = [base] + ([rpn] if rpn else []) + [v["id"] for v in variants]
    runs, profile = collect_runs(results_dir, cells, seeds, profile)

    def values(cell):
        return [v for s in seeds if (v := _metric_of(runs[(cell, s)], metric)) is not None]

    base_vals = values(base)
    base_mean = float(np.mean(base_vals)) if base_vals else None
    base_std = _std(base_vals)
    pair_deltas = [runs[(base, s)]["metrics"][metric] - runs[(rpn, s)]["metrics"][metric]
                   for s in seeds if rpn and runs[(base, s)] is not None and runs[(rpn, s)] is not None
                   and runs[(base, s)]["metrics"][metric] is not None
                   and runs[(rpn, s)]["metrics"][metric] is not None]
    noise = (f"± {base_std:.2f} (base, {len(base_vals)} seeds)" if base_std is not None
             else f"{MISSING} (needs ≥ 2 seeds of the base)")
    rows = [["base (the paper's choices)", "—", _fmt(base_mean, 2) if base_vals else MISSING,
             "0 (reference)", str(len(base_vals)), noise]]
    for v in variants:
        vals = values(v["id"])
        mean = float(np.mean(vals)) if vals else None
        delta = None if mean is None or base_mean is None else mean - base_mean
        rows.append([v["factor"], f"{v['value']} (base: {v['base_value']})",
                     _fmt(mean, 2) if vals else MISSING, _fmt_signed(delta, 2),
                     str(len(vals)) if vals else MISSING, noise])
    return _jinja("ablations.md.j2").render(
        profile=profile, base=base, rpn=rpn, metric=metric, rows=rows, seeds=seeds,
        pair_delta=_mean_std_text(pair_deltas, 2), n_pair=len(pair_deltas),
        variants=[v["id"] for v in variants])


def write_ablations(out_md, results_dir="results", seeds=(0,), **kwargs) -> Path:
    atomic_write_text(out_md, render_ablations(results_dir, seeds, **kwargs))
    return Path(out_md)
