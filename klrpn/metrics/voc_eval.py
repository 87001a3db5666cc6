"""PASCAL VOC07 11-point mAP with the semantics of py-faster-rcnn's ``voc_eval``.

Per class: detections sorted by score (descending, stable); a detection is a true positive
when its best IoU with a ground-truth box of the class in its image is > 0.5 and that box is
not difficult and not yet matched; matching a difficult box counts neither TP nor FP; any other
detection is a false positive. Recall = TP / (number of non-difficult boxes). IoU uses VOC's
inclusive pixel coordinates with +1 widths. AP = mean over t in {0, 0.1, ..., 1} of the
maximum precision at recall >= t.

Coordinates: ground truth is kept as read from the XML (1-based, inclusive). Predictions are
continuous x1y1x2y2 pixels (the datasets' convention, where a VOC box reads
``(xmin - 1, ymin - 1, xmax, ymax)``) and are mapped back by ``(x1 + 1, y1 + 1, x2, y2)``, so
the inclusive +1 IoU equals the plain IoU of the continuous boxes.
"""

from __future__ import annotations

import numpy as np

from klrpn.metrics.coco_eval import as_numpy


def voc_ap(recall: np.ndarray, precision: np.ndarray, *, use_07_metric: bool = True) -> float:
    """AP from recall/precision curves [K]: VOC07 11-point (default) or the area (VOC10+)."""
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    if use_07_metric:
        points = [precision[recall >= t].max() if (recall >= t).any() else 0.0
                  for t in np.arange(0.0, 1.1, 0.1)]  # py-faster-rcnn's thresholds
        return float(np.mean(points))
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def inclusive_iou(box: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with boxes [M, 4], inclusive pixel coordinates (+1 widths)."""
    iw = np.maximum(np.minimum(gt[:, 2], box[2]) - np.maximum(gt[:, 0], box[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(gt[:, 3], box[3]) - np.maximum(gt[:, 1], box[1]) + 1.0, 0.0)
    inter = iw * ih
    union = ((box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
             + (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0) - inter)
    return inter / union


def match_class(gt: dict, image_ids, boxes, scores, *,
                iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The matching of one class: ``(order, tp, fp)``, detections in score order (descending,
    stable) with ``tp`` / ``fp`` [K] in that order (a detection matching a difficult box is
    neither). Arguments as :func:`evaluate_class`. A detection can only match ground truth of
    its own image, so these are per-image matches: the paired bootstrap
    (:mod:`klrpn.metrics.bootstrap`) reuses them."""
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    matched = {i: np.zeros(len(b), bool) for i, (b, _) in gt.items()}
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for rank, k in enumerate(order):
        gt_boxes, difficult = gt[image_ids[k]]
        if len(gt_boxes) == 0:
            fp[rank] = 1
            continue
        overlaps = inclusive_iou(np.asarray(boxes[k], float), np.asarray(gt_boxes, float))
        j = int(overlaps.argmax())
        if overlaps[j] > iou_threshold:
            if not difficult[j]:
                if matched[image_ids[k]][j]:
                    fp[rank] = 1
                else:
                    tp[rank], matched[image_ids[k]][j] = 1, True
        else:
            fp[rank] = 1
    return order, tp, fp


def evaluate_class(gt: dict, image_ids, boxes, scores, *, iou_threshold: float = 0.5,
                   use_07_metric: bool = True) -> float | None:
    """AP of one class. ``gt``: image_id -> (boxes [M, 4] inclusive coords, difficult [M]) for
    every evaluated image; detections: ``image_ids`` [K], ``boxes`` [K, 4] inclusive coords,
    ``scores`` [K]. None when the class has no non-difficult ground truth."""
    npos = sum(int((~np.asarray(d, bool)).sum()) for _, d in gt.values())
    if npos == 0:
        return None
    _, tp, fp = match_class(gt, image_ids, boxes, scores, iou_threshold=iou_threshold)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(tp / npos, precision, use_07_metric=use_07_metric)


def class_inputs(dataset, predictions: dict, label: int, ids: list[int]):
    """``(gt, det_ids, boxes, scores)`` of class ``label`` for :func:`evaluate_class`:
    ground truth of every image in ``ids``, detections in ``ids`` order (each image's in
    prediction order), boxes in inclusive VOC coordinates."""
    gt = {}
    for i in ids:
        rec = dataset.gt[i]
        keep = rec["labels"] == label
        gt[i] = (rec["boxes"][keep], rec["difficult"][keep])
    det_ids, det_boxes, det_scores = [], [], []
    for i in ids:
        if i not in predictions and str(i) not in predictions:
            continue
        pred = predictions[i] if i in predictions else predictions[str(i)]
        keep = as_numpy(pred["labels"]) == label
        det_boxes.append(as_numpy(pred["boxes"]).reshape(-1, 4)[keep].astype(np.float64)
                         + np.array([1.0, 1.0, 0.0, 0.0]))
        det_scores.append(as_numpy(pred["scores"])[keep].astype(np.float64))
        det_ids += [i] * int(keep.sum())
    boxes = np.concatenate(det_boxes) if det_boxes else np.zeros((0, 4))
    scores = np.concatenate(det_scores) if det_scores else np.zeros(0)
    return gt, det_ids, boxes, scores


def voc07_map(dataset, predictions: dict, *, image_ids=None) -> dict:
    """``{"mAP": percent, "per_class": {name: percent or None}}`` of ``predictions``
    (image_id -> ``{"boxes" [N, 4] x1y1x2y2, "labels" [N] 1..C, "scores" [N]}``) against
    ``dataset.gt`` (image_id -> ``{"boxes" inclusive VOC coords, "labels", "difficult"}``).
    Classes without non-difficult ground truth get None and stay out of the mean."""
    ids = list(dataset.gt) if image_ids is None else [int(i) for i in image_ids]
    unknown = [i for i in predictions if int(i) not in dataset.gt]
    if unknown:
        raise KeyError(f"predictions for image ids not in the dataset: {unknown[:5]}")
    per_class = {}
    for label, name in enumerate(dataset.classes, start=1):
        gt, det_ids, boxes, scores = class_inputs(dataset, predictions, label, ids)
        ap = evaluate_class(gt, det_ids, boxes, scores)
        per_class[name] = None if ap is None else 100.0 * ap
    valid = [v for v in per_class.values() if v is not None]
    return {"mAP": float(np.mean(valid)) if valid else None, "per_class": per_class}
