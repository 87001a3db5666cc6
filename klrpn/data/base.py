"""Shared machinery of the detection datasets: records, item loading, flip, concatenation.

A dataset holds one *record* per image: ``image_id`` (int), ``path``, ``width``, ``height`` and
the training targets as numpy arrays (``boxes`` float32 [N, 4] x1y1x2y2 in pixels, ``labels``
int64 [N] in 1..C, ``difficult`` / ``iscrowd`` bool [N]). Items are loaded lazily.

Indexing: ``dataset[i]`` gives the unflipped item ``i``; ``dataset[(i, True)]`` gives it
horizontally flipped. The train loader decides the flips (deterministically from its seed),
so items are reproducible in any worker.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

log = logging.getLogger("klrpn.data")


def load_image(path) -> torch.Tensor:
    """Read an image file as float32 ``[3, H, W]`` RGB in [0, 1]; a clear error names the file."""
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as err:
        raise OSError(f"cannot read image {path}: {err}") from err
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def hflip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Mirror ``image`` [3, H, W] and its ``target["boxes"]`` [N, 4] (x -> W - x)."""
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes}


class DetectionDataset(torch.utils.data.Dataset):
    """Records + lazy loading. Subclasses fill ``records``, ``classes`` and add evaluation."""

    def __init__(self, records: list[dict], classes: list[str], *, flip: bool = False):
        self.records = records
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.flip = flip  # whether the train loader should draw random flips for this set

    def __len__(self) -> int:
        return len(self.records)

    @property
    def image_ids(self) -> list[int]:
        return [r["image_id"] for r in self.records]

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(width, height) per index, read from the annotations (no image decoding)."""
        return [(r["width"], r["height"]) for r in self.records]

    def __getitem__(self, key):
        index, flipped = key if isinstance(key, tuple) else (key, False)
        rec = self.records[index]
        image = load_image(rec["path"])
        if tuple(image.shape[1:]) != (rec["height"], rec["width"]):
            raise ValueError(f"{rec['path']}: image is {image.shape[2]}x{image.shape[1]} but the "
                             f"annotations say {rec['width']}x{rec['height']}")
        target = {
            "boxes": torch.from_numpy(rec["boxes"]).reshape(-1, 4),
            "labels": torch.from_numpy(rec["labels"]),
            "image_id": rec["image_id"],
            "difficult": torch.from_numpy(rec["difficult"]),
            "iscrowd": torch.from_numpy(rec["iscrowd"]),
        }
        return hflip(image, target) if flipped else (image, target)


class ConcatDetection(DetectionDataset):
    """Several datasets with the same classes back to back (e.g. VOC 07+12); training only."""

    def __init__(self, parts: list[DetectionDataset]):
        names = {tuple(p.classes) for p in parts}
        if len(names) != 1:
            raise ValueError(f"cannot concatenate datasets with different classes: {sorted(names)}")
        super().__init__([r for p in parts for r in p.records], parts[0].classes,
                         flip=parts[0].flip)
        self.parts = parts
        ids = self.image_ids
        if len(set(ids)) != len(ids):
            raise ValueError("concatenated datasets share image ids; each image must appear once")


def finish_records(name: str, records: list[dict], dropped_invalid: int,
                   dropped_other: dict[str, int]) -> list[dict]:
    """Log once how many boxes were dropped while reading ``name``; return ``records``."""
    if dropped_invalid:
        log.warning("%s: dropped %d annotation(s) with zero or negative width/height",
                    name, dropped_invalid)
    for reason, count in dropped_other.items():
        if count:
            log.info("%s: left %d %s box(es) out of the training targets", name, count, reason)
    return records


def as_arrays(boxes, labels, difficult, iscrowd) -> dict:
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, np.int64),
            "difficult": np.asarray(difficult, bool),
            "iscrowd": np.asarray(iscrowd, bool)}
