"""Tables 1-2 rendered from hand-written metrics.json fixtures."""

from __future__ import annotations

import json
import re

import pytest

from klrpn import reports
from klrpn.cli import main
from klrpn.paper import load_reference
from klrpn.reports import tables
from report_runs import REPO, cells_of_table, table_metrics, table_row, write_metrics


def test_fixtures_satisfy_the_metrics_schema(tmp_path):
    for t in (1, 2):
        for c in cells_of_table(t):
            reports.load_metrics(write_metrics(tmp_path, table_metrics(c, t)))


def test_table_metrics_in_paper_row_order_with_absent_cells_as_none(tmp_path):
    write_metrics(tmp_path, table_metrics("voc07-rfcn-resnet101-klrpn", 2, profile="smoke"))
    cells, metrics, profile = tables.table_metrics(2, tmp_path)
    assert cells == [r["cell"] for r in load_reference()["table2"]["rows"]]
    assert profile == "smoke" and metrics["voc07-rfcn-resnet101-klrpn"]["cell"] == "voc07-rfcn-resnet101-klrpn"
    assert [c for c, m in metrics.items() if m is None] == [c for c in cells if c != "voc07-rfcn-resnet101-klrpn"]


def test_partial_table1_with_differences_and_footnotes(tmp_path):
    results = tmp_path / "results"
    write_metrics(results, table_metrics("coco-faster_rcnn-vgg16-klrpn", 1))
    rfcn = table_metrics("coco-rfcn-resnet101-rpn", 1)
    rfcn["metrics"]["AP75"] = 33.0
    write_metrics(results, rfcn)
    out = tmp_path / "reports/table1.md"
    assert main(["report", "table1", "--results", str(results), "--out", str(out)]) == 0
    md = out.read_text()
    assert "SMOKE" not in md and "2 of 6 cells have results" in md
    row = table_row(md, "Faster R-CNN", "VGG-16", "KL-RPN")
    # AP: ours 30.0 vs paper 29.7 -> +0.3; APS null -> n/a beside the paper's 11.6
    assert row[4] == "30.0 (29.7, +0.3)"
    assert row[7].startswith("n/a (11.6")
    assert row[10] == "138.31 (138.32, -0.01)" and row[11] == "95 (187, -92)"
    assert row[12].startswith("47.5")                       # AR@1000, ours only
    missing = table_row(md, "Faster R-CNN", "ResNet-101", "RPN [15]")
    assert missing[4] == "— (35.4)"
    r = table_row(md, "R-FCN", "ResNet-101", "RPN [11]")
    assert r[6].startswith("33.0 (?[")                      # ambiguous AP75: not compared
    assert "33.4" in md and "cannot be attributed" in md
    # deviations as footnotes: test set, R-FCN's training split, speed device
    assert "val2017" in md and "test-dev" in md
    assert "`coco-rfcn-resnet101-rpn` was trained on train2017" in md and '"trainval"' in md
    assert "NVIDIA H100 80GB HBM3" in md and "GTX 1080Ti" in md
    # the Faster R-CNN rows' train2017 is the paper's trainval35k: no footnote for them
    assert "`coco-faster_rcnn-vgg16-klrpn` was trained" not in md
    # every footnote mark has its definition
    table = "\n".join(l for l in md.splitlines() if l.startswith("|")).replace("RPN [", "RPN (")
    marks = set(re.findall(r"\[(\d+)\]", table))
    defs = set(re.findall(r"^- \[(\d+)\] ", md, re.M))
    assert marks <= defs and defs
    # provenance footer
    assert "0123456789ab" in md and "cpu: 2 cores" in md and "2026-11-25T12:00:00Z" in md


def test_smoke_table2_heading_and_all_cells(tmp_path):
    results = tmp_path / "results"
    for c in cells_of_table(2):
        m = table_metrics(c, 2, profile="smoke")
        if c.startswith("voc07-"):
            m["dataset"]["train"] = ["2007_trainval"]
        write_metrics(results, m)
    text = reports.render_table(2, results, profile="smoke")
    assert text.splitlines()[0].startswith("# Table 2") and "SMOKE RUN on synthetic data, not comparable" in text
    assert "6 of 6 cells" in text
    assert table_row(text, "R-FCN", "ResNet-101", "KL-RPN")[4] == "76.5 (74.6, +1.9)"
    assert "was trained on" not in text                       # 07 and 07+12 match the paper


def test_mixed_profiles_and_bad_files_are_errors_naming_the_file(tmp_path, capsys):
    results = tmp_path / "results"
    write_metrics(results, table_metrics("coco-faster_rcnn-vgg16-rpn", 1, profile="smoke"))
    p = write_metrics(results, table_metrics("coco-faster_rcnn-vgg16-klrpn", 1, profile="paper"))
    with pytest.raises(reports.ReportError,
                       match="coco-faster_rcnn-vgg16-klrpn/metrics.json.*profile.*a table shows one"):
        reports.render_table(1, results)
    bad = table_metrics("coco-faster_rcnn-vgg16-klrpn", 1, profile="smoke")
    bad["metrics"]["AP"] = "high"
    p.write_text(json.dumps(bad))
    with pytest.raises(reports.ReportError, match=r"coco-faster_rcnn-vgg16-klrpn/metrics.json: key 'metrics"):
        reports.render_table(1, results)
    p.write_text("{not json")
    out = tmp_path / "table1.md"
    out.write_text("previous")
    assert main(["report", "table1", "--results", str(results), "--out", str(out)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert out.read_text() == "previous"                        # nothing half-written
    wrong = table_metrics("coco-faster_rcnn-vgg16-klrpn", 2, profile="smoke")
    p.write_text(json.dumps(wrong))
    with pytest.raises(reports.ReportError, match="key 'table'"):
        reports.render_table(1, results)


def test_table_accepts_any_seed_of_the_paper_run(tmp_path):
    """Tables read each cell's seed-0 folder whatever seed its params set (no seed check)."""
    m = table_metrics("voc07-rfcn-resnet101-rpn", 2)
    m["provenance"]["seed"] = 7
    write_metrics(tmp_path, m)
    assert "1 of 6 cells" in reports.render_table(2, tmp_path)


def test_empty_results_render_every_row_missing(tmp_path):
    text = reports.render_table(1, tmp_path)
    assert "0 of 6 cells" in text and "No cell has results yet" in text
    assert text.count("— (") >= 6 * 6


def test_unknown_table_is_an_error():
    with pytest.raises(reports.ReportError, match="unknown table 3"):
        reports.render_table(3)


def test_recipe_line_per_cell_names_the_source_of_schedule_and_scales(tmp_path):
    from klrpn.config import load_cell, recipe_of

    results = tmp_path / "results"
    cfg = load_cell("voc07-rfcn-resnet101-rpn", "paper", REPO / "params")
    ran = table_metrics("voc07-rfcn-resnet101-rpn", 2, recipe=recipe_of(cfg))
    ran["dataset"]["train"] = ["2007_trainval"]
    ran["provenance"]["imagenet_weights"] = {"style": "caffe", "file": "resnet101_caffe.pth"}
    write_metrics(results, ran)
    old = table_metrics("voc0712-faster_rcnn-resnet101-rpn", 2)   # written before metrics.json had a recipe
    write_metrics(results, old)
    md = reports.render_table(2, results, cells_file=REPO / "params" / "cells.yaml")
    lines = {l.split("`")[1]: l for l in md.splitlines() if l.startswith("- `")}
    assert set(lines) == set(cells_of_table(2))                # one line per cell
    rfcn = lines["voc07-rfcn-resnet101-rpn"]
    assert rfcn.startswith("- `voc07-rfcn-resnet101-rpn` (metrics.json): schedule 20 epochs, "
                           "lr decay after epochs 8, 17 — RFCN_CoupleNet.pytorch README.md")
    assert "scales: train short side one of 400/500/600/700/800 per batch, test 600, no long-side cap — " \
           "train short side drawn per batch from 400-800" in rfcn
    # cells without metrics.json (or with an older one): the recipe their params give
    vgg = lines["voc0712-faster_rcnn-vgg16-klrpn"]
    assert "(params (paper profile; no metrics.json))" in vgg
    assert "schedule 6 epochs, lr decay after epochs 5 — jwyang/faster-rcnn.pytorch README.md, VOC 2007 " \
           "table, VGG-16 bs-1 row" in vgg
    assert "train short side 600, test 600, no long-side cap — paper Tables 1-2 captions" in vgg
    assert "its metrics.json has no recipe" in lines["voc0712-faster_rcnn-resnet101-rpn"]
    # the provenance footer says which ImageNet weights a run started from
    assert "| caffe |" in md and "| — |" in md   # the older metrics.json does not say


def test_provenance_footer_lists_the_recorded_package_versions(tmp_path):
    """A metrics.json with every package version shows them all; one written before they were
    recorded (torch and torchvision only) keeps rendering, with those two."""
    results = tmp_path / "results"
    new = table_metrics("voc07-rfcn-resnet101-rpn", 2)
    new["dataset"]["train"] = ["2007_trainval"]
    new["provenance"].update(klrpn="0.1.0", torch="2.14.1+cu130", torchvision="0.29.1+cu130",
                             numpy="2.4.6", pillow="13.0.0", pycocotools="2.0.11", scipy=None)
    write_metrics(results, new)
    write_metrics(results, table_metrics("voc0712-faster_rcnn-vgg16-rpn", 2))
    md = reports.render_table(2, results)
    lines = md.split("## Provenance")[1].splitlines()
    footer = {l.split("`")[1]: l.split(" | ") for l in lines if l.startswith("| `")}
    software = next(l for l in lines if l.startswith("| cell |")).split(" | ").index("software")
    assert footer["voc07-rfcn-resnet101-rpn"][software] == (
        "klrpn 0.1.0, torch 2.14.1+cu130, torchvision 0.29.1+cu130, numpy 2.4.6, pillow 13.0.0, "
        "pycocotools 2.0.11, scipy —")
    assert footer["voc0712-faster_rcnn-vgg16-rpn"][software] == "torch 2.14.1, torchvision 0.29.1"
