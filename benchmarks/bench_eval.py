"""Evaluation inference: two passes per image (before) vs one (after), in the same run.

Before issue 11, ``klrpn.evaluate.predict`` ran every test image through the network twice:
``model([image])`` for the detections, then ``model.propose([image])`` for the proposal recall.
Now ``model.detect([image])`` returns both from one pass. For each cell this script times both
ways over the same images, alternating them image by image so that load drift on a shared
machine hits both alike, checks that they give identical detections and proposals, and prints
the wall-time ratio after / before as one JSON line per cell.

``--whole`` times each cell's whole evaluation instead: the passes over the test split, the
speed column (before: ``eval.latency_images`` extra passes; now: taken from the evaluation pass)
and the metrics computed from the outputs (AP / mAP, proposal recall, proposal quality; before:
AR@k and the proposal curves from two COCOeval runs of the same proposals, now from one),
alternated ``--rounds`` times.

Models are the cell's trained ``model_final.pt`` under --results when it exists (so the second
stage sees trained proposals), else the untrained model; images are the cell's test split
(``klrpn data synth`` output for the smoke profile).

    .venv/bin/python benchmarks/bench_eval.py [--profile smoke] [--cells C ...] [--images 60]
        [--device cpu|cuda] [--results results] [--synthetic]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import tame_untrained_resnet, use_synthetic_data
from klrpn import checkpoint as ckpt
from klrpn.config import list_cells, load_cell
from klrpn.data import build_dataset
from klrpn.metrics.model_stats import device_name
from klrpn.models import build_model


def load(cell: str, profile: str, results: Path, device: torch.device, synthetic: bool = False):
    if (results / cell / ckpt.FINAL_NAME).is_file():
        model, cfg = ckpt.load_final_model(results / cell, device)
        return model, cfg, "trained"
    cfg = load_cell(cell, profile)
    if synthetic:
        use_synthetic_data(cfg)
    torch.manual_seed(0)
    model = tame_untrained_resnet(build_model(cfg, load_pretrained=False)).to(device).eval()
    return model, cfg, "untrained"


def timed(fn, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def same(a: list[dict], b: list[dict]) -> bool:
    return all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


@torch.no_grad()
def bench_cell(cell: str, args, device: torch.device) -> dict:
    model, cfg, weights = load(cell, args.profile, Path(args.results), device, args.synthetic)
    dataset = build_dataset(cfg, "test", train=False)
    n = min(args.images, len(dataset))
    before = after = 0.0
    identical = True
    for i in range(n):
        image = dataset[i][0].to(device)
        (det2, prop2), t2 = timed(lambda: (model([image]), model.propose([image])), device)
        (det1, prop1), t1 = timed(lambda: model.detect([image]), device)
        if i > 0:  # the first image warms both paths up
            before, after = before + t2, after + t1
        identical &= same(det1, det2) and same(prop1, prop2)
    return {"cell": cell, "profile": args.profile, "weights": weights, "images": n - 1,
            "device": device_name(device), "two_pass_s": round(before, 3),
            "one_pass_s": round(after, 3), "ratio_after_before": round(after / before, 3),
            "identical_outputs": bool(identical)}


def metrics_before(dataset, detections, proposals) -> None:
    """What ``klrpn evaluate`` computed from the outputs before: AP / mAP, AR@k (one COCOeval
    run), the proposal-quality curves (a second COCOeval run of the same proposals)."""
    from klrpn.metrics.proposal_quality import coco_gt_of, proposal_quality

    dataset.evaluate(detections)
    dataset.proposal_recall(proposals)
    proposal_quality(coco_gt_of(dataset), proposals)


def metrics_after(dataset, detections, proposals) -> None:
    """Now: AR@k read off the proposal-quality curve (one COCOeval run of the proposals)."""
    from klrpn.metrics.proposal_quality import coco_gt_of, headline_recall, proposal_quality

    dataset.evaluate(detections)
    headline_recall(proposal_quality(coco_gt_of(dataset), proposals))


def evaluate_before(model, dataset, cfg, device) -> None:
    """``klrpn evaluate`` before issue 11: two passes per image, then extra latency passes."""
    from klrpn.metrics.model_stats import inference_latency

    detections, proposals = {}, {}
    for i in range(len(dataset)):
        image, target = dataset[i]
        image = image.to(device)
        det, prop = model([image])[0], model.propose([image])[0]
        image_id = int(target["image_id"])
        detections[image_id] = {k: det[k].cpu() for k in ("boxes", "labels", "scores")}
        proposals[image_id] = {k: prop[k].cpu() for k in ("boxes", "scores")}
    n = min(cfg["eval"]["latency_images"], len(dataset))
    inference_latency(model, [dataset[i][0] for i in range(n)],
                      warmup=cfg["eval"]["latency_warmup"], iters=1, device=device)
    metrics_before(dataset, detections, proposals)


def evaluate_after(model, dataset, cfg, device) -> None:
    """``klrpn evaluate`` now: one pass per image, whose timings give the speed column."""
    from klrpn import evaluate

    detections, proposals, ms = evaluate.predict(model, dataset, device, progress=False)
    evaluate.latency(ms, cfg, device)
    metrics_after(dataset, detections, proposals)


@torch.no_grad()
def bench_whole(cell: str, args, device: torch.device) -> dict:
    """The whole evaluation of a cell (passes, speed column, metrics), before vs after,
    alternated ``args.rounds`` times."""
    model, cfg, weights = load(cell, args.profile, Path(args.results), device, args.synthetic)
    dataset = build_dataset(cfg, "test", train=False)
    before = after = 0.0
    for _ in range(args.rounds):
        before += timed(lambda: evaluate_before(model, dataset, cfg, device), device)[1]
        after += timed(lambda: evaluate_after(model, dataset, cfg, device), device)[1]
    return {"cell": cell, "profile": args.profile, "weights": weights, "whole_evaluation": True,
            "images": len(dataset), "rounds": args.rounds, "device": device_name(device),
            "before_s": round(before, 3), "after_s": round(after, 3),
            "ratio_after_before": round(after / before, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--cells", nargs="*", default=None, help="default: every cell")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--results", default="results")
    parser.add_argument("--synthetic", action="store_true",
                        help="untrained (paper) cells on the `klrpn data synth` test split")
    parser.add_argument("--whole", action="store_true",
                        help="time the whole evaluation (passes, speed column, metrics) of each "
                             "cell's test split before vs after, instead of the passes alone")
    parser.add_argument("--rounds", type=int, default=2, help="with --whole: alternations")
    args = parser.parse_args()
    device = torch.device(args.device)
    cells = args.cells or [c["id"] for c in list_cells()]
    if args.whole:
        rows = [bench_whole(cell, args, device) for cell in cells]
        for row in rows:
            print(json.dumps(row), flush=True)
        before, after = sum(r["before_s"] for r in rows), sum(r["after_s"] for r in rows)
        print(json.dumps({"cells": len(rows), "whole_evaluation": True, "before_s": round(before, 3),
                          "after_s": round(after, 3), "ratio_after_before": round(after / before, 3)}))
        return
    rows = [bench_cell(cell, args, device) for cell in cells]
    for row in rows:
        print(json.dumps(row))
    total_before = sum(r["two_pass_s"] for r in rows)
    total_after = sum(r["one_pass_s"] for r in rows)
    print(json.dumps({"cells": len(rows), "two_pass_s": round(total_before, 3),
                      "one_pass_s": round(total_after, 3),
                      "ratio_after_before": round(total_after / total_before, 3),
                      "identical_outputs": all(r["identical_outputs"] for r in rows)}))


if __name__ == "__main__":
    main()
