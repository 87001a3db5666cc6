"""The VOC loader: layout, coordinates, difficult handling, 07+12 concatenation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from klrpn.data import VOCDetection, build_dataset

XML = """<annotation><size><width>50</width><height>40</height><depth>3</depth></size>
<object><name>cat</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>
<object><name>dog</name><difficult>1</difficult><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>30</xmax><ymax>35</ymax></bndbox></object>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>9</xmin><ymin>5</ymin><xmax>8</xmax><ymax>35</ymax></bndbox></object>
</annotation>"""


def make_voc(tmp_path, xml=XML):
    base = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (base / sub).mkdir(parents=True)
    (base / "ImageSets/Main/test.txt").write_text("000007\n")
    (base / "Annotations/000007.xml").write_text(xml)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(base / "JPEGImages/000007.jpg")
    return tmp_path / "VOCdevkit"


def test_coordinates_difficult_and_invalid_boxes(tmp_path):
    root = make_voc(tmp_path)
    test = VOCDetection(root, ["2007_test"], ["cat", "dog"])
    train = VOCDetection(root, ["2007_test"], ["cat", "dog"], train=True)
    assert test.image_ids == [2007000007]
    assert test.records[0]["boxes"].tolist() == [[0, 1, 10, 20], [4, 4, 30, 35]]
    assert test.records[0]["difficult"].tolist() == [False, True]
    assert test.gt[2007000007]["boxes"].tolist() == [[1, 2, 10, 20], [5, 5, 30, 35]]
    image, target = test[0]
    assert image.shape == (3, 40, 50) and target["labels"].tolist() == [1, 2]
    # the baseline (pascal_voc.py: use_diff filter commented out) trains on difficult objects
    assert train.records[0]["boxes"].tolist() == [[0, 1, 10, 20], [4, 4, 30, 35]]
    assert train.records[0]["difficult"].tolist() == [False, True]
    without = VOCDetection(root, ["2007_test"], ["cat", "dog"], train=True, use_difficult=False)
    assert without.records[0]["boxes"].tolist() == [[0, 1, 10, 20]]  # difficult left out


def test_difficult_objects_train_but_the_voc07_metric_still_ignores_them(tmp_path):
    root = make_voc(tmp_path)
    cfg = {"dataset": {"format": "voc", "root": str(root), "train": ["2007_test"], "test": "2007_test",
                       "classes": ["cat", "dog"], "use_difficult_train": True}, "input": {"flip": False}}
    train = build_dataset(cfg, "train", train=True)
    assert train[0][1]["labels"].tolist() == [1, 2]
    test = build_dataset(cfg, "test", train=False)
    cat_only = {2007000007: {"boxes": np.array([[0.0, 1, 10, 20]]), "labels": np.array([1]),
                             "scores": np.array([0.9])}}
    # the difficult dog is neither missed nor needed: dog has no non-difficult box -> None
    assert test.evaluate(cat_only)["per_class"] == {"cat": 100.0, "dog": None}
    with_dog = {2007000007: {"boxes": np.array([[0.0, 1, 10, 20], [4, 4, 30, 35]]),
                             "labels": np.array([1, 2]), "scores": np.array([0.9, 0.8])}}
    assert test.evaluate(with_dog)["mAP"] == 100.0  # a hit on the difficult box is no false positive


def test_unknown_class_and_missing_set_are_errors(tmp_path):
    root = make_voc(tmp_path)
    with pytest.raises(ValueError, match=r"000007.xml: unknown class 'dog'"):
        VOCDetection(root, ["2007_test"], ["cat"])
    with pytest.raises(FileNotFoundError, match="trainval.txt"):
        VOCDetection(root, ["2007_trainval"], ["cat", "dog"])
    with pytest.raises(ValueError, match="<year>_<imageset>"):
        VOCDetection(root, ["test"], ["cat", "dog"])


def test_synthetic_07_plus_12_loads(synth_root, voc_cfg):
    cfg = voc_cfg(synth_root, drop_empty_train=False)
    train = build_dataset(cfg, "train", train=True)
    test = build_dataset(cfg, "test", train=False)
    assert len(train) == 160 + 120 and len(test) == 60 and train.flip and not test.flip
    assert len(set(train.image_ids)) == 280
    with_boxes = build_dataset(voc_cfg(synth_root), "train", train=True)  # the baseline's filter_roidb
    assert len(with_boxes) == sum(1 for r in train.records if len(r["labels"])) == 261
    assert any(i > 2012_000000_0000 for i in train.image_ids)
    assert any(r["difficult"].any() for r in train.records)  # the baseline trains on them
    assert any(r["difficult"].any() for r in test.records)
    no_difficult = build_dataset(voc_cfg(synth_root, use_difficult_train=False), "train", train=True)
    assert not any(r["difficult"].any() for r in no_difficult.records)
    image, target = test[5]
    assert image.shape[1:] == (test.records[5]["height"], test.records[5]["width"])


def test_synthetic_ground_truth_scores_100_through_the_real_evaluators(synth_root, voc_cfg):
    test = build_dataset(voc_cfg(synth_root), "test", train=False)
    predictions = {}
    for i in range(len(test)):
        _, target = test[i]
        n = len(target["labels"])
        predictions[target["image_id"]] = {"boxes": target["boxes"], "labels": target["labels"],
                                           "scores": np.linspace(1.0, 0.5, n)}
    result = test.evaluate(predictions)
    assert result["mAP"] == 100.0 and set(result["per_class"]) == {"circle", "square", "triangle"}
    assert test.proposal_recall(predictions) == {"AR@100": 100.0, "AR@300": 100.0, "AR@1000": 100.0}
    shifted = {k: {**v, "boxes": v["boxes"] + 6.0} for k, v in predictions.items()}
    assert test.evaluate(shifted)["mAP"] < 100.0
