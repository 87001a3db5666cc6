"""Proposal Average Recall AR@100/300/1000: class-agnostic COCOeval (``useCats=0``).

Recall is averaged over IoU 0.50:0.05:0.95 and all object sizes, as COCOeval's AR. The paper
does not report it; we add it to compare the RPN and KL-RPN proposals directly.
"""

from __future__ import annotations

import numpy as np

from klrpn.metrics.coco_eval import as_numpy, run_cocoeval

MAX_DETS = (100, 300, 1000)


def proposal_recall(coco_gt, proposals: dict, *, image_ids=None, backend: str = "pycocotools") -> dict:
    """``{"AR@100","AR@300","AR@1000"}`` in percent. ``proposals`` maps image_id ->
    ``{"boxes": [N, 4] x1y1x2y2, "scores": [N]}``; images missing from it count as misses."""
    results = proposal_results(coco_gt, proposals)
    if not results:
        return {f"AR@{k}": 0.0 for k in MAX_DETS}
    stats = run_cocoeval(coco_gt, results, backend=backend, use_cats=False, max_dets=MAX_DETS,
                         image_ids=image_ids)
    return {f"AR@{k}": round(100.0 * max(float(v), 0.0), 10) for k, v in zip(MAX_DETS, stats[6:9])}


def proposal_results(coco_gt, proposals: dict) -> list[dict]:
    """COCO result dicts of class-agnostic proposals (any valid category id: ``useCats=0``)."""
    category = sorted(coco_gt.cats)[0]
    results = []
    for image_id in sorted(proposals, key=int):
        boxes = as_numpy(proposals[image_id]["boxes"]).astype(np.float64).reshape(-1, 4)
        scores = as_numpy(proposals[image_id]["scores"]).astype(np.float64)
        for (x1, y1, x2, y2), score in zip(boxes.tolist(), scores.tolist()):
            results.append({"image_id": int(image_id), "category_id": category,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return results
