"""reports/ablations.md: KL-RPN's fixed design choices, one variant at a time (issue 10).

Each variant of ``params/ablations.yaml`` beside its base cell, and the seed noise of the base
pair (KL-RPN − RPN), so that a variant's Δ can be told from retraining with another seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from klrpn.atomic import atomic_write_text
from klrpn.config import ABLATIONS_INDEX, list_variants
from klrpn.paper import METRIC_OF_TABLE, TABLES, ReportError, table_pairs
from klrpn.render import template
from klrpn.reports.common import (
    MISSING, collect_runs, fmt, fmt_signed, mean_std_text, metric_of, sample_std, seed_list,
)


def render_ablations(results_dir: str | os.PathLike = "results", seeds=(0,), *, params_dir=None,
                     profile: str | None = None) -> str:
    """reports/ablations.md: each variant's metric (mean over seeds) and its Δ to the base
    cell, beside the seed noise of the base pair (std over seeds of the base cell's metric and
    of the base pair's Δ KL-RPN − RPN)."""
    seeds = seed_list(seeds)
    variants = list_variants(params_dir)
    if not variants:
        raise ReportError(f"{Path(params_dir or 'params') / ABLATIONS_INDEX}: no ablation variants")
    bases = sorted({v["base"] for v in variants})
    if len(bases) != 1:
        raise ReportError(f"{ABLATIONS_INDEX}: the report shows one base cell, got {bases}")
    base = bases[0]
    rpn = base[: -len("-klrpn")] + "-rpn" if base.endswith("-klrpn") else None
    table = next(t for t in TABLES for p in table_pairs(t) if base in (p["rpn"], p["klrpn"]))
    metric = METRIC_OF_TABLE[table]
    cells = [base] + ([rpn] if rpn else []) + [v["id"] for v in variants]
    runs, profile = collect_runs(results_dir, cells, seeds, profile=profile)

    def values(cell):
        return [v for s in seeds if (v := metric_of(runs[(cell, s)], metric)) is not None]

    base_vals = values(base)
    base_mean = float(np.mean(base_vals)) if base_vals else None
    base_std = sample_std(base_vals)
    pair_deltas = [runs[(base, s)]["metrics"][metric] - runs[(rpn, s)]["metrics"][metric]
                   for s in seeds if rpn and runs[(base, s)] is not None and runs[(rpn, s)] is not None
                   and runs[(base, s)]["metrics"][metric] is not None
                   and runs[(rpn, s)]["metrics"][metric] is not None]
    noise = (f"± {base_std:.2f} (base, {len(base_vals)} seeds)" if base_std is not None
             else f"{MISSING} (needs ≥ 2 seeds of the base)")
    rows = [["base (the paper's choices)", "—", fmt(base_mean, 2) if base_vals else MISSING,
             "0 (reference)", str(len(base_vals)), noise]]
    for v in variants:
        vals = values(v["id"])
        mean = float(np.mean(vals)) if vals else None
        delta = None if mean is None or base_mean is None else mean - base_mean
        rows.append([v["factor"], f"{v['value']} (base: {v['base_value']})",
                     fmt(mean, 2) if vals else MISSING, fmt_signed(delta, 2),
                     str(len(vals)) if vals else MISSING, noise])
    return template("ablations.md.j2").render(
        profile=profile, base=base, rpn=rpn, metric=metric, rows=rows, seeds=seeds,
        pair_delta=mean_std_text(pair_deltas, 2), n_pair=len(pair_deltas),
        variants=[v["id"] for v in variants])


def write_ablations(out_md: str | os.PathLike, results_dir: str | os.PathLike = "results",
                    seeds=(0,), **kwargs) -> Path:
    """reports/ablations.md, atomically; ``kwargs`` as :func:`render_ablations`."""
    return atomic_write_text(out_md, render_ablations(results_dir, seeds, **kwargs))
