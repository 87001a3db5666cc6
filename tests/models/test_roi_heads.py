"""The second stage's training samples and loss: the baseline's fixed number of RoIs per image
(jwyang/faster-rcnn.pytorch lib/model/rpn/proposal_target_layer_cascade.py, _sample_rois_pytorch;
the draw's rules are tested in test_matching.py), ground truth among the candidates, padding
never drawn, and a masked loss equal to the one computed on the sampled RoIs alone."""

import pytest
import torch
import torch.nn.functional as F

from klrpn.config import load_cell
from klrpn.hostwork import HostWork
from klrpn.models import build_model
from klrpn.models.rpn import ProposalBatch


def _batch(per_image, slots):
    """A ProposalBatch of ``slots`` per image from lists of boxes (the rest padding)."""
    boxes, valid = torch.zeros(len(per_image), slots, 4), torch.zeros(len(per_image), slots, dtype=torch.bool)
    for i, b in enumerate(per_image):
        boxes[i, :len(b)], valid[i, :len(b)] = torch.tensor(b), True
    return ProposalBatch(boxes, valid)


@pytest.mark.parametrize("cell", ["voc0712-faster_rcnn-vgg16-rpn"])
def test_detection_heads_sample_a_fixed_number_and_average_over_it(cell):
    torch.manual_seed(0)
    cfg = load_cell(cell, "smoke")
    heads = build_model(cfg).roi_heads
    n = cfg["model"]["roi"]["batch_size_per_image"]
    proposals = _batch([[[0.0, 0.0, 20.0, 20.0], [60.0, 60.0, 90.0, 90.0]],  # 1 bg (+ GT)
                        [[5.0, 5.0, 50.0, 50.0]]], slots=3)                   # 1 fg (+ GT), padding
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.tensor([[4.0, 4.0, 50.0, 52.0]]), "labels": torch.tensor([1])}]
    heads.select_training_samples(proposals, targets)  # makes the box coder's weights tensor
    with HostWork() as work:  # then nothing more from the host, and no sync
        rois, labels, deltas = heads.select_training_samples(proposals, targets)
    assert work.total_syncs == 0 and not work.host_data, (work.syncs, work.host_data)
    assert rois.shape == (2 * n, 5) and labels.shape == (2 * n,) and deltas.shape == (2 * n, 4)
    assert rois[:n, 0].eq(0).all() and rois[n:, 0].eq(1).all()  # image index column
    first, second = labels[:n], labels[n:]
    assert (first == 2).sum().item() == 1 and (first == 0).sum().item() == n - 1
    assert set(map(tuple, rois[:n][first == 0, 1:].tolist())) <= {(0.0, 0.0, 20.0, 20.0), (60.0, 60.0, 90.0, 90.0)}
    # no background candidate (the padding is none): the two foreground RoIs fill the batch
    assert (second == 1).all()
    assert set(map(tuple, rois[n:, 1:].tolist())) <= {(5.0, 5.0, 50.0, 50.0), (4.0, 4.0, 50.0, 52.0)}
    assert (deltas[labels == 0] == 0).all() and (deltas[labels > 0] != 0).any()
    # the loss averages over all 2 n sampled RoIs (the baseline's mean over rois_per_image)
    c = cfg["dataset"]["num_classes"] + 1
    losses = heads.compute_loss(torch.zeros(2 * n, c), torch.zeros(2 * n, 4 * c), labels, deltas)
    fg = labels > 0
    expected = F.smooth_l1_loss(torch.zeros_like(deltas[fg]), deltas[fg], beta=1.0, reduction="sum") / (2 * n)
    torch.testing.assert_close(losses["loss_reg"], expected)
    torch.testing.assert_close(losses["loss_cls"], torch.log(torch.tensor(float(c))))


@pytest.mark.parametrize("agnostic", [False, True])
def test_masked_loss_equals_the_loss_of_the_sampled_rois(agnostic):
    """Labels -1 (slots of an image without candidates) count nowhere; the rest as the loss
    computed on the sampled RoIs alone, with the same gradients."""
    cfg = load_cell("voc0712-faster_rcnn-vgg16-rpn", "smoke")
    heads = build_model(cfg).roi_heads
    heads.class_agnostic = agnostic
    g = torch.Generator().manual_seed(4)
    r, c = 64, cfg["dataset"]["num_classes"] + 1
    labels = torch.randint(-1, c, (r,), generator=g)
    logits = torch.randn(r, c, generator=g, requires_grad=True)
    deltas = torch.randn(r, 4 if agnostic else 4 * c, generator=g, requires_grad=True)
    gt_deltas = torch.where((labels > 0)[:, None], torch.randn(r, 4, generator=g), 0.0)
    losses = heads.compute_loss(logits, deltas, labels, gt_deltas)
    keep = labels >= 0
    lab, d = labels[keep], deltas[keep].reshape(int(keep.sum()), -1, 4)
    fg = lab > 0
    cls = torch.zeros_like(lab[fg]) if agnostic else lab[fg]
    ref = {"loss_cls": F.cross_entropy(logits[keep], lab),
           "loss_reg": F.smooth_l1_loss(d[fg, cls], gt_deltas[keep][fg], beta=heads.smooth_l1_beta,
                                        reduction="sum") / len(lab)}
    for k in ref:
        torch.testing.assert_close(losses[k], ref[k], rtol=2e-6, atol=0.0)
    grads = torch.autograd.grad(sum(losses.values()), (logits, deltas))
    ref_grads = torch.autograd.grad(sum(ref.values()), (logits, deltas))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-9)
