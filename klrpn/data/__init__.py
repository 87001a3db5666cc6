"""Datasets (COCO, VOC, synthetic), the training loader and the downloads.

``build_dataset(cfg, split, *, train)`` reads ``cfg["dataset"]`` and ``cfg["input"]`` (see
docs/architecture.md); ``build_train_loader`` is in :mod:`klrpn.data.sampler`.
"""

from __future__ import annotations

import importlib

# Imported on first use, so that `klrpn.data.download` (used while Snakemake parses the
# workflow) does not pull in torch.
_LAZY = {"ConcatDetection": "base", "DetectionDataset": "base", "CocoDetection": "coco",
         "VOCDetection": "voc", "build_train_loader": "sampler"}

__all__ = ["build_dataset", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_dataset(cfg: dict, split: str, *, train: bool):
    """The dataset of ``split``: ``"train"`` / ``"test"`` (the sets listed under those keys of
    ``cfg["dataset"]``; several are concatenated) or one set name (``"val2017"``,
    ``"2007_test"``). Horizontal flips are drawn when ``train`` and ``cfg["input"]["flip"]``."""
    ds = cfg["dataset"]
    names = ds[split] if split in ("train", "test") else split
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(f"dataset.{split} lists no sets")
    flip = bool(train and cfg.get("input", {}).get("flip", False))
    if ds["format"] == "voc":
        from klrpn.data.voc import VOCDetection

        return VOCDetection(ds["root"], names, ds.get("classes"), train=train, flip=flip,
                            use_difficult=bool(ds.get("use_difficult_train", False)))
    if ds["format"] != "coco":
        raise ValueError(f"dataset.format {ds['format']!r}: expected 'coco' or 'voc'")
    from klrpn.data.base import ConcatDetection
    from klrpn.data.coco import CocoDetection

    parts = [CocoDetection(ds["root"], name, train=train, flip=flip, classes=ds.get("classes"),
                           num_classes=ds.get("num_classes")) for name in names]
    return parts[0] if len(parts) == 1 else ConcatDetection(parts)
