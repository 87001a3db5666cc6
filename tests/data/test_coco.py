"""The COCO loader on the synthetic data and on hand-made annotation files."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from klrpn.data import CocoDetection, build_dataset


def test_labels_are_contiguous_and_map_back(synth_root, coco_cfg):
    ds = build_dataset(coco_cfg(synth_root), "test", train=False)
    assert ds.classes == ["circle", "square", "triangle"] and ds.num_classes == 3
    assert ds.category_ids == [1, 3, 7]
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape[0] == 3 and 0 <= image.min() <= image.max() <= 1
    assert target["labels"].dtype == torch.int64
    results = ds.to_coco_results({target["image_id"]: {
        "boxes": target["boxes"], "labels": target["labels"], "scores": torch.ones(len(target["labels"]))}})
    by_id = {a["id"]: a for a in ds.coco.imgToAnns[target["image_id"]]}
    assert sorted(r["category_id"] for r in results) == sorted(a["category_id"] for a in by_id.values())
    assert sorted(tuple(r["bbox"]) for r in results) == sorted(tuple(a["bbox"]) for a in by_id.values())


def test_crowd_boxes_are_training_targets_as_the_baseline_keeps_them(synth_root, coco_cfg):
    # jwyang/faster-rcnn.pytorch config.py TRAIN.USE_ALL_GT = True: crowd boxes are targets
    train = build_dataset(coco_cfg(synth_root, max_gt_boxes=None, drop_empty_train=False),
                          "train", train=True)
    test_view = CocoDetection(synth_root / "coco", "train2017", train=False)
    crowd = sum(a["iscrowd"] for a in train.coco.dataset["annotations"])
    assert crowd > 0
    assert [r["labels"].tolist() for r in train.records] == [r["labels"].tolist() for r in test_view.records]
    assert sum(int(r["iscrowd"].sum()) for r in train.records) == crowd
    # use_crowd_train: false leaves exactly the crowd boxes out (the old py-faster-rcnn way)
    no_crowd = build_dataset(coco_cfg(synth_root, use_crowd_train=False, max_gt_boxes=None,
                                      drop_empty_train=False), "train", train=True)
    assert sum(len(r["labels"]) for r in train.records) - sum(len(r["labels"]) for r in no_crowd.records) == crowd
    assert not any(r["iscrowd"].any() for r in no_crowd.records)
    # evaluation keeps them as COCOeval ignore regions: the ground truth is the annotation file
    assert sum(a["iscrowd"] for a in test_view.coco.dataset["annotations"]) == crowd


def test_flip_mirrors_boxes(synth_root, coco_cfg):
    ds = build_dataset(coco_cfg(synth_root), "train", train=True)
    index = next(i for i, r in enumerate(ds.records) if len(r["labels"]))
    image, target = ds[index]
    flipped, ftarget = ds[(index, True)]
    width = image.shape[-1]
    assert torch.equal(flipped, image.flip(-1))
    assert torch.allclose(ftarget["boxes"][:, 0], width - target["boxes"][:, 2])
    assert torch.allclose(ftarget["boxes"][:, 2], width - target["boxes"][:, 0])
    assert torch.equal(ftarget["labels"], target["labels"])


def make_coco(tmp_path, annotations, categories=({"id": 5, "name": "a"},), image=True):
    (tmp_path / "annotations").mkdir(exist_ok=True)
    (tmp_path / "val2017").mkdir(exist_ok=True)
    if image:
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "val2017" / "1.jpg")
    doc = {"images": [{"id": 1, "file_name": "1.jpg", "width": 30, "height": 20}],
           "annotations": annotations, "categories": list(categories)}
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(doc))
    return tmp_path


def ann(i, bbox, cat=5, crowd=0):
    return {"id": i, "image_id": 1, "category_id": cat, "bbox": bbox, "area": 1.0, "iscrowd": crowd}


def test_degenerate_boxes_are_dropped_counted_and_reported_once(tmp_path, caplog):
    root = make_coco(tmp_path, [ann(1, [1, 2, 10, 5]), ann(2, [3, 3, 0, 4]), ann(3, [3, 3, 4, -1])])
    with caplog.at_level(logging.WARNING, logger="klrpn.data"):
        ds = CocoDetection(root, "val2017")
    assert ds.records[0]["boxes"].tolist() == [[1, 2, 11, 7]]
    warnings = [r.message for r in caplog.records if "zero or negative" in r.message]
    assert len(warnings) == 1 and "dropped 2 annotation" in warnings[0]
    assert "instances_val2017.json" in warnings[0]


def test_unknown_category_is_an_error(tmp_path):
    root = make_coco(tmp_path, [ann(1, [1, 2, 10, 5], cat=9)])
    with pytest.raises(ValueError, match="unknown category_id 9"):
        CocoDetection(root, "val2017")


def test_config_mismatch_and_missing_file_are_errors(tmp_path):
    root = make_coco(tmp_path, [])
    with pytest.raises(ValueError, match="num_classes is 3 but the file has 1"):
        CocoDetection(root, "val2017", num_classes=3)
    with pytest.raises(ValueError, match="differ from the file's categories"):
        CocoDetection(root, "val2017", classes=["b"])
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        CocoDetection(root, "train2017")


def test_unreadable_image_names_the_file(tmp_path):
    root = make_coco(tmp_path, [], image=False)
    (root / "val2017" / "1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="1.jpg"):
        CocoDetection(root, "val2017")[0]


def test_predictions_for_unknown_images_are_an_error(tmp_path):
    ds = CocoDetection(make_coco(tmp_path, [ann(1, [1, 2, 10, 5])]), "val2017")
    with pytest.raises(KeyError, match="not in"):
        ds.to_coco_results({42: {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0), "scores": torch.zeros(0)}})


def test_synthetic_ground_truth_scores_100_through_cocoeval(synth_root, coco_cfg):
    test = build_dataset(coco_cfg(synth_root), "test", train=False)
    predictions = {}
    for i in range(len(test)):
        _, target = test[i]
        predictions[target["image_id"]] = {"boxes": target["boxes"], "labels": target["labels"],
                                           "scores": torch.ones(len(target["labels"]))}
    stats = test.evaluate(predictions)
    assert stats["AP"] == 100.0 and stats["AP50"] == 100.0
    half = dict(list(predictions.items())[: len(predictions) // 2])
    assert test.evaluate(half)["AP"] < 100.0  # images without predictions are misses
    assert test.evaluate(half, image_ids=list(half))["AP"] == 100.0
