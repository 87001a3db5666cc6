"""reports/significance.md (+ .csv) over seeds, on the real smoke cells and the synthetic VOC
test set, from hand-made detections with known gaps."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from klrpn import reports
from klrpn.cli import main
from klrpn.layout import METRICS_NAME, run_dir
from report_runs import PAIR, dataset, gt_results, md_row, write_run


def test_significance_on_the_smoke_pair(ws):
    root, results = ws
    ds = dataset(PAIR[0])
    runs = {}
    for seed in (0, 1):
        runs[("rpn", seed)] = write_run(results, PAIR[0], seed, ds, gt_results(ds, 10 + seed, 0.5))
        runs[("klrpn", seed)] = write_run(results, PAIR[1], seed, ds, gt_results(ds, 20 + seed, 0.0))
    out = root / "reports" / "significance.md"
    assert main(["report", "significance", "--results", str(results), "--seeds", "0,1",
                 "--out", str(out), "--params", "params"]) == 0
    md = out.read_text()
    assert "SMOKE RUN" in md and "(2 seeds)" in md and "bootstrap resamples: 1000" in md
    row = md_row(md, "Table 2", "R-FCN")
    deltas = [runs[("klrpn", s)]["metrics"]["mAP"] - runs[("rpn", s)]["metrics"]["mAP"] for s in (0, 1)]
    assert row[5] == "+0.8"                                            # paper 74.6 - 73.8
    assert row[6] == f"{np.mean(deltas):+.2f} ± {np.std(deltas, ddof=1):.2f}" and row[7] == "2"
    assert row[9] == "KL-RPN better"
    assert md_row(md, "Table 1", "Faster R-CNN")[6:] == ["—", "0", "—", "—"]
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 6                                              # 3 pairs per table
    r = next(r for r in rows if r["klrpn_cell"] == PAIR[1])
    assert r["seeds"] == "0 1" and r["verdict"] == "KL-RPN better" and float(r["ci_low"]) > 0
    assert float(r["delta_mean"]) == pytest.approx(np.mean(deltas), rel=1e-5)


def test_pairs_keeps_only_the_named_pairs(ws):
    """--pairs (the workflow's seed_reports.pairs): only those rows, said in the report; a cell
    that is not the RPN cell of a pair is an error naming it."""
    root, results = ws
    ds = dataset(PAIR[0])
    for cell in PAIR:
        write_run(results, cell, 0, ds, gt_results(ds, 5, 0.2))
    out = root / "reports" / "significance.md"
    assert main(["report", "significance", "--results", str(results), "--pairs", PAIR[0],
                 "--out", str(out), "--params", "params"]) == 0
    md = out.read_text()
    assert "Only 1 of the 6 pairs of Tables 1–2 is shown" in md
    assert md_row(md, "Table 2", "R-FCN")[6:] == ["+0.00 (one seed)", "1", "[+0.00, +0.00]",
                                                  "no difference detectable"]
    assert not [r for r in md.splitlines() if r.startswith("| Table 1")]
    assert len(list(csv.DictReader(out.with_suffix(".csv").open()))) == 1
    text, _, _ = reports.render_proposals(results, [0], pairs=[PAIR[0]])
    assert "Only 1 of the 6 RPN / KL-RPN pairs" in text and "coco-" not in text
    with pytest.raises(reports.ReportError, match="voc07-rfcn-resnet101-klrpn is not the RPN cell"):
        reports.render_significance(results, [0], pairs=[PAIR[1]])


def test_significance_identical_models_and_out_of_step_files(ws):
    root, results = ws
    ds = dataset(PAIR[0])
    dets = gt_results(ds, 3, 0.3)
    write_run(results, PAIR[0], 0, ds, dets)
    m = write_run(results, PAIR[1], 0, ds, dets)
    text, frame = reports.render_significance(results, [0], params_dir="params", resamples=200)
    row = md_row(text, "Table 2", "R-FCN")
    assert row[6:] == ["+0.00 (one seed)", "1", "[+0.00, +0.00]", "no difference detectable"]
    # metrics.json that does not belong to its detections.json is refused, naming the file
    m["metrics"]["mAP"] += 1.0
    (run_dir(results, PAIR[1], 0) / METRICS_NAME).write_text(json.dumps(m))
    with pytest.raises(reports.ReportError, match="detections.json.*out of step"):
        reports.render_significance(results, [0], params_dir="params", resamples=10)
    # a seed-1 folder holding a seed-0 run is refused
    shutil.copytree(run_dir(results, PAIR[0], 0), run_dir(results, PAIR[0], 1))
    with pytest.raises(reports.ReportError, match="provenance.seed"):
        reports.render_significance(results, [0, 1], params_dir="params", resamples=10)
