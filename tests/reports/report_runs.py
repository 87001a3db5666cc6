"""Hand-written metrics.json fixtures and seed runs for the report tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import helpers
from helpers import metrics_doc

from klrpn.config import list_cells, load_cell
from klrpn.data import build_dataset
from klrpn.layout import DETECTIONS_NAME, METRICS_NAME, run_dir
from klrpn.metrics.bootstrap import predictions_from_results
from klrpn.metrics.proposal_quality import coco_gt_of, proposal_quality
from klrpn.metrics.voc_eval import voc07_map

REPO = Path(__file__).resolve().parents[2]
SHA = "a" * 64
PAIR = ("voc07-rfcn-resnet101-rpn", "voc07-rfcn-resnet101-klrpn")
BASE = "voc0712-faster_rcnn-vgg16-klrpn"


# --- Tables 1-2: one hand-written metrics.json per cell -----------------------------------------

def table_metrics(cell: str, table: int, profile: str = "paper", **over) -> dict:
    """A schema-valid metrics.json (schema version 1) of a table cell, seed 0, as the report
    tests' golden outputs expect it (helpers.metrics_doc, measured on an H100), recording
    ``table`` (another table than the cell's makes a wrong file); keys of ``over`` replaced."""
    return metrics_doc(cell, profile=profile, schema_version=1, table=table,
                       speed={"ms_per_image": 95.0, "device": "NVIDIA H100 80GB HBM3"}, **over)


def write_metrics(results: Path, m: dict, seed: int = 0) -> Path:
    """``m`` as the metrics.json of its cell's seed-``seed`` run folder (default the paper's
    run, whatever seed ``m`` records); returns the file."""
    return helpers.write_metrics(results, m, seed)


def cells_of_table(table: int) -> list[str]:
    return [c["id"] for c in list_cells(REPO / "params") if c["table"] == table]


def table_row(md: str, method: str, backbone: str, proposal: str) -> list[str]:
    for line in md.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if cols[:3] == [method, backbone, proposal]:
            return cols
    raise AssertionError(f"no row {method} {backbone} {proposal} in\n{md}")


# --- seed reports: real smoke cells on the synthetic VOC test set -------------------------------

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
    (d / DETECTIONS_NAME).write_text(json.dumps(dets))
    (d / METRICS_NAME).write_text(json.dumps(m))
    return m


def md_row(md: str, first: str, second: str) -> list[str]:
    for line in md.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if cols[:2] == [first, second]:
            return cols
    raise AssertionError(f"no row {first} {second} in\n{md}")
