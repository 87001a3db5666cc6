"""PASCAL VOC detection dataset read from a VOCdevkit folder.

``image_sets`` name ``"<year>_<imageset>"`` (``2007_trainval``, ``2012_trainval``,
``2007_test``) -> ``root/VOC<year>/ImageSets/Main/<imageset>.txt``, annotations in
``Annotations/<name>.xml``, images in ``JPEGImages/<name>.jpg``.

Boxes: VOC's 1-based inclusive ``(xmin, ymin, xmax, ymax)`` become continuous pixels
``(xmin - 1, ymin - 1, xmax, ymax)``; ``self.gt`` keeps the XML values for the VOC07 metric.
Difficult objects are training targets (flagged ``difficult``) unless ``use_difficult=False``:
jwyang/faster-rcnn.pytorch lib/datasets/pascal_voc.py ``_load_pascal_annotation`` has its
``use_diff`` filter commented out. They are always kept, flagged, for evaluation (VOC07
ignores them). Image ids: ``int(year + name without "_")``,
e.g. VOC2007 ``000005`` -> 2007000005, VOC2012 ``2008_000002`` -> 20122008000002.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from klrpn.data.base import DetectionDataset, as_arrays, finish_records
from klrpn.data.scoring import VOCScoring

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")


def parse_image_set(entry: str) -> tuple[str, str]:
    """``"2007_trainval"`` -> ``("2007", "trainval")``."""
    year, _, name = entry.partition("_")
    if not (year.isdigit() and name):
        raise ValueError(f"VOC set {entry!r}: expected '<year>_<imageset>', e.g. 2007_trainval")
    return year, name


def read_voc_xml(path: Path, label_of: dict) -> tuple[int, int, list[tuple]]:
    """(width, height, [(label, xmin, ymin, xmax, ymax, difficult), ...]) of one XML file."""
    try:
        root = ET.parse(path).getroot()
        width, height = int(root.find("size/width").text), int(root.find("size/height").text)
        objects = []
        for obj in root.iter("object"):
            name = obj.find("name").text.strip()
            if name not in label_of:
                raise ValueError(f"{path}: unknown class {name!r}")
            box = obj.find("bndbox")
            coords = [float(box.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax")]
            flag = obj.find("difficult")
            difficult = flag is not None and int(flag.text) == 1
            objects.append((label_of[name], *coords, difficult))
    except (OSError, ET.ParseError, AttributeError, TypeError) as err:
        raise ValueError(f"cannot read VOC annotation {path}: {err}") from err
    return width, height, objects


class VOCDetection(VOCScoring, DetectionDataset):
    """One or more VOC image sets (``image_sets``) with ``classes`` in label order."""

    def __init__(self, root, image_sets: list[str], classes=None, *, train: bool = False,
                 flip: bool = False, use_difficult: bool = True):
        self.root = Path(root)
        classes = list(classes or VOC_CLASSES)
        label_of = {name: i + 1 for i, name in enumerate(classes)}
        self.gt, records, invalid, skipped = {}, [], 0, 0
        for entry in image_sets:
            year, name = parse_image_set(entry)
            base = self.root / f"VOC{year}"
            list_file = base / "ImageSets" / "Main" / f"{name}.txt"
            if not list_file.is_file():
                raise FileNotFoundError(f"{list_file}: VOC image set not found (run `klrpn data "
                                        "download voc` or check dataset.root)")
            for stem in list_file.read_text().split():
                image_id = int(year + stem.replace("_", ""))
                width, height, objects = read_voc_xml(base / "Annotations" / f"{stem}.xml", label_of)
                good = [o for o in objects if o[3] >= o[1] and o[4] >= o[2]]
                invalid += len(objects) - len(good)
                self.gt[image_id] = {
                    "boxes": np.array([o[1:5] for o in good], np.float64).reshape(-1, 4),
                    "labels": np.array([o[0] for o in good], np.int64),
                    "difficult": np.array([o[5] for o in good], bool)}
                targets = [o for o in good if use_difficult or not (train and o[5])]
                skipped += len(good) - len(targets)
                records.append({
                    "image_id": image_id, "path": base / "JPEGImages" / f"{stem}.jpg",
                    "width": width, "height": height,
                    **as_arrays([(o[1] - 1, o[2] - 1, o[3], o[4]) for o in targets],
                                [o[0] for o in targets], [o[5] for o in targets],
                                [False] * len(targets))})
        if len(self.gt) != len(records):
            raise ValueError(f"{self.root}: an image appears twice in {image_sets}")
        finish_records(f"{self.root} {image_sets}", records, invalid, {"difficult": skipped})
        super().__init__(records, classes, flip=flip)
