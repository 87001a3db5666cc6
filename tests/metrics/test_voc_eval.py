"""VOC07 11-point mAP against hand-computed cases."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from klrpn.metrics.voc_eval import evaluate_class, voc07_map, voc_ap


def gt_dataset():
    """Class 'a': image 1 has G1 [1,1,10,10] and a difficult G2 [21,1,30,10] (VOC inclusive
    coords); image 2 has G3 [1,1,10,10]. Class 'b' has no ground truth."""
    return SimpleNamespace(classes=["a", "b"], gt={
        1: {"boxes": np.array([[1, 1, 10, 10], [21, 1, 30, 10]], float),
            "labels": np.array([1, 1]), "difficult": np.array([False, True])},
        2: {"boxes": np.array([[1, 1, 10, 10]], float), "labels": np.array([1]),
            "difficult": np.array([False])}})


def test_difficult_and_duplicate_give_the_hand_computed_ap():
    # Continuous boxes (VOC inclusive box [x1, y1, x2, y2] reads [x1 - 1, y1 - 1, x2, y2]).
    predictions = {
        1: {"boxes": np.array([[0, 0, 10, 10],     # .9 on G1: TP
                               [1, 0, 10, 10],     # .8 duplicate on G1 (IoU .9): FP
                               [20, 0, 30, 10]]),  # .7 on difficult G2: ignored
            "labels": np.array([1, 1, 1]), "scores": np.array([0.9, 0.8, 0.7])},
        2: {"boxes": np.array([[5, 0, 15, 10],     # .6 IoU 1/3 with G3: FP
                               [0, 0, 10, 10],     # .5 on G3: TP
                               [0, 0, 10, 10]]),   # class b, no ground truth
            "labels": np.array([1, 1, 2]), "scores": np.array([0.6, 0.5, 0.95])}}
    # Ranked: TP FP (ignored) FP TP -> recall .5 .5 .5 1, precision 1 .5 1/3 .5
    # 11-point: t = 0..0.5 -> 1.0 (6 points); t = 0.6..1.0 -> 0.5 (5 points)
    expected = (6 * 1.0 + 5 * 0.5) / 11 * 100
    result = voc07_map(gt_dataset(), predictions)
    assert result["per_class"]["a"] == pytest.approx(expected, abs=1e-12)
    assert result["per_class"]["b"] is None
    assert result["mAP"] == pytest.approx(expected, abs=1e-12)


def test_perfect_detections_give_map_100():
    ds = gt_dataset()
    predictions = {i: {"boxes": r["boxes"] - np.array([1, 1, 0, 0]), "labels": r["labels"],
                       "scores": np.linspace(1, 0.5, len(r["labels"]))} for i, r in ds.gt.items()}
    assert voc07_map(ds, predictions)["mAP"] == 100.0


def test_iou_must_exceed_one_half():
    gt = {1: (np.array([[1.0, 1, 10, 10]]), np.array([False]))}
    assert evaluate_class(gt, [1], np.array([[1.0, 1, 10, 20]]), np.array([1.0])) == 0.0  # IoU = .5
    assert evaluate_class(gt, [1], np.array([[1.0, 1, 10, 19]]), np.array([1.0])) == 1.0  # IoU = 100/190


def test_voc_ap_eleven_point_and_area():
    recall, precision = np.array([0.2, 0.4, 0.4]), np.array([1.0, 0.5, 0.4])
    assert voc_ap(recall, precision) == pytest.approx((3 * 1.0 + 2 * 0.5) / 11)
    assert voc_ap(recall, precision, use_07_metric=False) == pytest.approx(0.2 * 1.0 + 0.2 * 0.5)


def test_unknown_image_is_an_error():
    with pytest.raises(KeyError, match="not in the dataset"):
        voc07_map(gt_dataset(), {3: {"boxes": np.zeros((0, 4)), "labels": np.zeros(0), "scores": np.zeros(0)}})
