"""reports/significance.md (+ .csv): is KL-RPN's gain over RPN real? (issue 10)

Per RPN / KL-RPN pair of Tables 1-2: the paper's Δ, our Δ per seed (metrics.json) and a paired
image-level bootstrap over the seeds where both cells have detections.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from klrpn.atomic import atomic_output, atomic_write_text
from klrpn.config import load_cell
from klrpn.layout import DETECTIONS_NAME, run_file
from klrpn.paper import ReportError, selected_pairs
from klrpn.render import template
from klrpn.reports.common import (
    MISSING, collect_runs, fmt_signed, mean_std_text, metric_of, sample_std, seed_list,
)


def significance_rows(results_dir: str | os.PathLike, seeds: list[int], *, params_dir=None,
                      profile: str | None = None, resamples: int = 1000, bootstrap_seed: int = 0,
                      workers: int = 1, tables=(1, 2),
                      pairs: list[str] | None = None) -> tuple[list[dict], str | None]:
    """One row per RPN / KL-RPN pair: paper Δ, our Δ per seed (metrics.json), the paired
    bootstrap over the seeds where both cells have detections.json. Each detections.json is
    re-scored once by the per-image evaluator; its full-set metric must equal metrics.json's
    (else the two files are out of step and the report refuses)."""
    from klrpn.data import build_dataset
    from klrpn.metrics.bootstrap import paired_bootstrap, per_image_eval
    from klrpn.metrics.coco_eval import load_detections

    pairs = selected_pairs(pairs, tables)
    cells = [c for p in pairs for c in (p["rpn"], p["klrpn"])]
    runs, profile = collect_runs(results_dir, cells, seeds, profile=profile)
    datasets: dict[str, Any] = {}
    rows = []
    for p in pairs:
        metric = p["metric"]
        both = [s for s in seeds if runs[(p["rpn"], s)] is not None and runs[(p["klrpn"], s)] is not None]
        deltas = [metric_of(runs[(p["klrpn"], s)], metric) - metric_of(runs[(p["rpn"], s)], metric)
                  for s in both if None not in (metric_of(runs[(p["klrpn"], s)], metric),
                                                metric_of(runs[(p["rpn"], s)], metric))]
        boot = None
        if both:
            cfg = load_cell(p["rpn"], profile, params_dir)
            key = json.dumps(cfg["dataset"], sort_keys=True)
            if key not in datasets:
                datasets[key] = build_dataset(cfg, "test", train=False)
            evals = {}
            for cell in (p["rpn"], p["klrpn"]):
                for s in both:
                    path = run_file(results_dir, cell, s, DETECTIONS_NAME)
                    if not path.is_file():
                        raise ReportError(f"{path}: missing, but metrics.json is there: "
                                          f"re-run `klrpn evaluate {cell}`")
                    e = per_image_eval(datasets[key], load_detections(path), where=str(path))
                    ours = metric_of(runs[(cell, s)], metric)
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
            "delta_std": sample_std(deltas),
            "ci_low": boot["ci"][0] if boot else None, "ci_high": boot["ci"][1] if boot else None,
            "resamples": resamples if boot else None,
            "verdict": boot["verdict"] if boot else None,
        })
    return rows, profile


def render_significance(results_dir: str | os.PathLike = "results", seeds=(0,), *,
                        params_dir=None, profile: str | None = None, resamples: int = 1000,
                        bootstrap_seed: int = 0, workers: int = 1,
                        pairs: list[str] | None = None) -> tuple[str, pd.DataFrame]:
    """The markdown of reports/significance.md and the frame of significance.csv."""
    seeds = seed_list(seeds)
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
                     fmt_signed(r["paper_delta"]), mean_std_text(r["deltas"], 2),
                     str(len(r["seeds"])), ci, r["verdict"] or MISSING])
    text = template("significance.md.j2").render(
        profile=profile, rows=body, seeds=seeds, resamples=resamples,
        bootstrap_seed=bootstrap_seed, n_present=sum(bool(r["seeds"]) for r in rows),
        n_pairs=len(rows), n_all=len(selected_pairs()), results=str(results_dir))
    return text, frame


def write_significance(out_md: str | os.PathLike, out_csv: str | os.PathLike,
                       results_dir: str | os.PathLike = "results", seeds=(0,), **kwargs) -> Path:
    """significance.csv, then significance.md (atomically each); ``kwargs`` as
    :func:`render_significance`."""
    text, frame = render_significance(results_dir, seeds, **kwargs)
    with atomic_output(out_csv) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    return atomic_write_text(out_md, text)
