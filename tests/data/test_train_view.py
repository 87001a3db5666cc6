"""The baseline's training-time data handling: aspect-ratio crop, ground-truth cap, images
without boxes (jwyang/faster-rcnn.pytorch roidb.py / roibatchLoader.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from helpers import PARAMS

from klrpn.data import TrainDraw, build_dataset
from klrpn.data.base import aspect_crop


def crop(width, height, boxes, seed=0):
    return aspect_crop(width, height, np.array(boxes, np.float32).reshape(-1, 4), (0.5, 2.0),
                       np.random.default_rng(seed))


def test_aspect_crop_leaves_ratios_in_half_to_two_alone():
    assert crop(200, 100, [[5, 5, 50, 50]]) is None   # ratio 2: kept (roidb.py: > 2 is cropped)
    assert crop(100, 200, [[5, 5, 50, 50]]) is None   # 0.5
    assert crop(640, 480, [[5, 5, 50, 50]]) is None


def test_aspect_crop_follows_the_baseline_rule():
    # boxes touching the image start: crop from 0 (roibatchLoader.py: min_x == 0 -> x_s = 0)
    assert crop(500, 100, [[0, 10, 40, 50], [300, 10, 320, 50]]) == (0, 0, 200, 100)
    # boxes that fit (region 51 < 200): the start keeps them inside, drawn from [100, 250)
    starts = {crop(500, 100, [[250, 10, 300, 50]], seed)[0] for seed in range(200)}
    assert min(starts) >= 100 and max(starts) < 250 and len(starts) > 50
    # pinned draw: numpy.random.default_rng(0).integers(100, 250) == 227
    assert crop(500, 100, [[250, 10, 300, 50]], seed=0) == (227, 0, 427, 100)
    # boxes wider than the crop (region 431 >= 200): start in [50, 50 + (431 - 200) // 2)
    starts = {crop(500, 100, [[50, 10, 120, 50], [400, 10, 480, 50]], seed)[0] for seed in range(200)}
    assert min(starts) >= 50 and max(starts) < 165
    # too tall: crop the height to floor(w / 0.5); too wide: ceil(h * 2)
    assert crop(100, 400, [[10, 0, 50, 30]]) == (0, 0, 100, 200)
    assert crop(301, 101, [[0, 0, 10, 10]]) == (0, 0, 202, 101)
    # no boxes (only when empty images are kept): a uniform start
    assert 0 <= crop(500, 100, [])[0] <= 300


def make_voc(tmp_path, width, height, boxes, name="000001"):
    base = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    objects = "".join(
        f"<object><name>cat</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin>"
        f"<ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for x1, y1, x2, y2 in boxes)
    (base / "Annotations" / f"{name}.xml").write_text(
        f"<annotation><size><width>{width}</width><height>{height}</height></size>{objects}</annotation>")
    with open(base / "ImageSets/Main/trainval.txt", "a") as f:
        f.write(name + "\n")
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, :, 0] = np.arange(width) % 256  # a horizontal ramp shows where a crop starts
    Image.fromarray(pixels).save(base / "JPEGImages" / f"{name}.jpg", quality=100)
    return tmp_path / "VOCdevkit"


def voc_cfg(root, **dataset):
    return {"dataset": {"format": "voc", "root": str(root), "train": ["2007_trainval"],
                        "test": "2007_trainval", "classes": ["cat"], "use_difficult_train": True,
                        "use_crowd_train": True, "drop_empty_train": True, "max_gt_boxes": 20,
                        **dataset},
            "input": {"min_size": [600], "flip": True, "aspect_crop": [0.5, 2.0]}}


def test_a_wide_training_image_is_cropped_and_its_boxes_clipped(tmp_path):
    root = make_voc(tmp_path, 400, 100, [[150, 10, 230, 60], [210, 20, 390, 90]])
    ds = build_dataset(voc_cfg(root), "train", train=True)
    image, target = ds[TrainDraw(0, False, 600, seed=3)]
    window = crop(400, 100, [[150, 10, 230, 60], [210, 20, 390, 90]], seed=3)
    x0 = window[0]
    assert image.shape == (3, 100, 200) and 150 <= x0 < 170  # boxes span 241 > 200: [150, 150 + 20)
    expected = torch.tensor([[150.0 - x0, 10, 230 - x0, 60], [210 - x0, 20, 200, 90]])
    assert torch.equal(target["boxes"], expected.clamp(min=0, max=200))
    assert target["train_size"] == 600
    full, _ = ds[0]  # plain indexing (evaluation, analysis) is never cropped
    assert full.shape == (3, 100, 400) and torch.equal(image, full[:, :, x0:x0 + 200])
    # a box that ends up outside the crop is dropped with its label and flags
    root2 = make_voc(tmp_path / "b", 500, 100, [[0, 10, 40, 50], [300, 10, 320, 50]])
    image, target = build_dataset(voc_cfg(root2), "train", train=True)[TrainDraw(0, False, None, 0)]
    assert image.shape[-1] == 200 and target["boxes"].tolist() == [[0, 10, 40, 50]]
    assert target["labels"].tolist() == [1] and len(target["difficult"]) == len(target["iscrowd"]) == 1
    assert "train_size" not in target
    # off: no crop
    no_crop = {**voc_cfg(root), "input": {"flip": True, "aspect_crop": None}}
    assert build_dataset(no_crop, "train", train=True)[TrainDraw(0, False, None, 0)][0].shape == (3, 100, 400)


def test_ground_truth_is_capped_at_a_random_subset_per_item(tmp_path):
    boxes = [[10 * i, 5, 10 * i + 8, 40] for i in range(25)]
    root = make_voc(tmp_path, 300, 200, boxes)
    ds = build_dataset(voc_cfg(root), "train", train=True)
    assert ds.max_gt_boxes == 20
    _, a = ds[TrainDraw(0, False, 600, seed=1)]
    _, again = ds[TrainDraw(0, False, 600, seed=1)]
    _, b = ds[TrainDraw(0, True, 600, seed=2)]
    assert len(a["boxes"]) == len(b["boxes"]) == 20 and len(a["labels"]) == 20
    assert torch.equal(a["boxes"], again["boxes"])  # deterministic per item seed
    x1 = a["boxes"][:, 0].tolist()
    assert x1 == sorted(x1) and set(x1) <= {10.0 * i for i in range(25)}  # original order kept
    flipped_x1 = sorted(300 - x for x in b["boxes"][:, 2].tolist())
    assert flipped_x1 != x1  # another seed keeps another subset
    assert len(ds[0][1]["boxes"]) == 25  # plain indexing (evaluation) keeps every box
    uncapped = build_dataset(voc_cfg(root, max_gt_boxes=None), "train", train=True)
    assert len(uncapped[TrainDraw(0, False, 600, 1)][1]["boxes"]) == 25


def test_gt_caps_follow_the_baseline_per_dataset():
    from pathlib import Path

    from klrpn.config import load_cell

    params = PARAMS
    assert load_cell("voc07-rfcn-resnet101-rpn", "paper", params)["dataset"]["max_gt_boxes"] == 20
    assert load_cell("voc0712-faster_rcnn-vgg16-rpn", "paper", params)["dataset"]["max_gt_boxes"] == 20
    assert load_cell("coco-faster_rcnn-vgg16-rpn", "paper", params)["dataset"]["max_gt_boxes"] == 50


def test_training_images_without_boxes_are_dropped(synth_root, voc_cfg, coco_cfg):
    for cfg in (voc_cfg(synth_root), coco_cfg(synth_root)):
        kept = build_dataset(cfg, "train", train=True)
        every = build_dataset({**cfg, "dataset": {**cfg["dataset"], "drop_empty_train": False}},
                              "train", train=True)
        empty = [r["image_id"] for r in every.records if not len(r["labels"])]
        assert empty, "the synthetic training sets have images without objects"
        assert len(kept) == len(every) - len(empty)
        assert all(len(r["labels"]) for r in kept.records)
        assert not set(empty) & set(kept.image_ids)
    test = build_dataset(voc_cfg(synth_root), "test", train=False)  # evaluation keeps them all
    assert any(not len(r["labels"]) for r in test.records)


def test_a_training_set_without_any_box_is_a_clear_error(tmp_path):
    root = make_voc(tmp_path, 300, 200, [])
    with pytest.raises(ValueError, match=r"dataset.train \(2007_trainval\): no training image has a box"):
        build_dataset(voc_cfg(root), "train", train=True)
