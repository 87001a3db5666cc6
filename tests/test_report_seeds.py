"""reports/significance.md, proposals.md(+png) and ablations.md over seeds (issue 10), on the
real smoke cells and the synthetic VOC test set, from hand-made detections with known gaps."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from klrpn import report
from klrpn.cli import main
from klrpn.config import load_cell, run_dir
from klrpn.data import build_dataset
from klrpn.metrics.bootstrap import predictions_from_results
from klrpn.metrics.proposal_quality import coco_gt_of, proposal_quality
from klrpn.metrics.voc_eval import voc07_map

REPO = Path(__file__).resolve().parents[1]
SHA = "a" * 64
PAIR = ("voc07-rfcn-resnet101-rpn", "voc07-rfcn-resnet101-klrpn")
BASE = "voc0712-faster_rcnn-vgg16-klrpn"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A checkout-like folder: params/ and a small synthetic dataset under synthetic/ (where the
    smoke profile reads it)."""
    from klrpn.data.synthetic import generate

    root = tmp_path_factory.mktemp("reports")
    shutil.copytree(REPO / "params", root / "params")
    generate(root / "synthetic", seed=0, log=lambda *a: None,
             sizes={"coco/train2017": 4, "coco/val2017": 4, "VOC2007/trainval": 4,
                    "VOC2007/test": 30, "VOC2012/trainval": 4})
    return root


@pytest.fixture
def ws(workspace, monkeypatch, tmp_path):
    monkeypatch.chdir(workspace)
    results = tmp_path / "results"
    return workspace, results


def dataset(cell):
    return build_dataset(load_cell(cell, "smoke", "params"), "test", train=False)


def gt_results(ds, seed: int, degrade: float) -> list[dict]:
    """Detections copied from the ground truth (scores random); a ``degrade`` fraction of the
    images get theirs shifted off the objects."""
    rng = np.random.default_rng(seed)
    out = []
    for image_id, g in ds.gt.items():
        shift = 25.0 if rng.uniform() < degrade else 0.0
        for (x1, y1, x2, y2), label in zip(g["boxes"].tolist(), g["labels"].tolist()):
            out.append({"image_id": image_id, "category_id": label,
                        "bbox": [x1 - 1 + shift, y1 - 1 + shift, x2 - x1 + 1, y2 - y1 + 1],
                        "score": float(rng.uniform(0.5, 1))})
            out.append({"image_id": image_id, "category_id": label % 3 + 1,
                        "bbox": [0.0, 0.0, 20.0, 20.0], "score": float(rng.uniform(0, 0.6))})
    return out


def write_run(results: Path, cell: str, seed: int, ds, dets: list[dict], table: int = 2,
              version: int = 2) -> dict:
    """detections.json and a metrics.json whose mAP is the VOC07 evaluator's on them."""
    cfg = load_cell(cell, "smoke", "params")
    preds = predictions_from_results(dets)
    metrics = voc07_map(ds, preds)
    proposals = {i: {"boxes": p["boxes"], "scores": p["scores"]} for i, p in preds.items()}
    m = {
        "schema_version": version, "cell": cell, "profile": "smoke", "table": table,
        "detector": cfg["model"]["detector"], "backbone": cfg["model"]["backbone"],
        "proposal": cfg["model"]["proposal"],
        "dataset": {"name": cfg["dataset"]["name"], "train": cfg["dataset"]["train"],
                    "test": cfg["dataset"]["test"], "num_test_images": len(ds), "manifest_sha256": SHA},
        "metrics": metrics, "proposals": {"AR@100": 1.0, "AR@300": 1.0, "AR@1000": 1.0},
        "params": 100, "params_M": 0.0001 + 0.01, "speed": {"ms_per_image": 1.0, "device": "cpu"},
        "provenance": {"git_commit": None, "git_dirty": None, "params_hash": SHA, "seed": seed,
                       "torch": "t", "torchvision": "tv", "wall_time_s": 1.0, "eval_wall_time_s": 1.0,
                       "train_iters": 10, "date": "2026-11-27T00:00:00Z", "hardware": "cpu", "run_identity": None,
                       "train": {}},
    }
    if version == 2:
        m["proposal_quality"] = json.loads(json.dumps(
            proposal_quality(coco_gt_of(ds), proposals), allow_nan=False))
    d = run_dir(results, cell, seed)
    d.mkdir(parents=True, exist_ok=True)
    (d / "detections.json").write_text(json.dumps(dets))
    (d / "metrics.json").write_text(json.dumps(m))
    return m


def md_row(md: str, first: str, second: str) -> list[str]:
    for line in md.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if cols[:2] == [first, second]:
            return cols
    raise AssertionError(f"no row {first} {second} in\n{md}")


def test_run_dir_layout():
    assert run_dir("results", "c", 0) == Path("results/c")
    assert run_dir("r", "c", 2) == Path("r/seed2/c")
    with pytest.raises(ValueError):
        run_dir("r", "c", -1)


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
    text, _, _ = report.render_proposals(results, [0], pairs=[PAIR[0]])
    assert "Only 1 of the 6 RPN / KL-RPN pairs" in text and "coco-" not in text
    with pytest.raises(report.ReportError, match="voc07-rfcn-resnet101-klrpn is not the RPN cell"):
        report.selected_pairs([PAIR[1]])


def test_significance_identical_models_and_out_of_step_files(ws):
    root, results = ws
    ds = dataset(PAIR[0])
    dets = gt_results(ds, 3, 0.3)
    write_run(results, PAIR[0], 0, ds, dets)
    m = write_run(results, PAIR[1], 0, ds, dets)
    text, frame = report.render_significance(results, [0], params_dir="params", resamples=200)
    row = md_row(text, "Table 2", "R-FCN")
    assert row[6:] == ["+0.00 (one seed)", "1", "[+0.00, +0.00]", "no difference detectable"]
    # metrics.json that does not belong to its detections.json is refused, naming the file
    m["metrics"]["mAP"] += 1.0
    (run_dir(results, PAIR[1], 0) / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(report.ReportError, match="detections.json.*out of step"):
        report.render_significance(results, [0], params_dir="params", resamples=10)
    # a seed-1 folder holding a seed-0 run is refused
    shutil.copytree(run_dir(results, PAIR[0], 0), run_dir(results, PAIR[0], 1))
    with pytest.raises(report.ReportError, match="provenance.seed"):
        report.render_significance(results, [0, 1], params_dir="params", resamples=10)


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
    with pytest.raises(report.ReportError, match="seed1.*schema_version 1"):
        report.render_proposals(results, [0, 1])


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


def test_report_command_rejects_bad_seeds(capsys):
    with pytest.raises(SystemExit):
        main(["report", "significance", "--seeds", "0,x", "--out", "x.md"])
    assert "--seeds" in capsys.readouterr().err
