"""How the datasets score predictions: the evaluation methods of the COCO and VOC datasets.

:class:`CocoScoring` and :class:`VOCScoring` are mixed into :class:`klrpn.data.coco.CocoDetection`
and :class:`klrpn.data.voc.VOCDetection`, so that ``dataset.evaluate(predictions)`` and
``dataset.proposal_recall(proposals)`` work as before while the datasets' modules hold only how
training items are read (the training code of the run identity, :mod:`klrpn.identity`).
Evaluation lives here, outside it: changing how a run is scored never retrains it.
"""

from __future__ import annotations

import contextlib
import io

from pycocotools.coco import COCO

from klrpn.metrics.coco_eval import coco_metrics, to_coco_results
from klrpn.metrics.recall import proposal_recall
from klrpn.metrics.voc_eval import voc07_map


class CocoScoring:
    """Evaluation of a COCO-format dataset (``self.coco``, ``self.ann_file``,
    ``self.category_ids``, ``self.has_annotations``, ``self.split``)."""

    def to_coco_results(self, predictions: dict) -> list[dict]:
        """COCO result dicts (xywh, category ids mapped back) from ``{image_id: {boxes, labels,
        scores}}`` with x1y1x2y2 boxes [N, 4] and labels 1..C."""
        known = set(self.coco.imgs)
        unknown = [i for i in predictions if int(i) not in known]
        if unknown:
            raise KeyError(f"predictions for image ids not in {self.ann_file}: {unknown[:5]}")
        return to_coco_results(predictions, self.category_ids)

    def evaluate(self, predictions: dict, *, image_ids=None, backend: str = "pycocotools") -> dict:
        """COCO AP suite in percent (see :func:`klrpn.metrics.coco_eval.coco_metrics`)."""
        if not self.has_annotations:
            raise ValueError(f"{self.ann_file} has no annotations ({self.split} ground truth is "
                             "private: evaluate on val2017)")
        return coco_metrics(self.coco, self.to_coco_results(predictions),
                            image_ids=image_ids, backend=backend)

    def proposal_recall(self, proposals: dict, *, image_ids=None,
                        backend: str = "pycocotools") -> dict:
        """Class-agnostic AR@100/300/1000 in percent of ``{image_id: {boxes, scores}}``."""
        return proposal_recall(self.coco, proposals, image_ids=image_ids, backend=backend)


class VOCScoring:
    """Evaluation of a VOC dataset (``self.records``, ``self.gt``, ``self.classes``)."""

    def evaluate(self, predictions: dict, *, image_ids=None) -> dict:
        """VOC07 11-point mAP in percent (see :func:`klrpn.metrics.voc_eval.voc07_map`)."""
        return voc07_map(self, predictions, image_ids=image_ids)

    def proposal_recall(self, proposals: dict, *, image_ids=None,
                        backend: str = "pycocotools") -> dict:
        """Class-agnostic AR@100/300/1000 in percent; difficult boxes are COCO crowd regions
        (ignored: neither missed nor needed)."""
        return proposal_recall(self.to_coco(), proposals, image_ids=image_ids, backend=backend)

    def to_coco(self):
        """The ground truth as an in-memory pycocotools ``COCO`` (continuous xywh boxes,
        category id = label, ``iscrowd`` = difficult)."""
        images, anns = [], []
        for rec in self.records:
            images.append({"id": rec["image_id"], "width": rec["width"], "height": rec["height"]})
            g = self.gt[rec["image_id"]]
            for (x1, y1, x2, y2), label, diff in zip(g["boxes"].tolist(), g["labels"].tolist(),
                                                     g["difficult"].tolist()):
                w, h = x2 - x1 + 1.0, y2 - y1 + 1.0
                anns.append({"id": len(anns) + 1, "image_id": rec["image_id"], "category_id": label,
                             "bbox": [x1 - 1.0, y1 - 1.0, w, h], "area": w * h, "iscrowd": int(diff)})
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns,
                        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.classes)]}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco
