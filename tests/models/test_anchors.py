"""The baseline's anchors (jwyang/faster-rcnn.pytorch lib/model/rpn/generate_anchors.py) behind
torchvision's AnchorGenerator interface: exact values, order, dtype, coordinate convention."""

import numpy as np
import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from klrpn.config import load_cell
from klrpn.models import build_model
from klrpn.models.anchors import BaselineAnchorGenerator, baseline_cell_anchors

# generate_anchors.py L19-27: Shaoqing's Matlab anchors (1-based, inclusive) for base 16,
# ratios (0.5, 1, 2), scales (8, 16, 32)
MATLAB = [[-83, -39, 100, 56], [-175, -87, 192, 104], [-359, -183, 376, 200],
          [-55, -55, 72, 72], [-119, -119, 136, 136], [-247, -247, 264, 264],
          [-35, -79, 52, 96], [-79, -167, 96, 184], [-167, -343, 184, 360]]


def _generator(scales=(8, 16, 32)):
    return BaselineAnchorGenerator(scales=scales, ratios=(0.5, 1.0, 2.0), stride=16, base_size=16)


def _anchors(gen, h, w, dtype=torch.float32):
    """Anchors of a padded image h x w (stride 16) with a feature map of that image."""
    images = ImageList(torch.zeros(1, 3, h, w), [(h, w)])
    return gen(images, [torch.zeros(1, 8, h // 16, w // 16, dtype=dtype)])[0]


def test_cell_anchors_are_the_baselines_matlab_anchors():
    # a 1-based inclusive box [x1, x2] is the continuous box [x1 - 1, x2] (as VOC boxes load)
    expected = torch.tensor(MATLAB, dtype=torch.float32) - torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert _generator().cell_anchors[0].tolist() == expected.tolist()
    assert _generator().num_anchors_per_location() == [9]


def test_anchors_of_a_600x800_image():
    """600 x 800, padded to 608 x 800 (size_divisible 32): a 38 x 50 stride-16 map."""
    a = _anchors(_generator(), 608, 800)
    assert a.shape == (38 * 50 * 9, 4) and a.dtype == torch.float32
    assert a[:9].tolist() == [
        [-84, -40, 100, 56], [-176, -88, 192, 104], [-360, -184, 376, 200],   # ratio 0.5 (h / w)
        [-56, -56, 72, 72], [-120, -120, 136, 136], [-248, -248, 264, 264],   # ratio 1
        [-36, -80, 52, 96], [-80, -168, 96, 184], [-168, -344, 184, 360]]     # ratio 2
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    assert (w[0].item(), h[0].item()) == (184, 96) and (w[6].item(), h[6].item()) == (88, 176)  # scale 8
    assert (w[3].item(), h[3].item()) == (128, 128)
    # index (y * 50 + x) * 9 + a; centres at 8 + 16 i (the baseline's pixel index 7.5 + 16 i)
    assert a[(0 * 50 + 1) * 9 + 0].tolist() == [-68, -40, 116, 56]
    assert a[(1 * 50 + 0) * 9 + 4].tolist() == [-120, -104, 136, 152]
    assert a[-1].tolist() == [616, 248, 968, 952]  # x 49, y 37, ratio 2, scale 32
    ctr = (a[:, :2] + a[:, 2:]) / 2  # [M, 2]
    grid = ctr.view(38, 50, 9, 2)
    assert grid[:, :, :, 0].unique().tolist() == [8.0 + 16 * i for i in range(50)]
    assert grid[:, :, :, 1].unique().tolist() == [8.0 + 16 * i for i in range(38)]


def _baseline_numpy(scales, ratios, feat_h, feat_w, stride=16, base_size=16):
    """An independent port of the baseline: generate_anchors.py (_whctrs, _mkanchors,
    _ratio_enum, _scale_enum) and the shifts of anchor_target_layer.py; inclusive boxes."""
    def whctrs(a):
        w, h = a[2] - a[0] + 1, a[3] - a[1] + 1
        return w, h, a[0] + 0.5 * (w - 1), a[1] + 0.5 * (h - 1)

    def mkanchors(ws, hs, x, y):
        ws, hs = ws[:, None], hs[:, None]
        return np.hstack((x - 0.5 * (ws - 1), y - 0.5 * (hs - 1), x + 0.5 * (ws - 1), y + 0.5 * (hs - 1)))

    def scale_enum(anchor):
        w, h, x, y = whctrs(anchor)
        return mkanchors(w * np.array(scales), h * np.array(scales), x, y)

    w, h, x, y = whctrs(np.array([1, 1, base_size, base_size]) - 1)
    ws = np.round(np.sqrt(w * h / np.array(ratios)))  # _ratio_enum
    ratio_anchors = mkanchors(ws, np.round(ws * np.array(ratios)), x, y)
    cell = np.vstack([scale_enum(r) for r in ratio_anchors])  # ratios outer, scales inner
    sx, sy = np.meshgrid(np.arange(feat_w) * stride, np.arange(feat_h) * stride)
    shifts = np.vstack((sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel())).T
    return (cell[None, :, :] + shifts[:, None, :]).reshape(-1, 4)


@pytest.mark.parametrize("scales", [(8, 16, 32), (1, 2, 4), (4, 8, 16, 32)])
def test_every_anchor_matches_an_independent_port_of_the_baseline(scales):
    inclusive = _baseline_numpy(scales, (0.5, 1.0, 2.0), 38, 50)
    expected = torch.from_numpy(inclusive + np.array([0.0, 0.0, 1.0, 1.0])).float()  # [x1, x2 + 1]
    gen = _generator(scales)
    assert gen.num_anchors_per_location() == [3 * len(scales)]
    torch.testing.assert_close(_anchors(gen, 608, 800), expected, rtol=0, atol=0)


def test_regression_targets_and_iou_equal_the_baselines_inclusive_arithmetic():
    """The baseline's bbox_transform / bbox_overlaps (w = x2 - x1 + 1) on its inclusive boxes equal
    torchvision's BoxCoder / box_iou on the continuous boxes used here."""
    cell = baseline_cell_anchors(base_size=16, ratios=(0.5, 1.0, 2.0), scales=(8, 16, 32))
    anchors = cell + torch.tensor([160.0, 96.0, 160.0, 96.0])  # location x 10, y 6
    inclusive = anchors - torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    voc_xml = torch.tensor([[101.0, 41.0, 300.0, 180.0], [171.0, 120.0, 190.0, 170.0]], dtype=torch.float64)
    gt_here = voc_xml - torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)  # klrpn.data.voc
    gt_baseline = voc_xml - 1.0  # pascal_voc.py: every coordinate - 1

    def bbox_transform(ex, gt):  # lib/model/rpn/bbox_transform.py
        ew, eh = ex[:, 2] - ex[:, 0] + 1.0, ex[:, 3] - ex[:, 1] + 1.0
        gw, gh = gt[:, 2] - gt[:, 0] + 1.0, gt[:, 3] - gt[:, 1] + 1.0
        ex_c = ex[:, :2] + 0.5 * torch.stack([ew, eh], 1)
        gt_c = gt[:, :2] + 0.5 * torch.stack([gw, gh], 1)
        return torch.cat([(gt_c - ex_c) / torch.stack([ew, eh], 1),
                          torch.log(torch.stack([gw / ew, gh / eh], 1))], 1)

    def bbox_overlaps(a, b):  # lib/model/rpn/bbox_transform.py, [N, K]
        area = lambda x: (x[:, 2] - x[:, 0] + 1) * (x[:, 3] - x[:, 1] + 1)  # noqa: E731
        iw = (torch.min(a[:, None, 2], b[None, :, 2]) - torch.max(a[:, None, 0], b[None, :, 0]) + 1).clamp(min=0)
        ih = (torch.min(a[:, None, 3], b[None, :, 3]) - torch.max(a[:, None, 1], b[None, :, 1]) + 1).clamp(min=0)
        return iw * ih / (area(a)[:, None] + area(b)[None, :] - iw * ih)

    for g in range(2):
        ours = BoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(gt_here[g].expand(9, 4), anchors)
        torch.testing.assert_close(ours, bbox_transform(inclusive, gt_baseline[g].expand(9, 4)),
                                   rtol=0, atol=1e-12)
    torch.testing.assert_close(box_iou(anchors, gt_here), bbox_overlaps(inclusive, gt_baseline),
                               rtol=0, atol=1e-12)


def test_anchors_are_float32_on_the_feature_device_under_autocast():
    gen = _generator((1, 2, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = _anchors(gen, 128, 160, dtype=torch.bfloat16)
    assert a.dtype == torch.float32 and a.device.type == "cpu"
    torch.testing.assert_close(a, _anchors(gen, 128, 160), rtol=0, atol=0)
    with pytest.raises(ValueError, match="one feature map"):
        gen(ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)]), [torch.zeros(1, 1, 4, 4)] * 2)


def test_smoke_cells_use_the_params_scales_and_a_head_per_anchor():
    """The smoke profile's anchor_scales [1, 2, 4]: 23 x 12 .. 44 x 88 px anchors, A = 9 = the
    head's anchors per location (channel 4 a + c <-> anchor a)."""
    model = build_model(load_cell("voc07-rfcn-resnet101-klrpn", "smoke"))
    gen = model.rpn.anchor_generator
    assert isinstance(gen, BaselineAnchorGenerator) and gen.scales == (1.0, 2.0, 4.0)
    cell = gen.cell_anchors[0]
    wh = torch.stack([cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]], 1)
    assert wh.tolist() == [[23, 12], [46, 24], [92, 48], [16, 16], [32, 32], [64, 64],
                           [11, 22], [22, 44], [44, 88]]
    assert model.rpn.head.num_anchors == gen.num_anchors_per_location()[0] == 9
    assert model.rpn.head.bbox_pred.out_channels == 4 * 9
