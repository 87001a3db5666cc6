"""COCO-format detection dataset (real COCO 2017 or the synthetic COCO layout).

Layout: ``root/annotations/instances_<split>.json`` and images in ``root/<split>/``; the
test splits read ``root/annotations/image_info_<split>.json`` with images in ``root/test2017/``.

Labels are contiguous: category ids sorted ascending map to labels 1..C
(``category_ids[label - 1]`` maps back). Crowd boxes (``iscrowd=1``) are training targets
flagged ``iscrowd`` unless ``use_crowd=False``: jwyang/faster-rcnn.pytorch keeps them
(lib/model/utils/config.py ``TRAIN.USE_ALL_GT = True``; lib/roi_data_layer/minibatch.py would
drop them only with it False). Evaluation uses the full annotation file, so COCOeval treats them
as ignore regions either way. Boxes with zero or negative width/height (after
clipping to the image) are dropped, counted and reported once. An unknown category is an error.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from pycocotools.coco import COCO

from klrpn.data.base import DetectionDataset, as_arrays, finish_records
from klrpn.data.scoring import CocoScoring


def coco_paths(root, split: str) -> tuple[Path, Path]:
    """(annotation json, image folder) of ``split`` under the COCO ``root``."""
    root = Path(root)
    if split.startswith("test"):
        return root / "annotations" / f"image_info_{split}.json", root / "test2017"
    return root / "annotations" / f"instances_{split}.json", root / split


def read_coco(ann_file) -> COCO:
    """Load an annotation file with pycocotools, quietly; a clear error if it is missing."""
    if not Path(ann_file).is_file():
        raise FileNotFoundError(f"{ann_file}: COCO annotation file not found "
                                "(run `klrpn data download coco` or check dataset.root)")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


class CocoDetection(CocoScoring, DetectionDataset):
    """One COCO split. ``train=True, use_crowd=False`` drops crowd boxes from the targets."""

    def __init__(self, root, split: str, *, train: bool = False, flip: bool = False,
                 classes: list[str] | None = None, num_classes: int | None = None,
                 use_crowd: bool = True):
        self.use_crowd = use_crowd
        ann_file, image_dir = coco_paths(root, split)
        self.ann_file, self.split = ann_file, split
        self.coco = read_coco(ann_file)
        self.category_ids = sorted(self.coco.cats)
        names = [self.coco.cats[c]["name"] for c in self.category_ids]
        if classes is not None and list(classes) != names:
            raise ValueError(f"{ann_file}: dataset.classes {list(classes)} differ from the "
                             f"file's categories {names} (in category-id order)")
        if num_classes is not None and num_classes != len(names):
            raise ValueError(f"{ann_file}: dataset.num_classes is {num_classes} but the file "
                             f"has {len(names)} categories")
        self.has_annotations = "annotations" in self.coco.dataset
        super().__init__(self._read_records(image_dir, train), names, flip=flip)

    def _read_records(self, image_dir: Path, train: bool) -> list[dict]:
        label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        records, invalid, crowd = [], 0, 0
        for image_id in sorted(self.coco.imgs):
            info = self.coco.imgs[image_id]
            try:
                width, height = int(info["width"]), int(info["height"])
                path = image_dir / info["file_name"]
            except KeyError as err:
                raise ValueError(f"{self.ann_file}: image {image_id} lacks {err}") from err
            boxes, labels, iscrowd = [], [], []
            for ann in self.coco.imgToAnns.get(image_id, []):
                if ann["category_id"] not in label_of:
                    raise ValueError(f"{self.ann_file}: annotation {ann.get('id')} has unknown "
                                     f"category_id {ann['category_id']}")
                x, y, w, h = ann["bbox"]
                x1, y1 = max(x, 0.0), max(y, 0.0)
                x2, y2 = min(x + w, width), min(y + h, height)
                if w <= 0 or h <= 0 or x2 <= x1 or y2 <= y1:
                    invalid += 1
                    continue
                if train and not self.use_crowd and ann.get("iscrowd", 0):
                    crowd += 1
                    continue
                boxes.append((x1, y1, x2, y2))
                labels.append(label_of[ann["category_id"]])
                iscrowd.append(bool(ann.get("iscrowd", 0)))
            records.append({"image_id": image_id, "path": path, "width": width, "height": height,
                            **as_arrays(boxes, labels, [False] * len(labels), iscrowd)})
        return finish_records(str(self.ann_file), records, invalid, {"crowd": crowd})
