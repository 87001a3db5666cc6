"""Datasets (COCO, VOC, synthetic), the training loader and the downloads.

``build_dataset(cfg, split, *, train)`` reads ``cfg["dataset"]`` and ``cfg["input"]`` (see
docs/architecture.md); ``build_train_loader`` is in :mod:`klrpn.data.sampler`.
"""

from __future__ import annotations

import importlib

# Imported on first use, so that `klrpn.data.download` (used while Snakemake parses the
# workflow) does not pull in torch.
_LAZY = {"ConcatDetection": "base", "DetectionDataset": "base", "TrainDraw": "base",
         "CocoDetection": "coco",
         "VOCDetection": "voc", "build_train_loader": "sampler"}

__all__ = ["build_dataset", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_dataset(cfg: dict, split: str, *, train: bool):
    """The dataset of ``split``: ``"train"`` / ``"test"`` (the sets listed under those keys of
    ``cfg["dataset"]``; several are concatenated) or one set name (``"val2017"``,
    ``"2007_test"``). With ``train``: horizontal flips are drawn when ``cfg["input"]["flip"]``;
    difficult (VOC) and crowd (COCO) objects are targets unless ``dataset.use_difficult_train`` /
    ``use_crowd_train`` is false; images without boxes are dropped when
    ``dataset.drop_empty_train``; the loader's items get ``input.aspect_crop``,
    ``dataset.max_gt_boxes`` and a short side drawn from ``input.min_size``. Missing keys take
    the baseline's values (see params/defaults.yaml)."""
    ds, inp = cfg["dataset"], cfg.get("input", {})
    names = ds[split] if split in ("train", "test") else split
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(f"dataset.{split} lists no sets")
    flip = bool(train and inp.get("flip", False))
    if ds["format"] == "voc":
        from klrpn.data.voc import VOCDetection

        dataset = VOCDetection(ds["root"], names, ds.get("classes"), train=train, flip=flip,
                               use_difficult=bool(ds.get("use_difficult_train", True)))
    elif ds["format"] == "coco":
        from klrpn.data.base import ConcatDetection
        from klrpn.data.coco import CocoDetection

        parts = [CocoDetection(ds["root"], name, train=train, flip=flip, classes=ds.get("classes"),
                               num_classes=ds.get("num_classes"),
                               use_crowd=bool(ds.get("use_crowd_train", True))) for name in names]
        dataset = parts[0] if len(parts) == 1 else ConcatDetection(parts)
    else:
        raise ValueError(f"dataset.format {ds['format']!r}: expected 'coco' or 'voc'")
    if train:
        if ds.get("drop_empty_train", True):
            dataset.drop_empty()
            if not len(dataset):
                raise ValueError(f"dataset.{split} ({', '.join(names)}): no training image has a box")
        dataset.train_min_sizes = tuple(int(s) for s in inp.get("min_size", ())) or None
        crop = inp.get("aspect_crop", (0.5, 2.0))
        dataset.aspect_crop = tuple(float(r) for r in crop) if crop is not None else None
        dataset.max_gt_boxes = ds.get("max_gt_boxes", 20)
    return dataset
