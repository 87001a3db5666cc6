"""A tiny in-memory COCO ground truth for the metric tests."""

from __future__ import annotations

import contextlib
import io

import pytest
from pycocotools.coco import COCO


def make_coco(images, annotations, categories):
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@pytest.fixture
def tiny_gt():
    """Two 200x200 images; category ids 2 and 9. Image 1: a 20x20 box of category 2 at
    (10, 10) and a crowd region; image 2: a 100x100 box of category 9."""
    images = [{"id": i, "width": 200, "height": 200} for i in (1, 2)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [100, 100, 50, 50], "area": 2500, "iscrowd": 1},
        {"id": 3, "image_id": 2, "category_id": 9, "bbox": [50, 50, 100, 100], "area": 10000, "iscrowd": 0},
    ]
    return make_coco(images, anns, [{"id": 2, "name": "x"}, {"id": 9, "name": "y"}])
