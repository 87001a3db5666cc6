"""reports/proposals.md (+ .png) over seeds, from the proposal_quality of hand-made runs."""

from __future__ import annotations

import numpy as np
import pytest

from klrpn import reports
from klrpn.cli import main
from report_runs import PAIR, dataset, gt_results, md_row, write_run


def test_proposals_report_and_png(ws):
    root, results = ws
    ds = dataset(PAIR[0])
    m0 = write_run(results, PAIR[0], 0, ds, gt_results(ds, 1, 0.5))
    m1 = write_run(results, PAIR[0], 1, ds, gt_results(ds, 2, 0.5))
    m2 = write_run(results, PAIR[1], 0, ds, gt_results(ds, 3, 0.0))
    out, png = root / "reports" / "proposals.md", root / "reports" / "proposals.png"
    assert main(["report", "proposals", "--results", str(results), "--seeds", "0 1",
                 "--out", str(out)]) == 0
    md = out.read_text()
    assert "SMOKE RUN" in md and png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    ar = [(m0["proposal_quality"]["ar_curve"]["10"] + m1["proposal_quality"]["ar_curve"]["10"]) / 2]
    row = md_row(md, f"`{PAIR[0]}`", "2")
    assert row[2] == f"{ar[0]:.1f}"                                    # seed mean, AR@10
    assert md_row(md, f"`{PAIR[1]}`", "1")[2] == f"{m2['proposal_quality']['ar_curve']['10']:.1f}"
    rho = [m["proposal_quality"]["score_iou"]["rho"] for m in (m0, m1)]
    rho_row = [r for r in md.splitlines() if r.startswith(f"| `{PAIR[0]}` | 2 | ")][-1]
    assert f"{np.mean(rho):+.3f} ± {np.std(rho, ddof=1):.3f}" in rho_row
    assert md_row(md, "`coco-faster_rcnn-vgg16-rpn`", "—")[2] == "—"
    # a schema_version 1 metrics.json (before proposal quality) is named in the error
    write_run(results, PAIR[1], 1, ds, gt_results(ds, 4, 0.0), version=1)
    with pytest.raises(reports.ReportError, match="seed1.*schema_version 1"):
        reports.render_proposals(results, [0, 1])
