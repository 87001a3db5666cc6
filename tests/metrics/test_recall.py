"""Proposal AR@k: class-agnostic, rises with k, exact on a constructed case."""

from __future__ import annotations

import numpy as np
import pytest

from klrpn.metrics.recall import proposal_recall


def test_ar_rises_with_k_exactly(tiny_gt):
    # Image 2 has one non-crowd box; image 1 one non-crowd box (+ a crowd region). Rank the two
    # exact boxes 150th (image 1) and 700th (image 2) behind junk far from any box.
    rng = np.random.default_rng(0)
    proposals = {}
    for image_id, box, rank in [(1, [10, 10, 30, 30], 150), (2, [50, 50, 150, 150], 700)]:
        junk = np.concatenate([rng.uniform(160, 180, (1000, 2)), rng.uniform(185, 199, (1000, 2))], 1)
        if image_id == 1:
            junk[:, [0, 2]] -= 150  # stay clear of the crowd region at (100..150)
        boxes = junk.copy()
        boxes[rank] = box
        proposals[image_id] = {"boxes": boxes, "scores": np.linspace(1, 0, 1000)}
    ar = proposal_recall(tiny_gt, proposals)
    assert ar == {"AR@100": 0.0, "AR@300": pytest.approx(50.0), "AR@1000": pytest.approx(100.0)}


def test_categories_are_ignored(tiny_gt):
    # Boxes are matched whatever their class: the GT of category 9 is found by proposals alone.
    proposals = {1: {"boxes": np.array([[10.0, 10, 30, 30]]), "scores": np.array([1.0])},
                 2: {"boxes": np.array([[50.0, 50, 150, 150]]), "scores": np.array([1.0])}}
    assert proposal_recall(tiny_gt, proposals) == {"AR@100": 100.0, "AR@300": 100.0, "AR@1000": 100.0}
