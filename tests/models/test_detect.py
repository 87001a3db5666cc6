"""``TwoStageDetector.detect``: detections and proposals from one pass, equal to the two
passes evaluation used to make (``model(images)`` and ``model.propose(images)``)."""

import pytest
import torch

from klrpn.config import load_cell
from klrpn.models import build_model


@pytest.mark.parametrize("cell", ["voc07-rfcn-resnet101-klrpn", "coco-faster_rcnn-vgg16-rpn"])
def test_detect_equals_forward_and_propose(cell):
    torch.manual_seed(0)
    model = build_model(load_cell(cell, "smoke"), load_pretrained=False).eval()
    images = [torch.rand(3, 100, 140), torch.rand(3, 130, 90)]
    with torch.no_grad():
        detections, proposals = model.detect(images)
        expected_detections, expected_proposals = model(images), model.propose(images)
    assert len(detections) == len(proposals) == 2
    for got, want in zip(detections, expected_detections):
        assert got.keys() == want.keys() and len(got["boxes"]) > 0
        assert all(torch.equal(got[k], want[k]) for k in want)
    for got, want, image in zip(proposals, expected_proposals, images):
        assert got.keys() == want.keys() and len(got["boxes"]) > 0
        assert all(torch.equal(got[k], want[k]) for k in want)
        h, w = image.shape[-2:]  # in input-image pixels
        assert got["boxes"][:, 2].max() <= w and got["boxes"][:, 3].max() <= h
