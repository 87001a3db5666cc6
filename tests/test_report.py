"""Tables 1-2 rendered from hand-written metrics.json fixtures."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from klrpn import report
from klrpn.cli import main
from klrpn.config import list_cells

REPO = Path(__file__).resolve().parents[1]
SHA = "a" * 64


def _metrics(cell: str, table: int, profile: str = "paper", **over) -> dict:
    _, detector, backbone, proposal = re.match(r"^([a-z0-9]+)-(\w+?)-(vgg16|resnet101)-(rpn|klrpn)$", cell).groups()
    name = cell.split("-")[0]
    m = {
        "schema_version": 1, "cell": cell, "profile": profile, "table": table,
        "detector": detector, "backbone": backbone, "proposal": proposal,
        "dataset": {"name": name, "train": ["train2017"] if table == 1 else ["2007_trainval", "2012_trainval"],
                    "test": "val2017" if table == 1 else "2007_test",
                    "num_test_images": 5000 if table == 1 else 4952, "manifest_sha256": SHA},
        "metrics": ({"AP": 30.0, "AP50": 50.0, "AP75": 31.0, "APS": None, "APM": 33.0, "APL": 40.0}
                    if table == 1 else {"mAP": 76.5, "per_class": {"aeroplane": 80.0}}),
        "proposals": {"AR@100": 40.0, "AR@300": 45.0, "AR@1000": 47.5},
        "params": 138_307_339, "params_M": 138.31,
        "speed": {"ms_per_image": 95.0, "device": "NVIDIA H100 80GB HBM3"},
        "provenance": {"git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False,
                       "params_hash": SHA, "seed": 0, "torch": "2.14.1", "torchvision": "0.29.1",
                       "wall_time_s": 80.5, "eval_wall_time_s": 10.0, "train_iters": 300,
                       "date": "2026-11-25T12:00:00Z", "hardware": "cpu: 2 cores", "run_identity": None,
                       "train": {}},
    }
    for k, v in over.items():
        m[k] = v
    return m


def _write(results: Path, m: dict) -> Path:
    d = results / m["cell"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(m))
    return d / "metrics.json"


def _cells(table: int) -> list[str]:
    return [c["id"] for c in list_cells(REPO / "params") if c["table"] == table]


def _row(md: str, method: str, backbone: str, proposal: str) -> list[str]:
    for line in md.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if cols[:3] == [method, backbone, proposal]:
            return cols
    raise AssertionError(f"no row {method} {backbone} {proposal} in\n{md}")


def test_fixtures_satisfy_the_metrics_schema(tmp_path):
    for t in (1, 2):
        for c in _cells(t):
            report.load_metrics(_write(tmp_path, _metrics(c, t)))


def test_reference_covers_exactly_the_cells_and_records_the_ap75_ambiguity():
    ref = report.load_reference()
    for t in (1, 2):
        assert sorted(r["cell"] for r in ref[f"table{t}"]["rows"]) == sorted(_cells(t))
    rfcn = [r for r in ref["table1"]["rows"] if r["method"] == "R-FCN"]
    assert all(r["values"]["AP75"] is None and r["ambiguous"] == ["AP75"] for r in rfcn)
    assert ref["table1"]["ambiguities"]["AP75_unattributed_value"] == 33.4
    vgg_kl = next(r for r in ref["table1"]["rows"] if r["cell"] == "coco-faster_rcnn-vgg16-klrpn")
    assert vgg_kl["values"] == {"AP": 29.7, "AP50": 49.9, "AP75": 31.5, "APS": 11.6, "APM": 33.0,
                                "APL": 42.4, "params_M": 138.32, "speed_ms": 187}
    assert [r["values"]["mAP"] for r in ref["table2"]["rows"]] == [75.9, 77.1, 80.2, 80.7, 73.8, 74.6]


def test_partial_table1_with_differences_and_footnotes(tmp_path):
    results = tmp_path / "results"
    _write(results, _metrics("coco-faster_rcnn-vgg16-klrpn", 1))
    rfcn = _metrics("coco-rfcn-resnet101-rpn", 1)
    rfcn["metrics"]["AP75"] = 33.0
    _write(results, rfcn)
    out = tmp_path / "reports/table1.md"
    assert main(["report", "table1", "--results", str(results), "--out", str(out)]) == 0
    md = out.read_text()
    assert "SMOKE" not in md and "2 of 6 cells have results" in md
    row = _row(md, "Faster R-CNN", "VGG-16", "KL-RPN")
    # AP: ours 30.0 vs paper 29.7 -> +0.3; APS null -> n/a beside the paper's 11.6
    assert row[4] == "30.0 (29.7, +0.3)"
    assert row[7].startswith("n/a (11.6")
    assert row[10] == "138.31 (138.32, -0.01)" and row[11] == "95 (187, -92)"
    assert row[12].startswith("47.5")                       # AR@1000, ours only
    missing = _row(md, "Faster R-CNN", "ResNet-101", "RPN [15]")
    assert missing[4] == "— (35.4)"
    r = _row(md, "R-FCN", "ResNet-101", "RPN [11]")
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
    for c in _cells(2):
        m = _metrics(c, 2, profile="smoke")
        if c.startswith("voc07-"):
            m["dataset"]["train"] = ["2007_trainval"]
        _write(results, m)
    text = report.render_table(2, results, profile="smoke")
    assert text.splitlines()[0].startswith("# Table 2") and "SMOKE RUN on synthetic data, not comparable" in text
    assert "6 of 6 cells" in text
    assert _row(text, "R-FCN", "ResNet-101", "KL-RPN")[4] == "76.5 (74.6, +1.9)"
    assert "was trained on" not in text                       # 07 and 07+12 match the paper


def test_mixed_profiles_and_bad_files_are_errors_naming_the_file(tmp_path, capsys):
    results = tmp_path / "results"
    _write(results, _metrics("coco-faster_rcnn-vgg16-rpn", 1, profile="smoke"))
    p = _write(results, _metrics("coco-faster_rcnn-vgg16-klrpn", 1, profile="paper"))
    with pytest.raises(report.ReportError, match="coco-faster_rcnn-vgg16-klrpn/metrics.json.*profile"):
        report.render_table(1, results)
    bad = _metrics("coco-faster_rcnn-vgg16-klrpn", 1, profile="smoke")
    bad["metrics"]["AP"] = "high"
    p.write_text(json.dumps(bad))
    with pytest.raises(report.ReportError, match=r"coco-faster_rcnn-vgg16-klrpn/metrics.json: key 'metrics"):
        report.render_table(1, results)
    p.write_text("{not json")
    out = tmp_path / "table1.md"
    out.write_text("previous")
    assert main(["report", "table1", "--results", str(results), "--out", str(out)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert out.read_text() == "previous"                        # nothing half-written
    wrong = _metrics("coco-faster_rcnn-vgg16-klrpn", 2, profile="smoke")
    p.write_text(json.dumps(wrong))
    with pytest.raises(report.ReportError, match="key 'table'"):
        report.render_table(1, results)


def test_empty_results_render_every_row_missing(tmp_path):
    text = report.render_table(1, tmp_path)
    assert "0 of 6 cells" in text and "No cell has results yet" in text
    assert text.count("— (") >= 6 * 6


def test_atomic_output_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "x.md"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with report.atomic_output(target) as tmp:
            tmp.write_text("new, half")
            raise RuntimeError
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_recipe_line_per_cell_names_the_source_of_schedule_and_scales(tmp_path):
    from klrpn.config import load_cell, recipe_of

    results = tmp_path / "results"
    cfg = load_cell("voc07-rfcn-resnet101-rpn", "paper", REPO / "params")
    ran = _metrics("voc07-rfcn-resnet101-rpn", 2, recipe=recipe_of(cfg))
    ran["dataset"]["train"] = ["2007_trainval"]
    ran["provenance"]["imagenet_weights"] = {"style": "caffe", "file": "resnet101_caffe.pth"}
    _write(results, ran)
    old = _metrics("voc0712-faster_rcnn-resnet101-rpn", 2)   # written before metrics.json had a recipe
    _write(results, old)
    md = report.render_table(2, results, REPO / "params" / "cells.yaml")
    lines = {l.split("`")[1]: l for l in md.splitlines() if l.startswith("- `")}
    assert set(lines) == set(_cells(2))                       # one line per cell
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
