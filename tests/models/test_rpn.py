"""The baseline RPN and KL-RPN: heads, assignment, losses and ranking, on tiny inputs."""

import math

import pytest
import torch

from klrpn.models.anchors import BaselineAnchorGenerator
from klrpn.models.rpn import KLRPN, BaselineRPN, BaselineRPNHead, KLRPNHead


def _rpn(kind="klrpn", drop_cross_boundary=True, in_channels=8, pre_nms_top_n=100, post_nms_top_n=20):
    common = dict(
        anchor_generator=BaselineAnchorGenerator(scales=(2, 4, 8), ratios=(0.5, 1.0, 2.0), stride=16),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n={"training": pre_nms_top_n, "testing": pre_nms_top_n},
        post_nms_top_n={"training": post_nms_top_n, "testing": post_nms_top_n},
        nms_thresh=0.7, drop_cross_boundary=drop_cross_boundary)
    if kind == "rpn":
        head = BaselineRPNHead(in_channels=in_channels, channels=16, num_anchors=9, init_std=0.01)
        return BaselineRPN(head=head, smooth_l1_beta=1 / 9, **common)
    head = KLRPNHead(in_channels=in_channels, channels=16, num_anchors=9, init_std=0.01, new_init_std=1e-5)
    return KLRPN(head=head, gamma=0.5, neg_var=1 / 3, score_eps=1e-12, **common)


def test_head_shapes_and_outputs_per_anchor():
    x = torch.randn(2, 8, 5, 7)
    base = BaselineRPNHead(in_channels=8, channels=16, num_anchors=9, init_std=0.01)
    assert base.cls_logits.out_channels == 18 and base.bbox_pred.out_channels == 36  # 2A, 4A
    out = base(x)
    assert out["logits"].shape == (2, 5 * 7 * 9, 2) and out["deltas"].shape == (2, 5 * 7 * 9, 4)
    kl = KLRPNHead(in_channels=8, channels=16, num_anchors=9, init_std=0.01, new_init_std=1e-5)
    assert kl.bbox_pred.out_channels == 36 and kl.log_var_pred.out_channels == 36  # 4A mu, 4A beta
    out = kl(x)
    assert out["deltas"].shape == out["log_var"].shape == (2, 5 * 7 * 9, 4)


def test_baseline_logit_layout_matches_anchor_order():
    """Channel a is anchor a's background logit and channel A + a its foreground logit."""
    head = BaselineRPNHead(in_channels=1, channels=1, num_anchors=3, init_std=0.01)
    with torch.no_grad():
        head.conv.weight.fill_(1.0)
        head.conv.bias.zero_()
        head.cls_logits.weight.zero_()
        head.cls_logits.bias.copy_(torch.tensor([0.0, 1.0, 2.0, 10.0, 11.0, 12.0]))
    logits = head(torch.ones(1, 1, 2, 2))["logits"]  # [1, 2*2*3, 2]
    assert logits[0, :3].tolist() == [[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]]
    assert logits[0, 3:6].tolist() == [[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]]


def test_new_klrpn_layer_is_initialised_at_1e_5():
    torch.manual_seed(0)
    head = KLRPNHead(in_channels=512, channels=512, num_anchors=9, init_std=0.01, new_init_std=1e-5)
    assert head.log_var_pred.weight.std().item() == pytest.approx(1e-5, rel=0.05)
    assert head.bbox_pred.weight.std().item() == pytest.approx(1e-2, rel=0.05)
    assert head.log_var_pred.bias.abs().max().item() == 0.0


def test_klrpn_loss_hand_computed():
    rpn = _rpn("klrpn")
    pred = {"deltas": torch.zeros(1, 3, 4), "log_var": torch.zeros(1, 3, 4)}
    pred["deltas"][0, 2] = 50.0  # an ignored anchor: must not count
    gt = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [9, 9, 9, 9]])
    pos = torch.tensor([True, False, False])
    neg = torch.tensor([False, True, False])
    # positive: eq. 7 on x = 1 * 0.5 * 1 / 2 = 0.25; negative: eq. 4, 4 x (1/3) / 2 = 2/3
    loss = rpn.compute_loss(pred, gt, pos, neg)["loss_kl"]
    assert loss.item() == pytest.approx((0.25 + 2 / 3) / 2, abs=1e-7)


def test_baseline_loss_hand_computed():
    rpn = _rpn("rpn")
    pred = {"logits": torch.zeros(1, 3, 2), "deltas": torch.zeros(1, 3, 4)}
    gt = torch.tensor([[1.0, 0.05, 0, 0], [0, 0, 0, 0], [9, 9, 9, 9]])
    pos = torch.tensor([True, False, False])
    neg = torch.tensor([False, True, False])
    losses = rpn.compute_loss(pred, gt, pos, neg)
    assert losses["loss_rpn_cls"].item() == pytest.approx(math.log(2), abs=1e-7)
    # smooth-L1 (beta 1/9): |1| -> 1 - 1/18; |0.05| -> 0.5 * 0.05^2 * 9; / 2 sampled anchors
    assert losses["loss_rpn_reg"].item() == pytest.approx((1 - 1 / 18 + 0.5 * 0.0025 * 9) / 2, abs=1e-7)


def _masked_reference(kind, pred, gt, pos, neg):
    """The losses read through boolean masks: only the sampled anchors computed."""
    from klrpn.losses import kl_neg_loss, kl_pos_loss

    if kind == "rpn":
        logits, deltas, sampled = pred["logits"].reshape(-1, 2), pred["deltas"].reshape(-1, 4), pos | neg
        return [torch.nn.functional.cross_entropy(logits[sampled], pos[sampled].long()),
                torch.nn.functional.smooth_l1_loss(deltas[pos], gt[pos], beta=1 / 9, reduction="sum")
                / sampled.sum().clamp(min=1)]
    mu, log_var = pred["deltas"].reshape(-1, 4), pred["log_var"].reshape(-1, 4)
    return [(kl_pos_loss(mu[pos], log_var[pos], gt[pos], 0.5).sum()
             + kl_neg_loss(mu[neg], log_var[neg], 0.5, 1 / 3).sum()) / (pos | neg).sum().clamp(min=1)]


@pytest.mark.parametrize("kind", ["rpn", "klrpn"])
def test_dense_losses_equal_masked_reads_without_a_sync(kind, dispatched):
    g = torch.Generator().manual_seed(3)
    m = 2 * 300  # two images' anchors
    names = ["logits", "deltas"] if kind == "rpn" else ["deltas", "log_var"]
    pred = {k: torch.randn(2, 300, 2 if k == "logits" else 4, generator=g) for k in names}
    gt = torch.randn(m, 4, generator=g)
    label = torch.randint(-1, 2, (m,), generator=g)
    pos, neg = label == 1, label == 0
    ours = {k: v.clone().requires_grad_(True) for k, v in pred.items()}
    with dispatched() as ops:
        losses = list(_rpn(kind).compute_loss(ours, gt, pos, neg).values())
        sum(losses).backward()
    ref = {k: v.clone().requires_grad_(True) for k, v in pred.items()}
    ref_losses = _masked_reference(kind, ref, gt, pos, neg)
    sum(ref_losses).backward()
    # the same numbers up to the order of a float sum over more (zero) terms
    for a, b in zip(losses, ref_losses):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=0.0)
    for k in names:
        torch.testing.assert_close(ours[k].grad, ref[k].grad, rtol=2e-6, atol=1e-9)
    assert ops.names.count("nonzero") == 0 and ops.mask_reads == 0


def test_assignment_thresholds_best_anchor_and_cross_boundary():
    rpn = _rpn("klrpn")
    anchors = torch.tensor([
        [0.0, 0.0, 100.0, 100.0],    # IoU 1.0 with the GT -> positive
        [0.0, 0.0, 100.0, 60.0],     # IoU 0.6 -> ignored
        [0.0, 0.0, 100.0, 20.0],     # IoU 0.2 -> negative
        [150.0, 150.0, 190.0, 190.0],  # IoU 0 -> negative
        [-10.0, 0.0, 90.0, 100.0],   # crosses the left border -> ignored
        [160.0, 0.0, 200.0, 45.0],   # best anchor of the second GT (IoU 0.5) -> positive
    ])
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 100.0, 100.0], [160.0, 0.0, 200.0, 90.0]]),
                "labels": torch.tensor([1, 1])}]
    sizes = torch.tensor([[200.0, 200.0]])
    labels, matched = rpn.assign_targets_to_anchors(anchors, targets, sizes)
    assert labels[0].tolist() == [1, -1, 0, 0, -1, 1]
    assert matched[0][5].tolist() == [160.0, 0.0, 200.0, 90.0]
    rpn_all = _rpn("klrpn", drop_cross_boundary=False)
    labels, _ = rpn_all.assign_targets_to_anchors(anchors, targets, sizes)
    assert labels[0][4].item() == 1  # IoU 0.82 once cross-boundary anchors are kept


def test_assignment_without_objects_is_all_negative_inside():
    rpn = _rpn("rpn")
    anchors = torch.tensor([[0.0, 0.0, 50.0, 50.0], [-5.0, 0.0, 50.0, 50.0]])
    labels, _ = rpn.assign_targets_to_anchors(
        anchors, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}],
        torch.tensor([[100.0, 100.0]]))
    assert labels[0].tolist() == [0, -1]


def test_inside_is_the_baselines_test_on_inclusive_boxes():
    """anchor_target_layer.py keeps x1 >= 0, y1 >= 0, x2 < W, y2 < H of the inclusive box
    [x1, x2] = continuous [x1, x2 + 1]."""
    anchors = torch.tensor([[0.0, 0.0, 100.0, 80.0],     # inclusive x2 99 < 100: inside
                            [0.0, 0.0, 100.5, 80.0],     # 99.5 < 100: inside
                            [0.0, 0.0, 101.0, 80.0],     # 100: outside
                            [-0.5, 0.0, 50.0, 50.0],     # x1 < 0: outside
                            [0.0, 0.0, 50.0, 81.0]])     # y2 80 = H: outside
    inside = BaselineRPN.inside(anchors, torch.tensor([[80.0, 100.0], [80.0, 101.0]]))  # [2, 5]
    assert inside.tolist() == [[True, True, False, False, False], [True, True, True, False, False]]


def test_klrpn_ranks_proposals_by_lowest_variance():
    rpn = _rpn("klrpn").eval()
    boxes = torch.tensor([[[0.0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 90, 90]]])
    log_var = torch.tensor([[[0.0] * 4, [-3.0] * 4, [2.0] * 4]])
    scores = rpn.score({"log_var": log_var})
    out = rpn.filter_proposals_per_image(boxes, scores, {"log_var": log_var}, [(100, 100)])[0]
    assert out["boxes"].tolist() == [[20, 20, 40, 40], [0, 0, 10, 10], [50, 50, 90, 90]]
    assert out["log_var"][0].tolist() == [-3.0] * 4
    # log of eq. 10: -log(exp(-6) + 1e-12)
    assert out["scores"][0].item() == pytest.approx(6.0, abs=1e-5)


def test_baseline_scores_are_foreground_softmax():
    rpn = _rpn("rpn")
    logits = torch.tensor([[[0.0, 2.0], [1.0, 0.0]]])
    torch.testing.assert_close(rpn.score({"logits": logits}), logits.softmax(-1)[..., 1])


def test_klrpn_forward_on_a_feature_map_trains():
    torch.manual_seed(0)
    rpn = _rpn("klrpn", in_channels=8)
    from torchvision.models.detection.image_list import ImageList

    images = ImageList(torch.zeros(1, 3, 128, 128), [(128, 128)])
    feats = {"0": torch.randn(1, 8, 8, 8)}
    targets = [{"boxes": torch.tensor([[16.0, 16.0, 80.0, 80.0]]), "labels": torch.tensor([1])}]
    proposals, losses = rpn(images, feats, targets)
    assert set(losses) == {"loss_kl"} and torch.isfinite(losses["loss_kl"])
    # at initialisation beta ~ 0, mu ~ 0: negatives give 4 * (1/3) / 2 each, positives less
    assert 0.3 < losses["loss_kl"].item() < 0.7
    assert proposals.boxes.shape == (1, 20, 4) and proposals.valid.shape == (1, 20)
    assert proposals.valid.any()


def test_klrpn_mean_sigma_score_rule():
    """The ablation's ranking: minus the mean of the four sigmas (params model.klrpn.score)."""
    rpn = _rpn("klrpn")
    rpn.score_rule = "mean_sigma"
    log_var = torch.log(torch.tensor([[[1.0, 4.0, 9.0, 16.0], [0.25, 0.25, 0.25, 0.25]]]))
    torch.testing.assert_close(rpn.score({"log_var": log_var}), torch.tensor([[-2.5, -0.5]]))
    # the two rules can rank differently: sigmas (0.1, 0.1, 0.1, 10) beat (1, 1, 1, 1) by
    # eq. 10 (product 0.01 < 1) and lose by the mean (2.575 > 1)
    log_var = torch.log(torch.tensor([[[0.01, 0.01, 0.01, 100.0], [1.0, 1.0, 1.0, 1.0]]]))
    assert rpn.score({"log_var": log_var}).argmax().item() == 1
    rpn.score_rule = "eq10"
    assert rpn.score({"log_var": log_var}).argmax().item() == 0
    with pytest.raises(ValueError, match="score_rule"):
        KLRPN(head=rpn.head, gamma=0.5, neg_var=1 / 3, score_eps=1e-12, score_rule="median",
              anchor_generator=rpn.anchor_generator, fg_iou_thresh=0.7, bg_iou_thresh=0.3,
              batch_size_per_image=256, positive_fraction=0.5, pre_nms_top_n={"training": 1, "testing": 1},
              post_nms_top_n={"training": 1, "testing": 1}, nms_thresh=0.7,
              drop_cross_boundary=True)


def test_build_model_passes_the_score_rule():
    from klrpn.config import load_cell
    from klrpn.models import build_model

    cfg = load_cell("voc0712-faster_rcnn-vgg16-klrpn--meansigma", "smoke")
    assert build_model(cfg, load_pretrained=False).rpn.score_rule == "mean_sigma"
    cfg = load_cell("voc0712-faster_rcnn-vgg16-klrpn", "smoke")
    assert build_model(cfg, load_pretrained=False).rpn.score_rule == "eq10"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_proposal_filter_equals_the_per_image_one(seed, dispatched):
    """One NMS for the batch (images shifted apart) keeps, per image and in order, the boxes of
    the per-image filter (clip, drop < 1e-3 px, NMS, top-k), padded; its only sync is the NMS.
    Boxes on an integer grid with distinct scores: no IoU lands within float rounding of 0.7."""
    g = torch.Generator().manual_seed(seed)
    n, m = 3, 400
    rpn = _rpn("rpn", pre_nms_top_n=300, post_nms_top_n=250)
    xy = torch.randint(-20, 120, (n, m, 2), generator=g).float()
    wh = torch.randint(0, 60, (n, m, 2), generator=g).float()
    boxes = torch.cat([xy, xy + wh], dim=2)  # [N, M, 4], some empty, some across the border
    scores = torch.rand(n, m, generator=g)
    image_sizes = [(100, 110), (90, 130), (120, 100)]
    sizes = torch.tensor(image_sizes, dtype=torch.float32)
    reference = rpn.filter_proposals_per_image(boxes, scores, {}, image_sizes)
    with dispatched() as ops:
        batch = rpn.filter_proposals(boxes, scores, sizes)
    assert ops.names.count("nms") == 1 and ops.names.count("nonzero") == 0 and ops.mask_reads == 0
    assert batch.boxes.shape == (n, 250, 4) and batch.valid.shape == (n, 250)
    for i, ref in enumerate(reference):
        k = len(ref["boxes"])
        assert batch.valid[i, :k].all() and not batch.valid[i, k:].any(), i
        assert torch.equal(batch.boxes[i, :k], ref["boxes"]), i
        assert (batch.boxes[i, k:] == 0).all()
    assert all(len(r["boxes"]) < 250 for r in reference)  # padding is exercised
