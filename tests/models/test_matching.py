"""klrpn.models.matching: the batched matcher equals torchvision's Matcher exactly, the samplers
draw exactly their rule's counts, uniformly (seeded chi-square tests), and nothing waits for the
device (counted with klrpn.hostwork.HostWork)."""

import pytest
import torch
from scipy.stats import chisquare
from torch import nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, Matcher
from torchvision.ops import box_iou

from klrpn.hostwork import HostWork
from klrpn.models.matching import (BETWEEN_THRESHOLDS, BELOW_LOW_THRESHOLD, match, match_boxes,
                                   pad_per_image, sample_anchors, sample_rois)
from klrpn.models.rpn import ProposalNetwork

P_MIN = 1e-3  # chi-square tests: fixed seeds, so each p-value is one fixed number


def _boxes(n, gen, size=64, max_wh=40):
    """[n, 4] integer-cornered boxes (exact ties are common) inside [0, size + max_wh]."""
    xy = torch.randint(0, size, (n, 2), generator=gen).float()
    wh = torch.randint(1, max_wh, (n, 2), generator=gen).float()
    return torch.cat([xy, xy + wh], dim=1)


def _rpn_assignment():
    """The RPN's assignment (match_boxes with the baseline's low-quality rule, cross-border
    anchors -1)."""
    return ProposalNetwork(anchor_generator=None, head=nn.Identity(), fg_iou_thresh=0.7,
                           bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
                           pre_nms_top_n={"training": 1, "testing": 1},
                           post_nms_top_n={"training": 1, "testing": 1}, nms_thresh=0.7,
                           drop_cross_boundary=True)


def _reference_iou(gt, anchors, inside):
    iou = box_iou(gt, anchors)  # [G, N]; cross-border anchors -1: never matched
    iou[:, ~inside] = -1.0
    return iou


def _reference_matches(gt, anchors, inside, matcher):
    return matcher(_reference_iou(gt, anchors, inside))


# --- matcher ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed,g_max,n", [(0, 3, 5), (1, 6, 40), (2, 12, 300), (3, 1, 17)])
@pytest.mark.parametrize("low_quality", [True, False])
def test_match_equals_matcher_on_random_iou_with_ties_and_padding(seed, g_max, n, low_quality):
    """Random IoU matrices on a 0.1 grid: exact ties everywhere (per box and per GT) and values
    exactly at both thresholds; images with fewer GT are padded with -inf rows."""
    gen = torch.Generator().manual_seed(seed)
    counts = [g_max, 1, max(g_max // 2, 1), g_max]
    iou = torch.full((len(counts), g_max, n), float("-inf"))
    for b, g in enumerate(counts):
        iou[b, :g] = torch.randint(0, 11, (g, n), generator=gen).float() / 10  # [G_b, N]
    matches, quality = match(iou=iou, high=0.7, low=0.3, allow_low_quality_matches=low_quality)
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=low_quality)
    for b, g in enumerate(counts):
        assert torch.equal(matches[b], matcher(iou[b, :g].clone())), b
        assert torch.equal(quality[b], iou[b, :g].max(dim=0).values)


@pytest.mark.parametrize("seed,n,counts", [(0, 50, (3, 0, 1, 7)), (1, 400, (20, 5, 0, 1)),
                                           (2, 9, (1, 1, 1, 1)), (3, 1000, (50, 2, 9, 0))])
def test_match_boxes_equals_the_rpn_assignment(seed, n, counts):
    """Against torchvision's Matcher on torchvision's box_iou (equal matches, also -1 / -2) and
    ProposalNetwork.assign_targets_to_anchors is the same with the baseline's low-quality rule
    (a GT overlapping no anchor has no best anchor): equal labels and matched boxes wherever
    every GT overlaps some anchor. Anchors across the border, images without GT and duplicated
    anchors (ties)."""
    gen = torch.Generator().manual_seed(seed)
    anchors = _boxes(n, gen)
    anchors[n // 2:n // 2 + 3] = anchors[:3]  # duplicates: several anchors attain a GT's best
    sizes = torch.tensor([[95.0, 90.0]] * len(counts))  # [B, 2] (h, w)
    inside = ProposalNetwork.inside(anchors, sizes)[0]  # [N]: x2 <= 90, y2 <= 95
    gts = [_boxes(g, gen) for g in counts]
    gt_boxes, gt_valid = pad_per_image(gts)
    m = match_boxes(boxes=anchors, gt_boxes=gt_boxes, gt_valid=gt_valid, high=0.7, low=0.3,
                    allow_low_quality_matches=True, box_valid=inside)
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=True)
    rpn = _rpn_assignment()
    labels, matched = rpn.assign_targets_to_anchors(anchors, [{"boxes": g} for g in gts], sizes)
    for b, gt in enumerate(gts):
        if len(gt):
            assert torch.equal(m.matches[b], _reference_matches(gt, anchors, inside, matcher))
        else:
            assert (m.matches[b] == BELOW_LOW_THRESHOLD).all()
        overlaps_all = len(gt) == 0 or bool((box_iou(gt, anchors[inside]) > 0).any(dim=1).all())
        if overlaps_all:
            assert torch.equal(m.labels[b], labels[b])
            assert torch.equal(gt_boxes[b, m.matches[b].clamp(min=0)], matched[b])
    if any(len(g) for g in gts):
        assert (m.labels == 1).any() and (m.labels == 0).any()


def test_exact_values_at_the_thresholds_ties_and_one_gt():
    """One GT [0, 0, 10, 10]; IoUs 1, 0.7, 0.3, 0.29, 0 (exact in float32) and two equal
    second GT overlaps."""
    gt_boxes, gt_valid = pad_per_image([torch.tensor([[0.0, 0.0, 10.0, 10.0]])])
    anchors = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 7], [0, 0, 10, 3], [0, 0, 10, 2.9],
                            [20, 20, 30, 30]], dtype=torch.float32)
    m = match_boxes(boxes=anchors, gt_boxes=gt_boxes, gt_valid=gt_valid, high=0.7, low=0.3,
                    allow_low_quality_matches=True)
    assert m.quality[0].tolist() == pytest.approx([1.0, 0.7, 0.3, 0.29, 0.0])
    assert m.matches[0].tolist() == [0, 0, BETWEEN_THRESHOLDS, BELOW_LOW_THRESHOLD, BELOW_LOW_THRESHOLD]
    assert m.labels[0].tolist() == [1, 1, -1, 0, 0]
    assert torch.equal(m.matches[0], Matcher(0.7, 0.3, True)(box_iou(gt_boxes[0], anchors)))


def test_low_quality_ties_and_gt_ties():
    """GT 0's best IoU (1/3) is attained by two anchors: both become foreground, matched to their
    own best GT. Anchor 2 overlaps GT 0 and GT 1 equally: the first GT wins, as Matcher's max."""
    gts = torch.tensor([[10, 10, 20, 20], [30, 10, 40, 20]], dtype=torch.float32)
    anchors = torch.tensor([[5, 10, 15, 20], [15, 10, 25, 20], [20, 10, 30, 20],
                            [35, 10, 45, 20], [0, 50, 5, 55]], dtype=torch.float32)
    gt_boxes, gt_valid = pad_per_image([gts])
    m = match_boxes(boxes=anchors, gt_boxes=gt_boxes, gt_valid=gt_valid, high=0.7, low=0.3,
                    allow_low_quality_matches=True)
    assert torch.equal(m.matches[0], Matcher(0.7, 0.3, True)(box_iou(gts, anchors)))
    assert m.matches[0].tolist() == [0, 0, BELOW_LOW_THRESHOLD, 1, BELOW_LOW_THRESHOLD]
    assert m.labels[0].tolist() == [1, 1, 0, 1, 0]


def test_gt_overlapping_no_box():
    """torchvision's Matcher gives a GT whose every IoU is 0 all boxes of IoU 0 as low-quality
    matches (here: every anchor foreground); the baseline (anchor_target_layer.py L106) none."""
    gts = [torch.tensor([[0.0, 0.0, 4.0, 4.0]])]
    anchors = torch.tensor([[10, 10, 20, 20], [30, 30, 40, 40], [1, 1, 3, 3]], dtype=torch.float32)
    inside = torch.tensor([True, True, False])  # the only overlapping anchor crosses the border
    gt_boxes, gt_valid = pad_per_image(gts)
    kwargs = dict(boxes=anchors, gt_boxes=gt_boxes, gt_valid=gt_valid, high=0.7, low=0.3,
                  allow_low_quality_matches=True, box_valid=inside)
    m = match_boxes(**kwargs)
    assert torch.equal(m.matches[0], _reference_matches(gts[0], anchors, inside, Matcher(0.7, 0.3, True)))
    assert m.labels[0].tolist() == [1, 1, -1]
    assert match_boxes(**kwargs, low_quality_needs_overlap=True).labels[0].tolist() == [0, 0, -1]


def test_no_gt_in_the_whole_batch():
    anchors = torch.tensor([[0, 0, 10, 10], [5, 5, 50, 50]], dtype=torch.float32)
    gt_boxes, gt_valid = pad_per_image([torch.zeros(0, 4), torch.zeros(0, 4)])
    assert gt_boxes.shape == (2, 1, 4) and not gt_valid.any()
    m = match_boxes(boxes=anchors, gt_boxes=gt_boxes, gt_valid=gt_valid, high=0.7, low=0.3,
                    allow_low_quality_matches=True, box_valid=torch.tensor([True, False]))
    assert m.matches.tolist() == [[-1, -1], [-1, -1]] and m.labels.tolist() == [[0, -1], [0, -1]]
    assert (m.quality == float("-inf")).all()


def test_per_image_boxes_and_the_roi_heads_matching():
    """[B, N, 4] proposals, no low-quality matches (RoIHeads' Matcher(0.5, 0.5))."""
    gen = torch.Generator().manual_seed(5)
    proposals = torch.stack([_boxes(30, gen) for _ in range(3)])  # [3, 30, 4]
    gts = [_boxes(g, gen) for g in (4, 1, 2)]
    gt_boxes, gt_valid = pad_per_image(gts)
    m = match_boxes(boxes=proposals, gt_boxes=gt_boxes, gt_valid=gt_valid, high=0.5, low=0.5,
                    allow_low_quality_matches=False)
    for b, gt in enumerate(gts):
        assert torch.equal(m.matches[b], Matcher(0.5, 0.5, False)(box_iou(gt, proposals[b])))
    assert set(m.labels.unique().tolist()) <= {0, 1}


# --- RPN sampler ------------------------------------------------------------------------------
def _label_row(n, pos, neg):
    row = torch.full((n,), -1, dtype=torch.int64)
    row[:pos] = 1
    row[pos:pos + neg] = 0
    return row[torch.randperm(n, generator=torch.Generator().manual_seed(pos * 1000 + neg))]


# (positives, negatives) -> (kept positives, kept negatives) for 256 anchors, at most 128 positive
ANCHOR_CASES = [((300, 1000), (128, 128)), ((10, 1000), (10, 246)), ((0, 1000), (0, 256)),
                ((10, 5), (10, 5)), ((0, 0), (0, 0)), ((300, 50), (128, 50)), ((128, 128), (128, 128)),
                ((256, 2000), (128, 128)), ((129, 127), (128, 127))]


def test_anchor_sampler_counts():
    labels = torch.stack([_label_row(3000, p, q) for (p, q), _ in ANCHOR_CASES])  # [B, 3000]
    out = sample_anchors(labels=labels, batch_size_per_image=256, positive_fraction=0.5,
                         generator=torch.Generator().manual_seed(0))
    assert out.dtype == labels.dtype
    for b, (_, (pos, neg)) in enumerate(ANCHOR_CASES):
        assert (out[b] == 1).sum() == pos and (out[b] == 0).sum() == neg, ANCHOR_CASES[b]
        assert ((out[b] == 1) <= (labels[b] == 1)).all() and ((out[b] == 0) <= (labels[b] == 0)).all()
    pos_masks, neg_masks = BalancedPositiveNegativeSampler(256, 0.5)(list(labels))
    assert [int(m.sum()) for m in pos_masks] == [int(r) for r in (out == 1).sum(dim=1)]
    assert [int(m.sum()) for m in neg_masks] == [int(r) for r in (out == 0).sum(dim=1)]


def test_anchor_sampler_float_labels():
    labels = _label_row(20, 5, 5).float()[None]  # the RPN's float32 labels
    out = sample_anchors(labels=labels, batch_size_per_image=4, positive_fraction=0.5)
    assert out.dtype == torch.float32 and (out == 1).sum() == 2 and (out == 0).sum() == 2


def test_anchor_sampler_draws_uniformly():
    """10 positives (4 kept) and 20 negatives (4 kept) among 40 anchors, 3000 draws in one
    batch: each eligible anchor is kept equally often (chi-square), the ignored never."""
    draws = 3000
    labels = _label_row(40, 10, 20).expand(draws, -1)  # [D, 40]
    out = sample_anchors(labels=labels, batch_size_per_image=8, positive_fraction=0.5,
                         generator=torch.Generator().manual_seed(1))
    assert ((out == 1).sum(dim=1) == 4).all() and ((out == 0).sum(dim=1) == 4).all()
    for cls, kept in ((1, 4), (0, 4)):
        counts = (out == cls).sum(dim=0)[labels[0] == cls]  # [eligible]
        assert int(counts.sum()) == draws * kept
        assert chisquare(counts.numpy()).pvalue > P_MIN, counts
    assert (out[:, labels[0] == -1] == -1).all()


# --- RoI sampler ------------------------------------------------------------------------------
def _quality_row(n, fg, bg, ignored=0):
    """fg proposals at IoU 0.5..0.9, bg at 0..0.49, then ``ignored`` at 0.05 (bg_thresh_lo 0.1
    makes them neither), the rest invalid (padding)."""
    q = torch.cat([torch.linspace(0.5, 0.9, fg), torch.linspace(0.1, 0.49, bg), torch.full((ignored,), 0.05),
                   torch.zeros(n - fg - bg - ignored)])
    valid = torch.arange(n) < fg + bg + ignored
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(fg * 1000 + bg))
    return q[perm], valid[perm]


# (foreground, background) -> (foreground slots, background slots) for R = 128, 25 % foreground
ROI_CASES = [((50, 500), (32, 96)), ((5, 500), (5, 123)), ((0, 500), (0, 128)), ((50, 0), (128, 0)),
             ((5, 3), (5, 123)), ((1, 0), (128, 0)), ((0, 1), (0, 128)), ((32, 96), (32, 96))]


def test_roi_sampler_counts():
    rows = [_quality_row(600, f, q) for (f, q), _ in ROI_CASES] + [_quality_row(600, 0, 0)]
    quality, valid = torch.stack([q for q, _ in rows]), torch.stack([v for _, v in rows])
    s = sample_rois(quality=quality, valid=valid, batch_size_per_image=128, positive_fraction=0.25,
                    fg_thresh=0.5, bg_thresh_hi=0.5, generator=torch.Generator().manual_seed(0))
    assert s.index.shape == s.foreground.shape == s.valid.shape == (len(rows), 128)
    is_fg, is_bg = valid & (quality >= 0.5), valid & (quality < 0.5)
    for b, ((f, q), (fg_slots, bg_slots)) in enumerate(ROI_CASES):
        fg_idx, bg_idx = s.index[b, s.foreground[b]], s.index[b, ~s.foreground[b]]
        assert (len(fg_idx), len(bg_idx)) == (fg_slots, bg_slots), ROI_CASES[b]
        assert s.foreground[b, :fg_slots].all() and s.valid[b].all()  # foreground first
        assert is_fg[b, fg_idx].all() and is_bg[b, bg_idx].all()
        if q > 0:  # foreground without replacement
            assert len(fg_idx.unique()) == fg_slots
    assert not s.valid[-1].any() and not s.foreground[-1].any()  # no candidate at all


def test_roi_sampler_thresholds_and_no_gt():
    """bg_thresh_lo excludes IoU below it; -inf (an image without GT) counts as IoU 0."""
    quality, valid = _quality_row(40, 4, 10, ignored=6)
    s = sample_rois(quality=quality[None], valid=valid[None], batch_size_per_image=16,
                    positive_fraction=0.25, fg_thresh=0.5, bg_thresh_hi=0.5, bg_thresh_lo=0.1)
    picked = quality[s.index[0]]
    assert (picked[:4] >= 0.5).all() and ((picked[4:] >= 0.1) & (picked[4:] < 0.5)).all()
    assert valid[s.index[0]].all()
    no_gt = torch.full((1, 10), float("-inf"))
    s = sample_rois(quality=no_gt, valid=torch.ones(1, 10, dtype=torch.bool), batch_size_per_image=16,
                    positive_fraction=0.25, fg_thresh=0.5, bg_thresh_hi=0.5)
    assert not s.foreground.any() and s.valid.all()


def test_roi_sampler_draws_uniformly():
    """10 foreground (4 kept, without replacement) and 7 background (12 slots, with
    replacement) among 20 proposals, 3000 draws; then 10 foreground and no background (16 slots
    with replacement). Each candidate equally often (chi-square)."""
    draws = 3000
    quality, valid = _quality_row(20, 10, 7)
    gen = torch.Generator().manual_seed(2)
    s = sample_rois(quality=quality.expand(draws, -1), valid=valid.expand(draws, -1),
                    batch_size_per_image=16, positive_fraction=0.25, fg_thresh=0.5,
                    bg_thresh_hi=0.5, generator=gen)
    assert (s.foreground.sum(dim=1) == 4).all()
    fg_idx, bg_idx = s.index[:, :4], s.index[:, 4:]  # [D, 4], [D, 12]
    assert (fg_idx.sort(dim=1).values.diff(dim=1) > 0).all()  # no repeats within a draw
    fg_counts = torch.bincount(fg_idx.flatten(), minlength=20)[valid & (quality >= 0.5)]
    bg_counts = torch.bincount(bg_idx.flatten(), minlength=20)[valid & (quality < 0.5)]
    assert int(fg_counts.sum()) == draws * 4 and int(bg_counts.sum()) == draws * 12
    assert chisquare(fg_counts.numpy()).pvalue > P_MIN, fg_counts
    assert chisquare(bg_counts.numpy()).pvalue > P_MIN, bg_counts
    assert len(bg_idx[0].unique()) < 12  # 12 draws out of 7: with replacement

    quality, valid = _quality_row(20, 10, 0)
    s = sample_rois(quality=quality.expand(draws, -1), valid=valid.expand(draws, -1),
                    batch_size_per_image=16, positive_fraction=0.25, fg_thresh=0.5,
                    bg_thresh_hi=0.5, generator=gen)
    assert s.foreground.all()
    counts = torch.bincount(s.index.flatten(), minlength=20)[valid]
    assert chisquare(counts.numpy()).pvalue > P_MIN, counts


# --- no host synchronisation ------------------------------------------------------------------
def test_nothing_waits_for_the_device():
    """The whole batch's matching and both draws: no data-dependent size, no mask indexing, no
    scalar read, no tensor from Python data; torchvision's per-image path, counted the same way,
    has them (the counter sees them)."""
    gen = torch.Generator().manual_seed(0)
    anchors = _boxes(500, gen)
    gts = [_boxes(g, gen) for g in (3, 0, 8, 1)]
    inside = ProposalNetwork.inside(anchors, torch.tensor([[95.0, 90.0]]))[0]
    with HostWork() as new:
        gt_boxes, gt_valid = pad_per_image(gts)
        m = match_boxes(boxes=anchors, gt_boxes=gt_boxes, gt_valid=gt_valid, high=0.7, low=0.3,
                        allow_low_quality_matches=True, box_valid=inside)
        sample_anchors(labels=m.labels, batch_size_per_image=256, positive_fraction=0.5)
        r = match_boxes(boxes=anchors, gt_boxes=gt_boxes, gt_valid=gt_valid, high=0.5, low=0.5,
                        allow_low_quality_matches=False)
        sample_rois(quality=r.quality, valid=inside.expand(4, -1), batch_size_per_image=128,
                    positive_fraction=0.25, fg_thresh=0.5, bg_thresh_hi=0.5)
    assert new.total_syncs == 0, new.syncs
    assert not new.host_data, new.host_data
    with HostWork() as old:  # torchvision's per-image path, as the RPN trained before
        matcher, labels = Matcher(0.7, 0.3, allow_low_quality_matches=True), []
        for gt in gts:
            label = torch.zeros(len(anchors))
            if len(gt):
                idx = matcher(_reference_iou(gt, anchors, inside))
                label = (idx >= 0).float()
                label[idx == Matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(label)
        BalancedPositiveNegativeSampler(256, 0.5)(labels)
    assert old.sync_ops["nonzero"] == 3 + 4 * 2  # Matcher (3 images with GT) + sampler (2 per image)


def test_the_rpn_assignment_and_draw_wait_for_nothing():
    gen = torch.Generator().manual_seed(1)
    anchors = _boxes(500, gen)
    targets = [{"boxes": _boxes(g, gen)} for g in (3, 0, 8, 1)]
    sizes = torch.tensor([[95.0, 90.0]] * 4)
    with HostWork() as work:
        labels, _ = _rpn_assignment().assign_targets_to_anchors(anchors, targets, sizes)
        sample_anchors(labels=labels, batch_size_per_image=256, positive_fraction=0.5)
    assert work.total_syncs == 0 and not work.host_data, (work.syncs, work.host_data)
