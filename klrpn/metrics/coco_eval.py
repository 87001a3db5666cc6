"""COCO box AP suite with pycocotools semantics (or faster-coco-eval, which gives the same stats).

Detections are COCO result dicts ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
(a list, or the path of a JSON file holding one, e.g. the test-dev server's
``detections_test-dev2017_<name>_results.json``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np

STAT_KEYS = ("AP", "AP50", "AP75", "APS", "APM", "APL")
AREA_RANGES = ((0, 1e10), (0, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e10))  # all, S, M, L
BACKENDS = ("pycocotools", "faster_coco_eval")


def as_numpy(x) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def to_coco_results(predictions: dict, category_ids: list[int]) -> list[dict]:
    """``{image_id: {"boxes" [N, 4] x1y1x2y2, "labels" [N] 1..C, "scores" [N]}}`` -> result
    dicts with xywh boxes and ``category_ids[label - 1]``, in image-id order."""
    results = []
    for image_id in sorted(predictions, key=int):
        pred = predictions[image_id]
        boxes = as_numpy(pred["boxes"]).astype(np.float64).reshape(-1, 4)
        labels, scores = as_numpy(pred["labels"]).astype(np.int64), as_numpy(pred["scores"])
        if len(labels) and (labels.min() < 1 or labels.max() > len(category_ids)):
            raise ValueError(f"image {image_id}: labels must be in 1..{len(category_ids)}, "
                             f"got {sorted(set(labels.tolist()))}")
        for (x1, y1, x2, y2), label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
            results.append({"image_id": int(image_id), "category_id": category_ids[label - 1],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return results


def results_filename(name: str, split: str = "test-dev2017") -> str:
    """The COCO server's file name, e.g. ``detections_test-dev2017_<name>_results.json``."""
    if not re.fullmatch(r"[A-Za-z0-9.+-]+", name):
        raise ValueError(f"result name {name!r}: use letters, digits, '.', '+', '-' only")
    return f"detections_{split}_{name}_results.json"


def write_detections(path, results: list[dict]) -> Path:
    """Write ``results`` as JSON atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(results))
    os.replace(tmp, path)
    return path


def load_detections(path) -> list[dict]:
    """Read a COCO result file; a clear error names it when it is not a list of results."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read detections file {path}: {err}") from err
    if not isinstance(results, list):
        raise ValueError(f"{path}: expected a JSON list of COCO results")
    return results


def run_cocoeval(coco_gt, detections: list[dict], *, backend: str = "pycocotools",
                 use_cats: bool = True, max_dets=(1, 10, 100), image_ids=None) -> np.ndarray:
    """evaluate + accumulate + summarize for boxes; returns COCOeval's 12 ``stats``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown COCO evaluation backend {backend!r}; choose from {BACKENDS}")
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "pycocotools":
            from pycocotools.cocoeval import COCOeval
            gt = coco_gt
            evaluator = COCOeval(gt, gt.loadRes(detections), "bbox")
        else:
            from faster_coco_eval import COCO, COCOeval_faster
            gt = COCO(coco_gt.dataset, use_deepcopy=True)
            evaluator = COCOeval_faster(gt, gt.loadRes(detections), "bbox")
        evaluator.params.useCats = int(use_cats)
        evaluator.params.maxDets = list(max_dets)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats, dtype=np.float64)


def coco_metrics(coco_gt, detections, *, image_ids=None, backend: str = "pycocotools") -> dict:
    """``{"AP","AP50","AP75","APS","APM","APL"}`` in percent (None where COCOeval gives -1,
    i.e. no ground truth in that area range), rounded to 10 decimals to hide float noise
    (99.99999999999997 -> 100.0). ``detections``: result list or file path;
    images without detections count as misses."""
    if isinstance(detections, (str, os.PathLike)):
        detections = load_detections(detections)
    if not detections:  # pycocotools cannot load an empty result list
        return _stats_without_detections(coco_gt, image_ids)
    stats = run_cocoeval(coco_gt, detections, backend=backend, image_ids=image_ids)
    return {k: (None if v < 0 else round(100.0 * float(v), 10)) for k, v in zip(STAT_KEYS, stats[:6])}


def _stats_without_detections(coco_gt, image_ids) -> dict:
    """What COCOeval reports for no detections: 0 where ground truth exists, else None."""
    ids = set(coco_gt.getImgIds() if image_ids is None else (int(i) for i in image_ids))
    areas = [a["area"] for a in coco_gt.dataset.get("annotations", [])
             if a["image_id"] in ids and not a.get("iscrowd", 0)]
    has = [any(lo <= a <= hi for a in areas) for lo, hi in AREA_RANGES]
    values = [has[0]] * 3 + has[1:]
    return {k: (0.0 if v else None) for k, v in zip(STAT_KEYS, values)}
