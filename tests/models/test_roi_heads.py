"""The second stage's RoI sampling follows the baseline (jwyang/faster-rcnn.pytorch
lib/model/rpn/proposal_target_layer_cascade.py, _sample_rois_pytorch): a fixed number of RoIs per
image, background drawn with replacement."""

import pytest
import torch

from klrpn.config import load_cell
from klrpn.models import build_model
from klrpn.models.roi_heads import BaselineRoISampler


def _labels(*values):
    return torch.tensor(values, dtype=torch.int64)


def test_fixed_count_fg_without_and_bg_with_replacement():
    torch.manual_seed(0)
    sampler = BaselineRoISampler(batch_size_per_image=8, positive_fraction=0.25)  # <= 2 fg
    labels = _labels(2, 1, -1, 3, 0, -1)  # fg at 0, 1, 3; one background at 4; 2 and 5 ignored
    (idx,) = sampler([labels])
    assert len(idx) == 8
    fg, bg = idx[:2], idx[2:]
    assert set(fg.tolist()) <= {0, 1, 3} and len(set(fg.tolist())) == 2  # no repeats
    assert bg.tolist() == [4] * 6  # the one background RoI fills the batch


def test_many_backgrounds_are_drawn_with_replacement():
    torch.manual_seed(0)
    sampler = BaselineRoISampler(batch_size_per_image=512, positive_fraction=0.25)
    labels = torch.zeros(1000, dtype=torch.int64)
    labels[:3] = 1
    (idx,) = sampler([labels])
    assert len(idx) == 512 and sorted(idx[:3].tolist()) == [0, 1, 2]
    bg = idx[3:]
    assert (labels[bg] == 0).all()
    assert len(bg.unique()) < len(bg)  # 509 draws out of 997: repeats (p(none) < 1e-50)


def test_only_foreground_or_only_background_fills_the_batch():
    torch.manual_seed(0)
    sampler = BaselineRoISampler(batch_size_per_image=6, positive_fraction=0.5)
    only_fg, only_bg, nothing = sampler([_labels(1, 2, -1), _labels(0, -1, 0), _labels(-1)])
    assert len(only_fg) == 6 and set(only_fg.tolist()) <= {0, 1}
    assert len(only_bg) == 6 and set(only_bg.tolist()) <= {0, 2}
    assert nothing.tolist() == []


def test_fg_quota_rounds_as_the_baseline():
    # int(np.round(FG_FRACTION * rois_per_image)), at least 1
    assert BaselineRoISampler(batch_size_per_image=128, positive_fraction=0.25).max_fg == 32
    assert BaselineRoISampler(batch_size_per_image=32, positive_fraction=0.25).max_fg == 8
    assert BaselineRoISampler(batch_size_per_image=2, positive_fraction=0.25).max_fg == 1  # round(0.5) = 0


@pytest.mark.parametrize("cell", ["voc0712-faster_rcnn-vgg16-rpn"])
def test_detection_heads_sample_a_fixed_number_and_average_over_it(cell):
    torch.manual_seed(0)
    cfg = load_cell(cell, "smoke")
    heads = build_model(cfg).roi_heads
    n = cfg["model"]["roi"]["batch_size_per_image"]
    proposals = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [60.0, 60.0, 90.0, 90.0]]),  # 1 bg (+ GT)
                 torch.tensor([[5.0, 5.0, 50.0, 50.0]])]                               # 1 fg (+ GT)
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.tensor([[4.0, 4.0, 50.0, 52.0]]), "labels": torch.tensor([1])}]
    rois, _, labels, deltas = heads.select_training_samples(proposals, targets)
    assert [len(r) for r in rois] == [n, n]
    assert (labels[0] == 2).sum().item() == 1 and (labels[0] == 0).sum().item() == n - 1
    assert set(map(tuple, rois[0][labels[0] == 0].tolist())) <= {(0.0, 0.0, 20.0, 20.0), (60.0, 60.0, 90.0, 90.0)}
    assert (labels[1] == 1).all()  # no background candidate: the two foreground RoIs fill the batch
    # the loss averages over all 2 n sampled RoIs (the baseline's mean over rois_per_image)
    c = cfg["dataset"]["num_classes"] + 1
    losses = heads.compute_loss(torch.zeros(2 * n, c), torch.zeros(2 * n, 4 * c),
                                torch.cat(labels), torch.cat(deltas))
    fg = torch.cat(labels) > 0
    expected = torch.nn.functional.smooth_l1_loss(torch.zeros_like(torch.cat(deltas)[fg]), torch.cat(deltas)[fg],
                                                  beta=1.0, reduction="sum") / (2 * n)
    torch.testing.assert_close(losses["loss_reg"], expected)
    torch.testing.assert_close(losses["loss_cls"], torch.log(torch.tensor(float(c))))
