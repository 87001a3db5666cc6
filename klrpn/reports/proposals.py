"""reports/proposals.md (+ .png): proposal quality of RPN vs KL-RPN over seeds (issue 10).

From the ``proposal_quality`` section of each run's ``metrics.json``: AR vs number of
proposals, recall vs IoU threshold at 300 / 1000 proposals and Spearman's ρ of score and IoU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from klrpn.atomic import atomic_output, atomic_write_text
from klrpn.layout import METRICS_NAME, run_file
from klrpn.paper import ReportError, selected_pairs
from klrpn.render import template
from klrpn.reports.common import MISSING, collect_runs, fmt, sample_std, seed_list


def _mean_curve(docs: list[dict], getter: Callable[[dict], dict]) -> dict | None:
    """Mean over seeds of ``getter(doc)`` (a ``{key: percent or None}``); None without docs."""
    curves = [getter(d) for d in docs]
    if not curves:
        return None
    return {k: (None if any(c[k] is None for c in curves) else float(np.mean([c[k] for c in curves])))
            for k in curves[0]}


def proposal_summary(results_dir: str | os.PathLike, seeds: list[int], *,
                     profile: str | None = None, tables=(1, 2),
                     pairs: list[str] | None = None) -> tuple[list[dict], str | None]:
    """Per pair, per cell: the seed-mean AR curve, recall-vs-IoU at 300 / 1000, rho and the
    mean number of proposals per image. A metrics.json of schema_version 1 (before proposal
    quality was measured) is an error that names the file."""
    pairs = selected_pairs(pairs, tables)
    cells = [c for p in pairs for c in (p["rpn"], p["klrpn"])]
    runs, profile = collect_runs(results_dir, cells, seeds, profile=profile)
    for (cell, seed), m in runs.items():
        if m is not None and "proposal_quality" not in m:
            raise ReportError(f"{run_file(results_dir, cell, seed, METRICS_NAME)}: schema_version "
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
                "rho_std": sample_std(rhos),
                "rho_overlapping": float(np.mean(rhos_o)) if rhos_o else None,
                "per_image": (float(np.mean([d["proposal_quality"]["score_iou"]["num_proposals"]
                                             / d["dataset"]["num_test_images"] for d in docs]))
                              if docs else None),
            }
        out.append(entry)
    return out, profile


def plot_proposals(summary: list[dict], out_png: str | os.PathLike, profile: str | None) -> None:
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


def render_proposals(results_dir: str | os.PathLike = "results", seeds=(0,), *,
                     profile: str | None = None, png_name: str = "proposals.png",
                     pairs: list[str] | None = None) -> tuple[str, list[dict], str | None]:
    """The markdown of reports/proposals.md, the summary :func:`plot_proposals` draws, and
    the profile."""
    from klrpn.metrics.proposal_quality import AR_CURVE_K, IOU_THRESHOLDS

    seeds = seed_list(seeds)
    summary, profile = proposal_summary(results_dir, seeds, profile=profile, pairs=pairs)
    ar_rows, iou_rows, rho_rows = [], [], []
    for e in summary:
        p = e["pair"]
        for kind in ("rpn", "klrpn"):
            cell = p[kind]
            c = e["cells"][cell]
            n = str(len(c["seeds"])) if c["seeds"] else MISSING
            ar_rows.append([f"`{cell}`", n] + [fmt(c["ar"][str(k)]) if c["ar"] else MISSING
                                               for k in AR_CURVE_K])
            for key, k in (("iou300", 300), ("iou1000", 1000)):
                iou_rows.append([f"`{cell}`", str(k)] + [fmt(c[key][f"{t:.2f}"]) if c[key] else MISSING
                                                         for t in IOU_THRESHOLDS])
            rho = MISSING if c["rho"] is None else (
                f"{c['rho']:+.3f}" + (f" ± {c['rho_std']:.3f}" if c["rho_std"] is not None else ""))
            rho_rows.append([f"`{cell}`", n, rho,
                             MISSING if c["rho_overlapping"] is None else f"{c['rho_overlapping']:+.3f}",
                             fmt(c["per_image"], 0)])
    text = template("proposals.md.j2").render(
        profile=profile, seeds=seeds, ar_headers=[str(k) for k in AR_CURVE_K], ar_rows=ar_rows,
        iou_headers=[f"{t:.2f}" for t in IOU_THRESHOLDS], iou_rows=iou_rows, rho_rows=rho_rows,
        png=png_name, n_pairs=len(summary), n_all=len(selected_pairs()))
    return text, summary, profile


def write_proposals(out_md: str | os.PathLike, out_png: str | os.PathLike,
                    results_dir: str | os.PathLike = "results", seeds=(0,), **kwargs) -> Path:
    """proposals.png, then proposals.md (atomically each); ``kwargs`` as
    :func:`render_proposals`."""
    text, summary, profile = render_proposals(results_dir, seeds, png_name=Path(out_png).name,
                                              **kwargs)
    plot_proposals(summary, out_png, profile)
    return atomic_write_text(out_md, text)
