"""Proposal quality: the AR curve agrees with AR@k, recall vs IoU, and the score-IoU rho."""

from __future__ import annotations

import numpy as np
import pytest

from klrpn.metrics.proposal_quality import (AR_CURVE_K, headline_recall, proposal_quality,
                                            rank_correlation, recall_array)
from klrpn.metrics.recall import proposal_recall


def random_proposals(seed: int, n: int = 1200) -> dict:
    rng = np.random.default_rng(seed)
    proposals = {}
    for image_id in (1, 2):
        xy = rng.uniform(0, 150, (n, 2))
        wh = rng.uniform(5, 120, (n, 2))
        proposals[image_id] = {"boxes": np.concatenate([xy, np.minimum(xy + wh, 200)], 1),
                               "scores": rng.uniform(0, 1, n)}
    return proposals


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curve_points_equal_existing_ar_at_k(tiny_gt, seed):
    proposals = random_proposals(seed)
    q = proposal_quality(tiny_gt, proposals)
    ar = proposal_recall(tiny_gt, proposals)
    assert list(q["ar_curve"]) == [str(k) for k in AR_CURVE_K]
    for k in (100, 300, 1000):
        assert q["ar_curve"][str(k)] == ar[f"AR@{k}"]          # exactly, not approximately
    assert headline_recall(q) == ar       # what klrpn evaluate writes instead of a second run
    curve = [q["ar_curve"][str(k)] for k in AR_CURVE_K]
    assert curve == sorted(curve) and curve[-1] > curve[0]     # more proposals, more recall
    # AR is the mean of the recall-vs-IoU row
    for k in (300, 1000):
        row = list(q["recall_vs_iou"][str(k)].values())
        assert np.mean(row) == pytest.approx(q["ar_curve"][str(k)], abs=1e-9)


def test_exact_curve_and_recall_vs_iou(tiny_gt):
    # Image 1: the exact box ranked 15th; image 2: a box of IoU 0.81 (90x90 inside 100x100)
    # ranked 1st and the exact box ranked 250th. Junk everywhere else, far from both boxes.
    junk = np.tile([[160.0, 160, 170, 170]], (300, 1))
    p1, p2 = junk.copy(), junk.copy()
    p1[14] = [10, 10, 30, 30]
    p1[:, [0, 2]] -= np.where(np.arange(300) == 14, 0, 150)[:, None]  # clear of the crowd region
    p2[0] = [55, 55, 145, 145]
    p2[249] = [50, 50, 150, 150]
    scores = np.linspace(1, 0, 300)
    q = proposal_quality(tiny_gt, {1: {"boxes": p1, "scores": scores},
                                   2: {"boxes": p2, "scores": scores}})
    # IoU thresholds .50:.95: the 0.81 box counts at 0.50..0.80 (7 of 10)
    assert q["ar_curve"] == {"10": 35.0, "20": 85.0, "50": 85.0, "100": 85.0, "200": 85.0,
                             "300": 100.0, "500": 100.0, "1000": 100.0}
    assert q["recall_vs_iou"]["300"] == {f"{t:.2f}": 100.0 for t in np.arange(0.5, 0.96, 0.05)}
    assert list(q["recall_vs_iou"]["1000"].values()) == [100.0] * 10


def test_rank_correlation_includes_zero_iou_and_handles_ties(tiny_gt):
    # Image 2 (GT 50..150): IoUs 1.0, 0.81, 0.25 (50x50 inside) and 0 (two junk boxes)
    boxes = np.array([[50.0, 50, 150, 150], [55, 55, 145, 145], [50, 50, 100, 100],
                      [160, 160, 170, 170], [0, 0, 5, 5]])
    scores = np.array([0.9, 0.8, 0.1, 0.5, 0.2])
    s = proposal_quality(tiny_gt, {2: {"boxes": boxes, "scores": scores}})["score_iou"]
    # ranks: scores 5,4,1,3,2; IoUs 5,4,3,1.5,1.5 -> Pearson of ranks
    expected = np.corrcoef([5, 4, 1, 3, 2], [5, 4, 3, 1.5, 1.5])[0, 1]
    assert s["rho"] == pytest.approx(expected, abs=1e-9)
    assert s["rho_overlapping"] == pytest.approx(1.0)      # among IoU > 0: scores order IoU
    assert (s["num_proposals"], s["num_overlapping"]) == (5, 3)


def test_rank_correlation_undefined_cases():
    assert rank_correlation(np.array([1.0]), np.array([0.5])) is None
    assert rank_correlation(np.array([1.0, 2.0]), np.array([0.0, 0.0])) is None
    assert rank_correlation(np.array([1.0, 2.0, 3.0]), np.array([0.3, 0.2, 0.1])) == -1.0


def test_no_proposals_gives_zero_recall(tiny_gt):
    assert (recall_array(tiny_gt, {}) == 0).all()
