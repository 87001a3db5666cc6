"""Matching and sampling for both stages without a host synchronisation: a whole batch at once,
fixed-size tensors and masks instead of index lists, no ``nonzero``, no boolean-mask indexing,
no ``.item()``, no Python loop over images. On a GPU none of these functions waits for the
device (``tests/models/test_matching.py`` counts it with :class:`klrpn.hostwork.HostWork`).

* :func:`match_boxes` is torchvision's ``Matcher`` (optionally with its low-quality matches)
  on a padded batch, equal to it on every image;
* :func:`sample_anchors` is the RPN's 256-anchor draw of the baseline's
  ``anchor_target_layer.py``;
* :func:`sample_rois` is the second stage's fixed 128 / 256 RoIs of the baseline's
  ``proposal_target_layer_cascade.py`` (``_sample_rois_pytorch``).

Baseline: jwyang/faster-rcnn.pytorch, ``lib/model/rpn/``; line numbers of
``anchor_target_layer.py`` at commit 1cc6121 (before PR #109) and of
``proposal_target_layer_cascade.py`` at commit 3093199. Draws use torch's global generator
unless a ``generator`` is given; they are uniform but not the baseline's (numpy) or
torchvision's (``randperm``) streams.

``klrpn.models.rpn`` and ``klrpn.models.roi_heads`` train with them; :func:`masked_mean` is
their losses' reduction over a mask.

Glossary (shapes):
    B           images in the batch
    N           boxes to match per image: the anchors (M), or the proposals (P, padded)
    G           ground-truth slots per image: the most boxes of any image (at least 1)
    R           RoIs sampled per image (``batch_size_per_image`` of the second stage)
    boxes       [N, 4] shared by the batch (anchors) or [B, N, 4]; x1y1x2y2
    box_valid   [N] or [B, N] bool; False: never matched, label -1 (an anchor across the
                image border, a padded proposal)
    gt_boxes    [B, G, 4] ground truth, padded (:func:`pad_per_image`)
    gt_valid    [B, G] bool; False: a padding slot
    iou         [B, G, N] IoU; -1 at invalid boxes, -inf at padding slots
    matches     [B, N] int64: the matched GT slot in [0, G), or BELOW_LOW_THRESHOLD (-1),
                BETWEEN_THRESHOLDS (-2): torchvision ``Matcher``'s convention
    labels      [B, N] int64: 1 foreground, 0 background, -1 ignored
    quality     [B, N] float: each box's best IoU with a real GT box; -inf if the image has none
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou

BELOW_LOW_THRESHOLD = -1  # torchvision Matcher.BELOW_LOW_THRESHOLD
BETWEEN_THRESHOLDS = -2  # torchvision Matcher.BETWEEN_THRESHOLDS
KEY_BITS = 60  # random sort keys: 60 random bits under a class code (int64, codes 0..3)


class Match(NamedTuple):
    matches: Tensor  # [B, N] int64
    labels: Tensor  # [B, N] int64
    quality: Tensor  # [B, N] float


class RoISample(NamedTuple):
    index: Tensor  # [B, R] int64 into the N proposals; foreground slots first
    foreground: Tensor  # [B, R] bool: the slot holds a foreground RoI (label = its class)
    valid: Tensor  # [B, R] bool: False only for an image with no candidate at all


def pad_per_image(tensors: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-image ``[G_i, ...]`` tensors (boxes ``[G_i, 4]``, labels ``[G_i]``) -> ``[B, G, ...]``
    (zeros after each image's own rows) and their validity ``[B, G]``; G = max(G_i, 1)."""
    g = max([1, *(t.shape[0] for t in tensors)])
    padded = torch.nn.utils.rnn.pad_sequence(list(tensors), batch_first=True)  # [B, max G_i, ...]
    trailing = (0, 0) * (padded.dim() - 2)
    padded = torch.nn.functional.pad(padded, (*trailing, 0, g - padded.shape[1]))  # [B, G, ...]
    ones = [t.new_ones(t.shape[0], dtype=torch.bool) for t in tensors]
    valid = torch.nn.utils.rnn.pad_sequence(ones, batch_first=True)  # [B, max G_i]
    return padded, torch.nn.functional.pad(valid, (0, g - valid.shape[1]))  # [B, G, ...], [B, G]


def match(*, iou: Tensor, high: float, low: float, allow_low_quality_matches: bool,
          low_quality_needs_overlap: bool = False) -> tuple[Tensor, Tensor]:
    """torchvision's ``Matcher(high, low, allow_low_quality_matches)`` applied to each image's
    ``iou[b]`` [G, N] (GT x boxes), rows of -inf being padding: ``(matches, quality)``, both
    [B, N]. Per box: its best GT (the first on ties, as ``Matcher``'s ``max``) if the IoU is
    >= ``high``, else BETWEEN_THRESHOLDS if >= ``low``, else BELOW_LOW_THRESHOLD. Low-quality
    matches: every box attaining a GT's highest IoU (all of them on ties) gets its own best GT
    back, whatever its IoU -- torchvision's ``set_low_quality_matches_`` and the baseline's
    ``anchor_target_layer.py`` L101-110. There, ``low_quality_needs_overlap`` follows the
    baseline (L106: a GT's best IoU of 0 becomes 1e-5, so a GT that overlaps no box matches
    none); by default a GT overlapping no box (every IoU 0) low-quality-matches *every* box of
    IoU 0 with it, as torchvision's ``Matcher`` does. A padding row matches nothing."""
    if iou.shape[1] == 0:  # no GT slot at all: one padding row
        iou = torch.nn.functional.pad(iou, (0, 0, 0, 1), value=float("-inf"))  # [B, 1, N]
    quality, best = iou.max(dim=1)  # [B, N] each: the best IoU and its GT (first on ties)
    matches = torch.where(quality < low, BELOW_LOW_THRESHOLD,
                          torch.where(quality < high, BETWEEN_THRESHOLDS, best))  # [B, N]
    if allow_low_quality_matches:
        gt_best = iou.amax(dim=2, keepdim=True)  # [B, G, 1]: each GT's highest IoU
        matchable = gt_best > 0 if low_quality_needs_overlap else gt_best > float("-inf")
        attains = ((iou == gt_best) & matchable).any(dim=1)  # [B, N]: the best box of some GT
        matches = torch.where(attains, best, matches)
    return matches, quality


def match_boxes(*, boxes: Tensor, gt_boxes: Tensor, gt_valid: Tensor, high: float, low: float,
                allow_low_quality_matches: bool, box_valid: Tensor | None = None,
                low_quality_needs_overlap: bool = False) -> Match:
    """IoU of ``boxes`` with each image's ground truth (torchvision's ``box_iou``, the same
    values bit for bit), then :func:`match`. Labels (``RegionProposalNetwork``'s and
    ``RoIHeads``' reading of the matches): foreground for a matched box, background below
    ``low``, ignored between the thresholds, ignored for ``box_valid`` False. Invalid boxes
    have IoU -1 with every GT, as ``ProposalNetwork.assign_targets_to_anchors`` writes for
    anchors across the border: never foreground, never a GT's best box. An image with no
    GT: every valid box background, ``matches`` BELOW_LOW_THRESHOLD, ``quality`` -inf (where
    torchvision's RPN and ``RoIHeads`` skip the ``Matcher``, which refuses an empty image)."""
    iou = box_iou(gt_boxes, boxes)  # [B, G, N] (boxes [N, 4] broadcast over the batch)
    if box_valid is not None:
        box_valid = box_valid.reshape(-1, 1, iou.shape[2])  # [B or 1, 1, N]
        iou = iou.masked_fill(~box_valid, -1.0)
    iou = iou.masked_fill(~gt_valid[:, :, None], float("-inf"))  # padding slots: [B, G, N]
    matches, quality = match(iou=iou, high=high, low=low,
                             allow_low_quality_matches=allow_low_quality_matches,
                             low_quality_needs_overlap=low_quality_needs_overlap)
    labels = torch.where(matches >= 0, 1, torch.where(matches == BELOW_LOW_THRESHOLD, 0, -1))
    if box_valid is not None:
        labels = labels.masked_fill(~box_valid[:, 0], -1)  # [B, N]
    return Match(matches, labels, quality)


def random_order(*, classes: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``classes`` [B, N] int64 codes in 0..3 -> [B, N] the positions of each row sorted by
    code, highest first, in uniformly random order within a code: random 60-bit keys under the
    code, one sort (two equal keys, probability < N^2 / 2^61, keep the sort's order)."""
    keys = torch.randint(0, 2 ** KEY_BITS, classes.shape, device=classes.device,
                         generator=generator)  # [B, N]
    return (keys + (classes << KEY_BITS)).argsort(dim=1, descending=True)  # [B, N]


def ranks(order: Tensor) -> Tensor:
    """The inverse of :func:`random_order`'s permutation: [B, N] each position's place in it."""
    places = torch.arange(order.shape[1], device=order.device).expand_as(order)  # [B, N]
    return torch.empty_like(order).scatter_(1, order, places)


def sample_anchors(*, labels: Tensor, batch_size_per_image: int, positive_fraction: float,
                   generator: torch.Generator | None = None) -> Tensor:
    """The baseline RPN's draw (``anchor_target_layer.py``): ``labels`` [B, N] (1 positive,
    0 negative, -1 ignored) -> [B, N] the same with the anchors not drawn set to -1.

    * at most ``int(positive_fraction * batch_size_per_image)`` positives (L118; 128), the
      excess ones ignored, kept uniformly at random without replacement (L125-133);
    * negatives: at most ``batch_size_per_image`` minus the positives *kept* (PR #109, merged
      2018-03-30, which counts the labels == 1 left after L133; L135 before it subtracted the
      positives counted before their cap), kept uniformly at random without replacement, the
      excess ignored (L138-144). Fewer negatives than that: all of them.

    These are also the counts of torchvision's ``BalancedPositiveNegativeSampler``."""
    positive, negative = labels == 1, labels == 0  # [B, N]
    num_pos = positive.sum(dim=1).clamp(max=int(positive_fraction * batch_size_per_image))  # [B]
    num_neg = torch.minimum(negative.sum(dim=1), batch_size_per_image - num_pos)  # [B]
    place = ranks(random_order(classes=positive.long() * 2 + negative.long(), generator=generator))
    # [B, N]: positives hold places 0 .. P-1, negatives P .. P+Q-1, each class in random order
    first_neg = positive.sum(dim=1, keepdim=True)  # [B, 1]
    keep_pos = positive & (place < num_pos[:, None])
    keep_neg = negative & (place - first_neg < num_neg[:, None])
    return torch.where(keep_pos, 1, torch.where(keep_neg, 0, -1)).to(labels.dtype)


def sample_rois(*, quality: Tensor, valid: Tensor, batch_size_per_image: int,
                positive_fraction: float, fg_thresh: float, bg_thresh_hi: float,
                bg_thresh_lo: float = 0.0,
                generator: torch.Generator | None = None) -> RoISample:
    """The baseline's second-stage draw (``proposal_target_layer_cascade.py``,
    ``_sample_rois_pytorch``): exactly R = ``batch_size_per_image`` RoIs per image from the
    ``valid`` proposals, by their best IoU ``quality`` [B, P] (:func:`match_boxes`; -inf, an
    image without GT, counts as 0, the baseline's overlap with its zero-padded GT boxes).

    * foreground: IoU >= ``fg_thresh`` (L142); background: ``bg_thresh_lo`` <= IoU <
      ``bg_thresh_hi`` (L146-147; BG_THRESH_LO is 0.0 in the baseline's cfgs/*.yml);
    * both present: ``min(max(round(positive_fraction * R), 1), F)`` foreground (L47-48, L152)
      drawn without replacement (``np.random.permutation``, L158-159), the rest of the R
      background drawn uniformly *with* replacement (``floor(rand * bg_num_rois)``, L162-169),
      however many there are;
    * foreground only: all R foreground, with replacement (L171-178); background only: all R
      background, with replacement (L179-186);
    * neither (the baseline raises, L189): ``valid`` False for the image's slots, index 0.

    Foreground slots come first, as the baseline's ``torch.cat([fg_inds, bg_inds])`` (L192)."""
    b, p = quality.shape
    if p == 0:
        raise ValueError("sample_rois needs at least one proposal slot per image")
    r = batch_size_per_image
    overlap = quality.clamp(min=0.0)  # [B, P]: no GT -> 0
    fg = valid & (overlap >= fg_thresh)  # [B, P]
    bg = valid & (overlap < bg_thresh_hi) & (overlap >= bg_thresh_lo)  # [B, P]
    num_fg, num_bg = fg.sum(dim=1), bg.sum(dim=1)  # [B] each
    max_fg = max(int(round(positive_fraction * r)), 1)  # np.round: half to even, as round()
    order = random_order(classes=fg.long() * 2 + bg.long(), generator=generator)
    # [B, P]: the F foreground positions in random order, then the Q background ones, then the rest
    fg_slots = torch.where(num_bg > 0, num_fg.clamp(max=max_fg), torch.where(num_fg > 0, r, 0))  # [B]
    slot = torch.arange(r, device=quality.device)  # [R]
    draw = torch.randint(0, 2 ** 62, (b, r), device=quality.device, generator=generator)  # [B, R]
    # uniform in [0, n) with replacement: draw % n (bias below n / 2^62)
    fg_place = torch.where((num_bg == 0)[:, None], draw % num_fg.clamp(min=1)[:, None], slot)  # [B, R]
    bg_place = num_fg[:, None] + draw % num_bg.clamp(min=1)[:, None]  # [B, R]
    foreground = slot < fg_slots[:, None]  # [B, R]
    index = order.gather(1, torch.where(foreground, fg_place, bg_place))  # [B, R]
    return RoISample(index, foreground, (num_fg + num_bg > 0)[:, None].expand(b, r))


def masked_mean(values: Tensor, mask: Tensor, count: Tensor) -> Tensor:
    """``values[mask].sum() / count`` without reading ``values`` through the mask (a host
    synchronisation): the entries outside it count as zeros (``torch.where``) and get a zero
    gradient; they must be finite for that gradient to stay finite. ``values`` [K, ...],
    ``mask`` broadcastable to it, ``count`` a tensor (no host read)."""
    return torch.where(mask, values, 0.0).sum() / count
