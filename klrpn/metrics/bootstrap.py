"""Paired image-level bootstrap of Delta = KL-RPN - RPN (issue 10).

The matching of detections to ground truth is run **once** per model: COCOeval's per-image
results ``evalImgs`` (pycocotools, area "all", 100 detections per image) for COCO, the VOC07
evaluator's per-image matches (:func:`klrpn.metrics.voc_eval.match_class`: difficult boxes
ignored) for VOC. A bootstrap resample draws the test images with replacement; an image drawn
``c`` times counts ``c`` times. Only the accumulation is redone per resample: detections are
kept in their full-set score order, each weighted by its image's count, so cumulative TP/FP,
the number of ground-truth boxes and the precision-recall curve are weighted sums (vectorised
numpy). This equals evaluating the resampled image list with every copy of an image's
detections kept together among equal scores (pycocotools and the VOC code order ties
arbitrarily anyway); with every image counted once it reproduces the full evaluation exactly.

The same resamples score both models (and every seed): the pairing removes the variation the
two models share (which images are hard). Per resample, Delta is the mean over seeds of
``metric(KL-RPN, seed s) - metric(RPN, seed s)``; the percentile interval of those Deltas is the
95 % interval. It covers test-set sampling only, not training noise (see the seed std beside
it in reports/significance.md).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)     # pycocotools' p.recThrs
VOC_RECALL_POINTS = np.arange(0.0, 1.1, 0.1)        # py-faster-rcnn's 11 points
VERDICTS = ("KL-RPN better", "RPN better", "no difference detectable")


class PerImageEval:
    """One model's per-image evaluation on one test set. ``image_ids``: the test images in a
    fixed order; ``metric(counts)``: AP (COCO) or mAP (VOC07) in percent with image ``i``
    counted ``counts[i]`` times (``None``: each once)."""

    image_ids: list[int]
    name: str

    def metric(self, counts: np.ndarray | None = None) -> float | None:
        raise NotImplementedError

    def _counts(self, counts) -> np.ndarray:
        if counts is None:
            return np.ones(len(self.image_ids))
        counts = np.asarray(counts, dtype=np.float64)
        if counts.shape != (len(self.image_ids),):
            raise ValueError(f"counts must have shape ({len(self.image_ids)},), got {counts.shape}")
        return counts


# --- COCO ---------------------------------------------------------------------------------------

class CocoPerImage(PerImageEval):
    """COCO AP (IoU .50:.95, area all, 100 detections per image) from pycocotools' evalImgs."""

    name = "AP"

    def __init__(self, coco_gt, results: list[dict], *, image_ids=None):
        from pycocotools.cocoeval import COCOeval

        ids = sorted(coco_gt.getImgIds() if image_ids is None else (int(i) for i in image_ids))
        self.image_ids = ids
        self.categories = []          # per category with ground truth or detections
        with contextlib.redirect_stdout(io.StringIO()):
            # pycocotools cannot load an empty result list: an empty COCO stands in for it
            dt = coco_gt.loadRes(results) if results else _empty_like(coco_gt)
            evaluator = COCOeval(coco_gt, dt, "bbox")
            p = evaluator.params
            p.imgIds, p.maxDets = ids, [100]
            p.areaRng, p.areaRngLbl = p.areaRng[:1], p.areaRngLbl[:1]   # "all"
            evaluator.evaluate()
        self.num_thresholds = len(p.iouThrs)
        n_img = len(ids)
        for k, _ in enumerate(p.catIds):
            entries = evaluator.evalImgs[k * n_img:(k + 1) * n_img]     # [I] for area "all"
            npig = np.zeros(n_img)
            scores, images, tps, fps = [], [], [], []
            for i, e in enumerate(entries):
                if e is None:
                    continue
                npig[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
                dt_ignore = np.asarray(e["dtIgnore"], bool).reshape(self.num_thresholds, -1)
                matched = np.asarray(e["dtMatches"]).reshape(self.num_thresholds, -1) != 0
                scores.append(np.asarray(e["dtScores"], np.float64))
                images.append(np.full(len(e["dtScores"]), i))
                tps.append(matched & ~dt_ignore)
                fps.append(~matched & ~dt_ignore)
            if not scores:
                continue
            scores = np.concatenate(scores)
            order = np.argsort(-scores, kind="mergesort")   # as COCOeval.accumulate
            self.categories.append({
                "npig": npig,                                           # [I]
                "image": np.concatenate(images)[order],                 # [D]
                "tp": np.concatenate(tps, axis=1)[:, order].astype(np.float64),  # [T, D]
                "fp": np.concatenate(fps, axis=1)[:, order].astype(np.float64),  # [T, D]
            })

    def precision(self, counts=None) -> list[np.ndarray]:
        """COCOeval.accumulate's interpolated precision [T, R] of every category with ground
        truth in the (weighted) image set."""
        counts = self._counts(counts)
        out = []
        for cat in self.categories:
            npig = float((counts * cat["npig"]).sum())   # no BLAS: safe after fork
            if npig == 0:
                continue
            w = counts[cat["image"]]                                    # [D]
            tp_sum = np.cumsum(cat["tp"] * w, axis=1)                   # [T, D]
            fp_sum = np.cumsum(cat["fp"] * w, axis=1)
            nd = tp_sum.shape[1]
            q = np.zeros((self.num_thresholds, len(RECALL_THRESHOLDS)))
            if nd:
                rc = tp_sum / npig
                pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                envelope = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                for t in range(self.num_thresholds):
                    inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    valid = inds < nd
                    q[t, valid] = envelope[t, inds[valid]]
            out.append(q)
        return out

    def ap(self, counts=None) -> float | None:
        """COCOeval's stats[0] (a fraction) of the weighted image set; None without ground truth."""
        precision = self.precision(counts)
        return float(np.mean(np.stack(precision))) if precision else None

    def metric(self, counts=None) -> float | None:
        ap = self.ap(counts)
        return None if ap is None else 100.0 * ap


def _empty_like(coco_gt):
    from pycocotools.coco import COCO

    empty = COCO()
    empty.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                     "categories": list(coco_gt.dataset["categories"])}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


# --- VOC07 --------------------------------------------------------------------------------------

class VocPerImage(PerImageEval):
    """VOC07 11-point mAP from the VOC07 evaluator's per-image matches."""

    name = "mAP"

    def __init__(self, dataset, predictions: dict):
        from klrpn.metrics.voc_eval import class_inputs, match_class

        ids = list(dataset.gt)
        self.image_ids = ids
        index = {image_id: i for i, image_id in enumerate(ids)}
        self.classes = []
        for label in range(1, len(dataset.classes) + 1):
            gt, det_ids, boxes, scores = class_inputs(dataset, predictions, label, ids)
            npos = np.array([float((~np.asarray(gt[i][1], bool)).sum()) for i in ids])  # [I]
            order, tp, fp = match_class(gt, det_ids, boxes, scores)
            images = np.array([index[det_ids[k]] for k in order], dtype=np.int64)
            self.classes.append({"npos": npos, "image": images, "tp": tp, "fp": fp})

    def per_class(self, counts=None) -> list[float | None]:
        """AP (fraction) per class of the weighted image set; None without non-difficult GT."""
        counts = self._counts(counts)
        out = []
        for c in self.classes:
            npos = float((counts * c["npos"]).sum())
            if npos == 0:
                out.append(None)
                continue
            w = counts[c["image"]]
            tp, fp = np.cumsum(c["tp"] * w), np.cumsum(c["fp"] * w)
            recall = tp / npos
            precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
            # max precision at recall >= t: recall is non-decreasing, so that is the suffix
            # maximum from the first index with recall >= t (0 when there is none)
            envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(tp) else precision
            inds = np.searchsorted(recall, VOC_RECALL_POINTS, side="left")
            points = [envelope[i] if i < len(tp) else 0.0 for i in inds]
            out.append(float(np.mean(points)))
        return out

    def metric(self, counts=None) -> float | None:
        valid = [100.0 * ap for ap in self.per_class(counts) if ap is not None]
        return float(np.mean(valid)) if valid else None


# --- inputs -------------------------------------------------------------------------------------

def predictions_from_results(results: list[dict]) -> dict:
    """COCO result dicts (xywh, ``category_id`` = label) -> ``{image_id: {boxes x1y1x2y2,
    labels, scores}}``, each image's detections in file order."""
    grouped: dict[int, list[dict]] = {}
    for r in results:
        grouped.setdefault(int(r["image_id"]), []).append(r)
    out = {}
    for image_id, rs in grouped.items():
        boxes = np.asarray([r["bbox"] for r in rs], np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        out[image_id] = {"boxes": boxes, "labels": np.asarray([r["category_id"] for r in rs], np.int64),
                         "scores": np.asarray([r["score"] for r in rs], np.float64)}
    return out


def per_image_eval(dataset, results: list[dict], *, where: str = "detections") -> PerImageEval:
    """The per-image evaluation of ``results`` (a cell's detections.json) on the test
    ``dataset`` of :func:`klrpn.data.build_dataset`: COCO AP or VOC07 mAP."""
    if hasattr(dataset, "coco"):
        if not getattr(dataset, "has_annotations", True):
            raise ValueError(f"{where}: the test set has no annotations (private ground truth)")
        known = set(dataset.coco.imgs)
        unknown = sorted({int(r["image_id"]) for r in results} - known)
        if unknown:
            raise ValueError(f"{where}: image ids not in the test set: {unknown[:5]}")
        return CocoPerImage(dataset.coco, results)
    unknown = sorted({int(r["image_id"]) for r in results} - set(dataset.gt))
    if unknown:
        raise ValueError(f"{where}: image ids not in the test set: {unknown[:5]}")
    return VocPerImage(dataset, predictions_from_results(results))


# --- the bootstrap ------------------------------------------------------------------------------

def resample_counts(num_images: int, resamples: int, seed: int) -> np.ndarray:
    """``[resamples, num_images]``: how often each image is drawn in each resample (draws with
    replacement, ``num_images`` per resample), from ``numpy.random.default_rng(seed)``."""
    if num_images < 1 or resamples < 1:
        raise ValueError(f"need at least one image and one resample, got {num_images}, {resamples}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_images, size=(resamples, num_images))
    counts = np.zeros((resamples, num_images), dtype=np.int64)
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1)
    return counts


def verdict(low: float, high: float) -> str:
    if low > 0:
        return VERDICTS[0]
    if high < 0:
        return VERDICTS[1]
    return VERDICTS[2]


_FORKED: dict = {}   # what forked workers read: (rpn, klrpn, counts)


def _resample_deltas(rpn, klrpn, counts) -> np.ndarray:
    """Seed-mean Delta for each row of ``counts``."""
    return np.array([np.mean([_delta(k.metric(c), r.metric(c)) for r, k in zip(rpn, klrpn)])
                     for c in counts])


def _worker(bounds: tuple[int, int]) -> np.ndarray:
    rpn, klrpn, counts = _FORKED["args"]
    return _resample_deltas(rpn, klrpn, counts[bounds[0]:bounds[1]])


def paired_bootstrap(rpn: list[PerImageEval], klrpn: list[PerImageEval], *,
                     resamples: int = 1000, seed: int = 0, level: float = 0.95,
                     workers: int = 1) -> dict:
    """The paired bootstrap over seed pairs ``(rpn[s], klrpn[s])`` (same test images, same
    order). Returns ``{"delta": mean over seeds of the full-set Delta, "per_seed": [...],
    "ci": [low, high], "level", "resamples", "seed", "verdict", "deltas": [B] array}``.
    ``workers`` > 1 splits the resamples over forked processes (same result as 1)."""
    if not rpn or len(rpn) != len(klrpn):
        raise ValueError(f"need the same non-zero number of RPN and KL-RPN runs, got "
                         f"{len(rpn)} and {len(klrpn)}")
    ids = rpn[0].image_ids
    for e in [*rpn, *klrpn]:
        if e.image_ids != ids:
            raise ValueError("all runs must be evaluated on the same test images in the same order")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    per_seed = [_delta(k.metric(), r.metric()) for r, k in zip(rpn, klrpn)]
    counts = resample_counts(len(ids), resamples, seed)
    workers = max(1, min(int(workers), resamples))
    if workers == 1:
        deltas = _resample_deltas(rpn, klrpn, counts)
    else:
        import multiprocessing

        edges = np.linspace(0, resamples, workers + 1).astype(int)
        _FORKED["args"] = (rpn, klrpn, counts)
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                deltas = np.concatenate(pool.map(_worker, list(zip(edges[:-1], edges[1:]))))
        finally:
            _FORKED.clear()
    deltas = deltas[np.isfinite(deltas)]
    if not len(deltas):
        raise ValueError("the metric is undefined in every resample (no ground truth?)")
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = (float(v) for v in np.percentile(deltas, [tail, 100.0 - tail]))
    return {"delta": float(np.mean(per_seed)), "per_seed": per_seed, "ci": [low, high],
            "level": level, "resamples": resamples, "seed": seed, "verdict": verdict(low, high),
            "deltas": deltas}


def _delta(klrpn: float | None, rpn: float | None) -> float:
    return float("nan") if klrpn is None or rpn is None else klrpn - rpn
