"""COCO AP suite: hand-computed values, file round trip, empty input, backends agree."""

from __future__ import annotations

import numpy as np
import pytest

from klrpn.metrics.coco_eval import (coco_metrics, load_detections, results_filename,
                                     to_coco_results, write_detections)


def det(image_id, cat, bbox, score):
    return {"image_id": image_id, "category_id": cat, "bbox": bbox, "score": score}


def test_perfect_detections_give_ap_100(tiny_gt):
    stats = coco_metrics(tiny_gt, [det(1, 2, [10, 10, 20, 20], 0.9), det(2, 9, [50, 50, 100, 100], 0.8)])
    assert stats == {"AP": 100.0, "AP50": 100.0, "AP75": 100.0, "APS": 100.0, "APM": None, "APL": 100.0}


def test_hand_computed_partial_overlap(tiny_gt):
    # IoU 0.62 with the small box: a match at IoU thresholds .50 .55 .60 only -> AP 3/10 for
    # category 2; category 9 has no detection -> AP 0. Mean over the two categories.
    stats = coco_metrics(tiny_gt, [det(1, 2, [10, 10, 20, 12.4], 0.9),
                                   det(1, 2, [110, 110, 20, 20], 0.95)])  # inside the crowd: ignored
    assert stats["AP"] == pytest.approx(15.0)
    assert stats["AP50"] == pytest.approx(50.0)
    assert stats["AP75"] == pytest.approx(0.0)
    assert stats["APS"] == pytest.approx(30.0)
    assert stats["APL"] == pytest.approx(0.0)
    assert stats["APM"] is None


def test_no_detections(tiny_gt):
    assert coco_metrics(tiny_gt, []) == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APS": 0.0,
                                          "APM": None, "APL": 0.0}


def test_server_format_file_round_trip(tiny_gt, tmp_path):
    predictions = {2: {"boxes": np.array([[50.0, 50, 150, 140]]), "labels": np.array([2]),
                       "scores": np.array([0.7])}}
    results = to_coco_results(predictions, category_ids=[2, 9])
    assert results == [det(2, 9, [50.0, 50.0, 100.0, 90.0], 0.7)]
    path = write_detections(tmp_path / results_filename("klrpn-vgg16"), results)
    assert path.name == "detections_test-dev2017_klrpn-vgg16_results.json"
    assert load_detections(path) == results
    assert coco_metrics(tiny_gt, path) == coco_metrics(tiny_gt, results)
    with pytest.raises(ValueError, match="labels must be in 1..2"):
        to_coco_results({1: {"boxes": np.zeros((1, 4)), "labels": np.array([3]), "scores": [1.0]}}, [2, 9])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        coco_metrics(tiny_gt, tmp_path / "bad.json")


def test_faster_coco_eval_gives_identical_stats(tiny_gt):
    pytest.importorskip("faster_coco_eval")
    rng = np.random.default_rng(0)
    dets = []
    for image_id, cat, (x, y, w, h) in [(1, 2, (10, 10, 20, 20)), (2, 9, (50, 50, 100, 100))]:
        for _ in range(30):
            jitter = rng.normal(0, 0.15, 4) * [w, h, w, h]
            dets.append(det(image_id, cat, [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]],
                            float(rng.random())))
    assert coco_metrics(tiny_gt, dets, backend="faster_coco_eval") == coco_metrics(tiny_gt, dets)
    with pytest.raises(ValueError, match="unknown COCO evaluation backend"):
        coco_metrics(tiny_gt, dets, backend="fast")
