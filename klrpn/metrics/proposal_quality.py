"""Proposal quality beyond AR@100/300/1000 (issue 10): the recall curves and the score-IoU rank
correlation behind the paper's Figure 3, for every cell.

* ``ar_curve``: COCO-style AR (recall averaged over IoU 0.50:0.05:0.95, all sizes,
  class-agnostic: COCOeval with ``useCats=0``) at 10, 20, 50, 100, 200, 300, 500 and 1000
  proposals per image. Same evaluator and matching as :func:`klrpn.metrics.recall.proposal_recall`,
  so its 100/300/1000 points equal AR@100/300/1000.
* ``recall_vs_iou``: recall at each IoU threshold 0.50, 0.55, ..., 0.95 for 300 and 1000
  proposals (the rows COCOeval averages into AR@300 and AR@1000).
* ``score_iou``: Spearman's rho between each proposal's score and its IoU with its best
  ground-truth box (class-agnostic, crowd / VOC-difficult boxes left out), pooled over all
  proposals of all test images. ``rho`` includes proposals with IoU 0: ranking background
  proposals low is half of what the score is for (NMS and the top-N cut keep the best-scored
  ones), and dropping them would drop most proposals. ``rho_overlapping`` uses only proposals
  with IoU > 0: how well the score orders localisation quality among boxes that touch an object
  (Figure 3's question). Ties get average ranks; rho is None when undefined (fewer than two
  proposals, or a constant score or IoU).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from klrpn.metrics.coco_eval import as_numpy
from klrpn.metrics.recall import proposal_results

AR_CURVE_K = (10, 20, 50, 100, 200, 300, 500, 1000)
RECALL_IOU_K = (300, 1000)
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def recall_array(coco_gt, proposals: dict, *, max_dets=AR_CURVE_K, image_ids=None) -> np.ndarray:
    """COCOeval's ``eval["recall"]`` of the class-agnostic proposals at area "all":
    ``[T=10 IoU thresholds, len(max_dets)]`` in [0, 1], -1 where there is no ground truth."""
    from pycocotools.cocoeval import COCOeval

    results = proposal_results(coco_gt, proposals)
    if not results:
        return np.zeros((len(IOU_THRESHOLDS), len(max_dets)))
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.params.useCats = 0
        evaluator.params.maxDets = list(max_dets)
        evaluator.params.areaRng = evaluator.params.areaRng[:1]   # "all" only
        evaluator.params.areaRngLbl = evaluator.params.areaRngLbl[:1]
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
    return np.asarray(evaluator.eval["recall"][:, 0, 0, :], dtype=np.float64)  # [T, K=1, A=1, M]


def _percent(x: float) -> float:
    return round(100.0 * max(float(x), 0.0), 10)


def rank_correlation(scores: np.ndarray, ious: np.ndarray) -> float | None:
    """Spearman's rho (average ranks for ties); None when undefined."""
    from scipy.stats import spearmanr

    scores, ious = np.asarray(scores, np.float64), np.asarray(ious, np.float64)
    if len(scores) < 2 or np.all(scores == scores[0]) or np.all(ious == ious[0]):
        return None
    return round(float(spearmanr(scores, ious).statistic), 10)


def best_ious(coco_gt, proposals: dict, image_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ious)`` pooled over the images: each proposal's score and its IoU with its best
    non-crowd ground-truth box (0 in an image without one)."""
    import torch
    from torchvision.ops import box_iou

    ids = sorted(proposals, key=int) if image_ids is None else sorted(int(i) for i in image_ids)
    all_scores, all_ious = [], []
    for image_id in ids:
        prop = proposals.get(image_id, proposals.get(str(image_id)))
        if prop is None:
            continue
        boxes = as_numpy(prop["boxes"]).astype(np.float64).reshape(-1, 4)
        scores = as_numpy(prop["scores"]).astype(np.float64).reshape(-1)
        gt = [a["bbox"] for a in coco_gt.imgToAnns.get(int(image_id), []) if not a.get("iscrowd", 0)]
        if gt and len(boxes):
            gt = np.asarray(gt, np.float64).reshape(-1, 4)
            gt[:, 2:] += gt[:, :2]                                  # xywh -> x1y1x2y2
            ious = box_iou(torch.from_numpy(boxes), torch.from_numpy(gt)).max(dim=1).values.numpy()
        else:
            ious = np.zeros(len(boxes))
        all_scores.append(scores)
        all_ious.append(ious)
    if not all_scores:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(all_scores), np.concatenate(all_ious)


def proposal_quality(coco_gt, proposals: dict, *, image_ids=None) -> dict:
    """The ``proposal_quality`` section of metrics.json (percentages; see the module docstring).
    ``proposals``: image_id -> ``{"boxes": [N, 4] x1y1x2y2, "scores": [N]}``; ``coco_gt``: a
    pycocotools COCO (a VOC dataset's ``to_coco()``, difficult boxes as crowd)."""
    ks = sorted(set(AR_CURVE_K) | set(RECALL_IOU_K))
    recall = recall_array(coco_gt, proposals, max_dets=ks, image_ids=image_ids)  # [T, M]
    ar = {}
    for m, k in enumerate(ks):
        column = recall[:, m]
        column = column[column > -1]
        ar[str(k)] = _percent(column.mean()) if len(column) else None
    by_iou = {str(k): {f"{t:.2f}": (None if recall[i, ks.index(k)] < 0 else
                                    _percent(recall[i, ks.index(k)]))
                       for i, t in enumerate(IOU_THRESHOLDS)}
              for k in RECALL_IOU_K}
    scores, ious = best_ious(coco_gt, proposals, image_ids)
    overlapping = ious > 0
    return {
        "ar_curve": {str(k): ar[str(k)] for k in AR_CURVE_K},
        "recall_vs_iou": by_iou,
        "score_iou": {
            "rho": rank_correlation(scores, ious),
            "rho_overlapping": rank_correlation(scores[overlapping], ious[overlapping]),
            "num_proposals": int(len(ious)),
            "num_overlapping": int(overlapping.sum()),
        },
    }


def headline_recall(quality: dict) -> dict:
    """metrics.json's ``proposals`` section (``{"AR@100","AR@300","AR@1000"}``) read off the
    curve of :func:`proposal_quality`: the same COCOeval run, matching and averaging as
    :func:`klrpn.metrics.recall.proposal_recall`, so the values are equal and the matching runs
    once per evaluation (undefined, i.e. no ground truth, reads 0 as there)."""
    from klrpn.metrics.recall import MAX_DETS

    return {f"AR@{k}": quality["ar_curve"][str(k)] or 0.0 for k in MAX_DETS}


def coco_gt_of(dataset):
    """The pycocotools ground truth of a test dataset (COCO: its ``coco``; VOC: ``to_coco()``)."""
    return dataset.coco if hasattr(dataset, "coco") else dataset.to_coco()
