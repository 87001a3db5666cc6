"""reports/ablations.md: the variants of params/ablations.yaml beside the base's seed noise."""

from __future__ import annotations

import numpy as np

from klrpn.cli import main
from report_runs import BASE, dataset, gt_results, md_row, write_run


def test_ablations_report(ws):
    root, results = ws
    rpn = BASE[: -len("klrpn")] + "rpn"
    ds = dataset(BASE)
    base = [write_run(results, BASE, s, ds, gt_results(ds, 30 + s, 0.2)) for s in (0, 1)]
    pair = [write_run(results, rpn, s, ds, gt_results(ds, 40 + s, 0.4)) for s in (0, 1)]
    gamma = write_run(results, BASE + "--gamma1", 0, ds, gt_results(ds, 50, 0.6))
    out = root / "reports" / "ablations.md"
    assert main(["report", "ablations", "--results", str(results), "--seeds", "0,1",
                 "--out", str(out), "--params", "params"]) == 0
    md = out.read_text()
    base_maps = [m["metrics"]["mAP"] for m in base]
    noise = f"± {np.std(base_maps, ddof=1):.2f} (base, 2 seeds)"
    assert md_row(md, "base (the paper's choices)", "—") == [
        "base (the paper's choices)", "—", f"{np.mean(base_maps):.2f}", "0 (reference)", "2", noise]
    row = md_row(md, "γ (eqs. 4, 7)", "1 (base: 1/2)")
    assert row[2:] == [f"{gamma['metrics']['mAP']:.2f}",
                       f"{gamma['metrics']['mAP'] - np.mean(base_maps):+.2f}", "1", noise]
    assert md_row(md, "optimizer", "SGD, lr 1e-3 (the RPN cell's) (base: Adam, lr 2e-5)")[2:5] == ["—", "—", "—"]
    deltas = [b["metrics"]["mAP"] - p["metrics"]["mAP"] for b, p in zip(base, pair)]
    assert f"is {np.mean(deltas):+.2f} ± {np.std(deltas, ddof=1):.2f} over 2 seed(s)" in md
    assert "SMOKE RUN" in md
