"""Paired bootstrap: the per-image accumulation reproduces the full evaluations exactly,
weights equal duplicated images, identical models give Delta = 0, a planted gap is found."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import make_coco

from klrpn.metrics.bootstrap import (CocoPerImage, VocPerImage, paired_bootstrap,
                                     predictions_from_results, resample_counts, verdict)
from klrpn.metrics.coco_eval import run_cocoeval
from klrpn.metrics.voc_eval import voc07_map


NUM_IMAGES, CATEGORIES = 24, (3, 7)


def scene(seed: int = 0):
    """Ground truth (1-3 boxes per image, some crowd) as (images, annotations)."""
    rng = np.random.default_rng(seed)
    images = [{"id": 10 + i, "width": 300, "height": 300} for i in range(NUM_IMAGES)]
    anns = []
    for img in images:
        for _ in range(rng.integers(1, 4)):
            x, y = rng.uniform(0, 200, 2)
            w, h = rng.uniform(10, 90, 2)
            anns.append({"id": len(anns) + 1, "image_id": img["id"],
                         "category_id": int(rng.choice(CATEGORIES)), "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": int(rng.uniform() < 0.1)})
    return images, anns


def detections(anns, seed: int, *, degrade: float = 0.0, ties: bool = False) -> list[dict]:
    """Jittered copies of the ground truth plus false positives; with ``degrade``, that fraction
    of the images get their true detections pushed off their objects."""
    rng = np.random.default_rng(seed)
    bad = {i for i in range(10, 10 + NUM_IMAGES) if rng.uniform() < degrade}
    out = []
    for a in anns:
        x, y, w, h = a["bbox"]
        for _ in range(2):
            jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
            if a["image_id"] in bad:
                jitter[:2] += [w * 0.8, h * 0.8]
            out.append({"image_id": a["image_id"], "category_id": a["category_id"],
                        "bbox": [x + jitter[0], y + jitter[1], max(w + jitter[2], 2), max(h + jitter[3], 2)],
                        "score": float(rng.uniform(0.3, 1.0))})
    for _ in range(3 * NUM_IMAGES):                        # false positives anywhere
        x, y = rng.uniform(0, 250, 2)
        out.append({"image_id": int(rng.integers(10, 10 + NUM_IMAGES)),
                    "category_id": int(rng.choice(CATEGORIES)),
                    "bbox": [x, y, rng.uniform(5, 50), rng.uniform(5, 50)],
                    "score": float(rng.uniform(0.0, 0.8))})
    if ties:
        for r in out:
            r["score"] = round(r["score"], 1)
    return out


def coco_gt(seed=0):
    images, anns = scene(seed)
    return make_coco(images, anns, [{"id": c, "name": str(c)} for c in CATEGORIES]), anns


def voc_dataset(anns):
    """The VOC07 evaluator's view of the scene: gt in inclusive coords, crowd as difficult."""
    gt = {}
    for i in range(10, 10 + NUM_IMAGES):
        mine = [a for a in anns if a["image_id"] == i]
        boxes = np.array([[x + 1, y + 1, x + w, y + h] for x, y, w, h in (a["bbox"] for a in mine)])
        gt[i] = {"boxes": boxes.reshape(-1, 4),
                 "labels": np.array([CATEGORIES.index(a["category_id"]) + 1 for a in mine], np.int64),
                 "difficult": np.array([bool(a["iscrowd"]) for a in mine], bool)}
    return SimpleNamespace(gt=gt, classes=[str(c) for c in CATEGORIES])


def voc_results(results):
    return [{**r, "category_id": CATEGORIES.index(r["category_id"]) + 1} for r in results]


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, False)])
def test_coco_identity_reproduces_cocoeval(seed, ties):
    gt, anns = coco_gt(seed)
    results = detections(anns, seed, ties=ties)
    stats = run_cocoeval(gt, results)
    assert abs(CocoPerImage(gt, results).ap() - stats[0]) < 1e-12


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True)])
def test_voc_identity_reproduces_voc07_map(seed, ties):
    gt, anns = coco_gt(seed)
    dataset = voc_dataset(anns)
    results = voc_results(detections(anns, seed, ties=ties))
    expected = voc07_map(dataset, predictions_from_results(results))["mAP"]
    assert VocPerImage(dataset, predictions_from_results(results)).metric() == expected


def duplicated(counts, images, anns, results):
    """The resampled test set built explicitly: image i copied counts[i] times (new ids)."""
    new_images, new_anns, new_results = [], [], []
    for i, c in enumerate(counts):
        old = images[i]["id"]
        for j in range(c):
            nid = old * 100 + j
            new_images.append({**images[i], "id": nid})
            new_anns += [{**a, "id": len(new_anns) + 1 + n, "image_id": nid}
                         for n, a in enumerate(x for x in anns if x["image_id"] == old)]
            new_results += [{**r, "image_id": nid} for r in results if r["image_id"] == old]
    return new_images, new_anns, new_results


def test_weights_equal_duplicated_images():
    images, anns = scene(3)
    gt = make_coco(images, anns, [{"id": c, "name": str(c)} for c in CATEGORIES])
    results = detections(anns, 3)
    coco, voc = CocoPerImage(gt, results), VocPerImage(voc_dataset(anns), predictions_from_results(voc_results(results)))
    for counts in resample_counts(NUM_IMAGES, 3, seed=5):
        d_images, d_anns, d_results = duplicated(counts, images, anns, results)
        d_gt = make_coco(d_images, d_anns, [{"id": c, "name": str(c)} for c in CATEGORIES])
        assert abs(coco.ap(counts) - run_cocoeval(d_gt, d_results)[0]) < 1e-12
        # VOC: the duplicated set's own evaluator
        d_voc = SimpleNamespace(gt={}, classes=[str(c) for c in CATEGORIES])
        base = voc_dataset(anns)
        for im in d_images:
            d_voc.gt[im["id"]] = base.gt[im["id"] // 100]
        expected = voc07_map(d_voc, predictions_from_results(voc_results(d_results)))["mAP"]
        assert voc.metric(counts) == pytest.approx(expected, abs=1e-10)


def test_resample_counts_seeded():
    a, b = resample_counts(7, 5, seed=1), resample_counts(7, 5, seed=1)
    assert (a == b).all() and a.shape == (5, 7) and (a.sum(axis=1) == 7).all()
    assert not (a == resample_counts(7, 5, seed=2)).all()


def test_identical_models_give_zero_delta():
    gt, anns = coco_gt(0)
    results = detections(anns, 0)
    one, two = CocoPerImage(gt, results), CocoPerImage(gt, list(results))
    out = paired_bootstrap([one], [two], resamples=1000, seed=0)
    assert out["delta"] == 0.0 and (out["deltas"] == 0).all()
    assert out["ci"] == [0.0, 0.0] and out["verdict"] == "no difference detectable"


@pytest.mark.parametrize("kind", ["coco", "voc"])
def test_planted_difference_is_detected_both_ways(kind):
    gt, anns = coco_gt(0)
    good, bad = detections(anns, 1), detections(anns, 1, degrade=0.5)
    if kind == "coco":
        good_eval, bad_eval = CocoPerImage(gt, good), CocoPerImage(gt, bad)
    else:
        dataset = voc_dataset(anns)
        good_eval = VocPerImage(dataset, predictions_from_results(voc_results(good)))
        bad_eval = VocPerImage(dataset, predictions_from_results(voc_results(bad)))
    better = paired_bootstrap([bad_eval], [good_eval], resamples=1000, seed=0)
    assert better["ci"][0] > 0 and better["verdict"] == "KL-RPN better"
    assert better["delta"] == pytest.approx(good_eval.metric() - bad_eval.metric())
    worse = paired_bootstrap([good_eval], [bad_eval], resamples=1000, seed=0)
    assert worse["ci"][1] < 0 and worse["verdict"] == "RPN better"
    assert worse["ci"] == pytest.approx([-better["ci"][1], -better["ci"][0]])  # same resamples
    again = paired_bootstrap([good_eval], [bad_eval], resamples=1000, seed=0)
    assert (again["deltas"] == worse["deltas"]).all()                         # deterministic
    forked = paired_bootstrap([good_eval], [bad_eval], resamples=1000, seed=0, workers=3)
    assert (forked["deltas"] == worse["deltas"]).all() and forked["ci"] == worse["ci"]


def test_seeds_average_and_mismatch_errors():
    gt, anns = coco_gt(0)
    a, b, c = (CocoPerImage(gt, detections(anns, s)) for s in (1, 2, 3))
    out = paired_bootstrap([a, b], [b, c], resamples=50, seed=0)
    assert out["per_seed"] == [b.metric() - a.metric(), c.metric() - b.metric()]
    assert out["delta"] == pytest.approx(np.mean(out["per_seed"]))
    with pytest.raises(ValueError, match="same non-zero number"):
        paired_bootstrap([a], [b, c])
    other = CocoPerImage(gt, detections(anns, 1), image_ids=[10, 11])
    with pytest.raises(ValueError, match="same test images"):
        paired_bootstrap([a], [other])


def test_verdict_and_empty_detections():
    assert verdict(0.1, 2.0) == "KL-RPN better" and verdict(-2.0, -0.1) == "RPN better"
    assert verdict(-0.1, 0.1) == verdict(0.0, 0.0) == "no difference detectable"
    gt, _ = coco_gt(0)
    assert CocoPerImage(gt, []).ap() == 0.0
