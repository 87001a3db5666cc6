"""Acceptance on the real detector: smoke training of one RPN and one KL-RPN cell on the
synthetic data, then evaluation. The loss falls, metrics.json
validates, and the trained model beats the untrained one (same seed, same initial weights)
on the synthetic test split, in the table's metric and in proposal recall."""

import csv
import json

import pytest
import torch
import yaml
from helpers import PARAMS, shortened_smoke_params

from klrpn import checkpoint as ckpt
from klrpn import evaluate, launch, train
from klrpn.config import load_cell

pytestmark = pytest.mark.slow

# (cell, iterations): shorter than the smoke profile's runs (500, 700 for VGG-16) to keep the
# test short; the trained models' AP and AR are already well above the untrained ones' there
CASES = [("coco-faster_rcnn-vgg16-rpn", 100), ("voc07-rfcn-resnet101-klrpn", 300)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from klrpn.data.synthetic import generate

    root = tmp_path_factory.mktemp("smoke")
    generate(root / "synthetic", seed=0, log=lambda *a: None)
    for iters in sorted({n for _, n in CASES}):
        params = root / f"params-{iters}"
        length = yaml.safe_load((PARAMS / "profiles" / "smoke.yaml").read_text())["all"]["train"]["schedule"]["length"]
        assert length >= iters
        shortened_smoke_params(params, length=iters, steps=[iters * 4 // 5],
                               checkpoint_every=iters // 2)
    return root


def untrained_scores(cfg: dict) -> tuple[dict, dict]:
    from klrpn.data import build_dataset
    from klrpn.models import build_model

    train.seed_everything(cfg["seed"])          # the weights training started from
    model = build_model(cfg, load_pretrained=False).eval()
    dataset = build_dataset(cfg, "test", train=False)
    det, prop, _ = evaluate.predict(model, dataset, torch.device("cpu"), progress=False)
    return dataset.evaluate(det), dataset.proposal_recall(prop)


@pytest.mark.parametrize("cell, iters", CASES)
def test_smoke_cell_learns_and_beats_untrained(workspace, cell, iters, monkeypatch):
    monkeypatch.chdir(workspace)   # the smoke profile reads synthetic/ relative to here
    out, params = workspace / "results" / cell, f"params-{iters}"
    quiet = lambda *a, **k: None  # noqa: E731
    assert launch.train_cell(cell, "smoke", out, params_dir=params, device="cpu", log=quiet) == 0

    with open(out / "train_log.csv", newline="") as f:
        totals = [float(r["total"]) for r in csv.DictReader(f)]
    assert len(totals) == iters
    first, last = sum(totals[:10]) / 10, sum(totals[-10:]) / 10
    assert last < 0.75 * first, (first, last)

    model, cfg = ckpt.load_final_model(out)
    assert not model.training and cfg["cell"] == cell

    doc = evaluate.evaluate_cell(cell, "smoke", out, params_dir=params, device="cpu",
                                 progress=False, log=quiet)
    evaluate.validate_metrics(json.loads((out / "metrics.json").read_text()))
    assert json.loads((out / "detections.json").read_text())
    assert doc["provenance"]["train_iters"] == iters and doc["profile"] == "smoke"

    metrics0, recall0 = untrained_scores(load_cell(cell, "smoke", params))
    key = "AP" if "AP" in doc["metrics"] else "mAP"
    assert doc["metrics"][key] > (metrics0[key] or 0.0), (doc["metrics"], metrics0)
    assert doc["proposals"]["AR@300"] > recall0["AR@300"], (doc["proposals"], recall0)
    # a rerun of train is a no-op once model_final.pt exists
    assert launch.train_cell(cell, "smoke", out, params_dir=params, device="cpu", log=quiet) == 0
