"""Shared machinery of the detection datasets: records, item loading, flip, concatenation.

A dataset holds one *record* per image: ``image_id`` (int), ``path``, ``width``, ``height`` and
the training targets as numpy arrays (``boxes`` float32 [N, 4] x1y1x2y2 in pixels, ``labels``
int64 [N] in 1..C, ``difficult`` / ``iscrowd`` bool [N]). Items are loaded lazily.

Indexing: ``dataset[i]`` gives the unflipped item ``i``; ``dataset[(i, True)]`` gives it
horizontally flipped. The train loader indexes with a :class:`TrainDraw` (index, flip, training
short side, item seed), all drawn from its seed, so items are reproducible in any worker; such
an item also gets the baseline's training-time treatment (jwyang/faster-rcnn.pytorch
lib/roi_data_layer/roibatchLoader.py ``__getitem__``): the aspect-ratio crop
(``aspect_crop``), degenerate boxes dropped, at most ``max_gt_boxes`` boxes (a random subset),
and ``target["train_size"]`` for the model's transform.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

log = logging.getLogger("klrpn.data")

BOX_FIELDS = ("boxes", "labels", "difficult", "iscrowd")  # per-box target entries


class TrainDraw(NamedTuple):
    """One training item as the loader drew it: which image, mirrored or not, the short side
    it is resized to (``None``: the model's own) and the seed of its crop / box-cap draws."""

    index: int
    flip: bool
    size: int | None = None
    seed: int = 0


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


def aspect_crop(width: int, height: int, boxes: np.ndarray, ratio_range, rng: np.random.Generator):
    """The crop window ``(x0, y0, x1, y1)`` (pixels) that brings an image whose width/height
    lies outside ``ratio_range = (lo, hi)`` to ``hi`` (too wide) or ``lo`` (too tall), or None.

    The baseline's rule (roidb.py rank_roidb_ratio clamps the ratio to [0.5, 2] and flags
    need_crop; roibatchLoader.py ``__getitem__`` crops), applied in original-image pixels
    (resizing is uniform, so the window is the same up to rounding): crop length
    ``ceil(h * hi)`` (wide) or ``floor(w / lo)`` (tall); the start is 0 when the boxes touch
    the image's start, else drawn so the crop holds the boxes' extent where it fits, or starts
    inside its first half where it does not. ``boxes`` [N, 4] x1y1x2y2."""
    lo, hi = ratio_range
    ratio = width / height
    if lo <= ratio <= hi:
        return None
    if ratio > hi:
        trim = min(math.ceil(height * hi), width)
        start = _crop_start(boxes[:, 0], boxes[:, 2], trim, width, rng)
        return start, 0, start + trim, height
    trim = min(math.floor(width / lo), height)
    start = _crop_start(boxes[:, 1], boxes[:, 3], trim, height, rng)
    return 0, start, width, start + trim


def _crop_start(lows: np.ndarray, highs: np.ndarray, trim: int, extent: int,
                rng: np.random.Generator) -> int:
    if len(lows) == 0:  # no boxes to keep (only when empty images are not dropped)
        return int(rng.integers(0, extent - trim + 1))
    low, high = int(lows.min()), int(highs.max())
    if low == 0:
        return 0
    region = high - low + 1
    if region < trim:  # the boxes fit: any start keeping [low, high] inside and the crop in the image
        first, last = max(high - trim, 0), min(low, extent - trim)
        return first if first == last else int(rng.integers(first, last))
    half = int((region - trim) / 2)  # they do not: start in the first half of the overhang
    return low if half == 0 else int(rng.integers(low, low + half))


def training_view(image: torch.Tensor, target: dict, *, aspect_range, max_gt_boxes: int | None,
                  rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
    """The baseline's training-time view of a (flipped) item: the aspect-ratio crop, boxes
    clipped to it and dropped when they become degenerate, then at most ``max_gt_boxes`` boxes
    (a random subset, in their original order; the baseline shuffles and keeps the first)."""
    boxes = target["boxes"]
    if aspect_range is not None:
        window = aspect_crop(image.shape[-1], image.shape[-2], boxes.numpy(), aspect_range, rng)
        if window is not None:
            x0, y0, x1, y1 = window
            image = image[:, y0:y1, x0:x1]
            shift = torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)
            limit = torch.tensor([x1 - x0, y1 - y0, x1 - x0, y1 - y0], dtype=boxes.dtype)
            boxes = torch.minimum((boxes - shift).clamp(min=0), limit)
            target = {**target, "boxes": boxes}
    keep = torch.where((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))[0]
    if max_gt_boxes is not None and len(keep) > max_gt_boxes:
        keep = keep[np.sort(rng.choice(len(keep), max_gt_boxes, replace=False))]
    if len(keep) < len(boxes):
        target = {**target, **{k: target[k][keep] for k in BOX_FIELDS}}
    return image, target


class DetectionDataset(torch.utils.data.Dataset):
    """Records + lazy loading. Subclasses fill ``records``, ``classes`` and add evaluation.

    Training options (set by :func:`klrpn.data.build_dataset`, used by :class:`TrainDraw`
    items): ``flip``, ``train_min_sizes`` (the training short sides the loader draws from),
    ``aspect_crop`` and ``max_gt_boxes``."""

    def __init__(self, records: list[dict], classes: list[str], *, flip: bool = False):
        self.records = records
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.flip = flip  # whether the train loader should draw random flips for this set
        self.train_min_sizes: tuple[int, ...] | None = None
        self.aspect_crop: tuple[float, float] | None = None
        self.max_gt_boxes: int | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def image_ids(self) -> list[int]:
        return [r["image_id"] for r in self.records]

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(width, height) per index, read from the annotations (no image decoding)."""
        return [(r["width"], r["height"]) for r in self.records]

    def drop_empty(self) -> int:
        """Leave out the images without boxes (baseline lib/roi_data_layer/roidb.py
        filter_roidb, training only); returns how many were dropped."""
        before = len(self.records)
        self.records = [r for r in self.records if len(r["labels"])]
        if len(self.records) < before:
            log.info("left %d training image(s) without boxes out", before - len(self.records))
        return before - len(self.records)

    def __getitem__(self, key):
        draw = key if isinstance(key, TrainDraw) else None
        index, flipped = key[:2] if isinstance(key, tuple) else (key, False)
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
        if flipped:
            image, target = hflip(image, target)
        if draw is not None:
            image, target = training_view(image, target, aspect_range=self.aspect_crop,
                                          max_gt_boxes=self.max_gt_boxes,
                                          rng=np.random.default_rng(draw.seed))
            if draw.size is not None:
                target["train_size"] = int(draw.size)
        return image, target


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
