"""Region proposal networks: the baseline RPN and KL-RPN (paper §2).

Both share the baseline's anchors (``klrpn.models.anchors``), its anchor assignment and
256-anchor draw (``klrpn.models.matching``, the whole batch at once), torchvision's box coding
(``klrpn.models.box_coder``) and NMS, and differ in the head, the loss and the objectness that
ranks proposals for NMS. All box tensors are float32, also under autocast (only the head's
convolutions run in bf16/fp16).

Glossary (N images, A anchors per location, H x W feature map, M = H*W*A anchors per image):
    anchors            [M, 4] x1y1x2y2 in transformed-image pixels, shared by the N images
    sizes              [N, 2] float32 (h, w) of each transformed image
    pred_logits        [N, M, 2] background/foreground logits (baseline RPN)
    pred_deltas        [N, M, 4] box-coder offsets (x, y, w, h); for KL-RPN the Gaussian means mu
    pred_log_var       [N, M, 4] KL-RPN's beta = log(sigma^2) per offset
    gt_labels          [N, M]: 1 positive, 0 negative, -1 ignored
    pos, neg           [N*M] bool: the sampled positive / negative anchors
    gt_deltas          [N*M, 4] box-coder offsets of each positive anchor's matched ground truth
                       (0 for the others)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import boxes as box_ops

from klrpn.losses import kl_neg_loss, kl_pos_loss, objectness
from klrpn.models.box_coder import BoxCoder
from klrpn.models.matching import masked_mean, match_boxes, pad_per_image, sample_anchors


class BaselineRPNHead(nn.Module):
    """The baseline's RPN head: 3x3 conv + ReLU, a 1x1 conv with 2A softmax logits
    (background/foreground per anchor) and a 1x1 conv with 4A offsets."""

    def __init__(self, *, in_channels: int, channels: int, num_anchors: int, init_std: float):
        super().__init__()
        self.num_anchors = num_anchors
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(channels, 2 * num_anchors, 1)
        self.bbox_pred = nn.Conv2d(channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):  # baseline normal_init(., 0, 0.01)
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        t = F.relu(self.conv(x))
        n, _, h, w = x.shape
        a = self.num_anchors
        # [N, 2A, H, W]: channels [0, A) background, [A, 2A) foreground (the baseline's layout)
        logits = self.cls_logits(t).view(n, 2, a, h, w).permute(0, 3, 4, 2, 1).reshape(n, h * w * a, 2)
        deltas = self.bbox_pred(t).view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, h * w * a, 4)
        return {"logits": logits, "deltas": deltas}  # [N, M, 2], [N, M, 4]


class KLRPNHead(nn.Module):
    """KL-RPN's head (paper Fig. 2): 3x3 conv + ReLU, a 1x1 conv with the 4A Gaussian means
    mu and a 1x1 conv with the 4A log-variances beta; no classification branch."""

    def __init__(self, *, in_channels: int, channels: int, num_anchors: int,
                 init_std: float, new_init_std: float):
        super().__init__()
        self.num_anchors = num_anchors
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.bbox_pred = nn.Conv2d(channels, 4 * num_anchors, 1)
        self.log_var_pred = nn.Conv2d(channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.bbox_pred):  # the RPN's layers keep the baseline init
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)
        # paper §3.1: the additional parameters (the log-variance branch KL-RPN adds to the RPN)
        # ~ N(0, 0.00001), read as std (the baseline's normal_init convention): sigma starts at ~1
        nn.init.normal_(self.log_var_pred.weight, std=new_init_std)
        nn.init.zeros_(self.log_var_pred.bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        t = F.relu(self.conv(x))
        n, _, h, w = x.shape
        a = self.num_anchors
        deltas = self.bbox_pred(t).view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, h * w * a, 4)
        log_var = self.log_var_pred(t).view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, h * w * a, 4)
        return {"deltas": deltas, "log_var": log_var}  # [N, M, 4] each


class ProposalBatch(NamedTuple):
    """The training proposals of a batch, padded to ``post_nms_top_n`` per image (the RoI
    head reads them without a host synchronisation)."""

    boxes: Tensor  # [N, P, 4] float32, zeros at padding
    valid: Tensor  # [N, P] bool: False at padding (an image with fewer proposals)


class ProposalNetwork(RegionProposalNetwork):
    """RPN on one stride-16 feature map: predict, decode, rank, NMS; in training assign
    anchors (IoU >= fg / best anchor of a GT -> positive, IoU < bg -> negative), sample and
    compute the loss. Subclasses define ``compute_loss`` and ``score``.

    Training runs on the whole batch at once with fixed-size tensors (``klrpn.models.matching``
    for the matching and the 256-anchor draw, one NMS for all images, masked losses): its only
    host synchronisation is the NMS. Evaluation keeps torchvision's per-image proposal filter
    (:meth:`filter_proposals_per_image`), exactly the baseline's proposal layer."""

    def __init__(self, *, anchor_generator, head: nn.Module, fg_iou_thresh: float,
                 bg_iou_thresh: float, batch_size_per_image: int, positive_fraction: float,
                 pre_nms_top_n: dict[str, int], post_nms_top_n: dict[str, int],
                 nms_thresh: float, drop_cross_boundary: bool):
        super().__init__(anchor_generator, head, fg_iou_thresh, bg_iou_thresh,
                         batch_size_per_image, positive_fraction, pre_nms_top_n,
                         post_nms_top_n, nms_thresh)
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))  # torchvision's, no host copies
        self.fg_iou_thresh, self.bg_iou_thresh = fg_iou_thresh, bg_iou_thresh
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.drop_cross_boundary = drop_cross_boundary

    def forward(self, images, features: dict[str, Tensor], targets=None):
        """Training: ``(ProposalBatch, losses)``; evaluation: ``(proposals, {})`` with
        proposals[i] = {"boxes" [K, 4], "scores" [K], ...} per image."""
        (feature,) = features.values()
        # box geometry in float32 (bf16 under autocast would round a 900 px box by +-2 px): the
        # head's outputs are cast once, so decoding, ranking, NMS, target encoding and the
        # losses all run in float32; the anchors are float32 already (BaselineAnchorGenerator)
        pred = {k: v.float() for k, v in self.head(feature).items()}
        anchors = self.anchor_generator.grid(feature)  # [M, 4], shared by the images
        boxes = self.box_coder.decode_single(pred["deltas"].detach(), anchors)  # [N, M, 4]
        scores = self.score(pred).detach()  # [N, M], higher = better
        if not self.training:
            return self.filter_proposals_per_image(boxes, scores, pred, images.image_sizes), {}
        sizes = image_sizes_on(images.image_sizes, feature.device)  # [N, 2] (h, w)
        proposals = self.filter_proposals(boxes, scores, sizes)
        gt_labels, gt_boxes = self.assign_targets_to_anchors(anchors, targets, sizes)  # [N, M] x2
        sampled = sample_anchors(labels=gt_labels, batch_size_per_image=self.batch_size_per_image,
                                 positive_fraction=self.positive_fraction)  # [N, M]
        pos, neg = (sampled == 1).reshape(-1), (sampled == 0).reshape(-1)  # [N*M] each
        gt_deltas = self.box_coder.encode_single(gt_boxes.reshape(-1, 4),
                                                 anchors.repeat(len(sizes), 1))  # [N*M, 4]
        # only positives have a target; the others' (a padding GT box of zero size) are zeroed
        gt_deltas = torch.where(pos[:, None], gt_deltas, 0.0)
        return proposals, self.compute_loss(pred, gt_deltas, pos, neg)

    def filter_proposals(self, boxes: Tensor, scores: Tensor, sizes: Tensor) -> ProposalBatch:
        """The baseline's proposal layer for a whole batch: per image the ``pre_nms_top_n`` by
        objectness, clipped to the image, boxes under 1e-3 px dropped, NMS, the first
        ``post_nms_top_n`` kept, padded. One NMS for all images: each image's boxes are shifted
        apart (torchvision's ``batched_nms`` coordinate trick), dropped boxes rank last and
        can only suppress each other. ``boxes`` [N, M, 4], ``scores`` [N, M], ``sizes`` [N, 2]."""
        n, m = scores.shape
        k, p = min(self.pre_nms_top_n(), m), self.post_nms_top_n()
        top_scores, top = scores.topk(k, dim=1)  # [N, K] each, best first
        top_boxes = boxes.gather(1, top[:, :, None].expand(n, k, 4))  # [N, K, 4]
        limit = sizes.flip(1).repeat(1, 2)[:, None, :]  # [N, 1, 4]: w, h, w, h
        top_boxes = torch.minimum(top_boxes.clamp(min=0), limit)  # clip_boxes_to_image
        wh = top_boxes[..., 2:] - top_boxes[..., :2]  # [N, K, 2]
        big = (wh >= 1e-3).all(dim=2)  # [N, K]: remove_small_boxes(., 1e-3) keeps these
        image = torch.arange(n, device=boxes.device)[:, None].expand(n, k)  # [N, K]
        offsets = image * (top_boxes.max() + 1.0)  # [N, K]: images never overlap
        keep = box_ops.nms((top_boxes + offsets[:, :, None]).reshape(-1, 4),
                           torch.where(big, top_scores, float("-inf")).reshape(-1),
                           self.nms_thresh)  # [L] into N*K, by decreasing score
        kept_image = keep // k  # [L]
        kept = big.reshape(-1)[keep]  # [L]: a dropped box is never a proposal
        one_hot = (kept_image[:, None] == torch.arange(n, device=boxes.device)) & kept[:, None]  # [L, N]
        rank = one_hot.cumsum(0).gather(1, kept_image[:, None])[:, 0] - 1  # [L]: place in its image
        slot = torch.where(kept & (rank < p), kept_image * p + rank, n * p)  # [L]; n * p: dropped
        index = torch.full((n * p + 1,), -1, dtype=torch.int64, device=boxes.device)
        index = index.scatter(0, slot, keep)[: n * p].view(n, p)  # [N, P] into N*K, -1: padding
        valid = index >= 0
        chosen = top_boxes.reshape(-1, 4)[index.clamp(min=0).reshape(-1)].view(n, p, 4)
        return ProposalBatch(torch.where(valid[:, :, None], chosen, 0.0), valid)

    def filter_proposals_per_image(self, boxes: Tensor, scores: Tensor, pred: dict,
                                   image_sizes) -> list[dict[str, Tensor]]:
        """Top-k by objectness, clip, drop empty boxes, NMS, keep the post-NMS top-k
        (the baseline's proposal layer), one image at a time. ``boxes`` [N, M, 4], ``scores``
        [N, M]."""
        out = []
        for i, (h, w) in enumerate(image_sizes):
            top = scores[i].topk(min(self.pre_nms_top_n(), scores.shape[1])).indices
            b = box_ops.clip_boxes_to_image(boxes[i, top], (h, w))
            keep = box_ops.remove_small_boxes(b, 1e-3)
            keep = keep[box_ops.nms(b[keep], scores[i, top[keep]], self.nms_thresh)]
            keep = keep[: self.post_nms_top_n()]
            idx = top[keep]
            proposal = {"boxes": b[keep], "scores": scores[i, idx]}
            if "log_var" in pred:
                proposal["log_var"] = pred["log_var"][i, idx].detach()
            out.append(proposal)
        return out

    def assign_targets_to_anchors(self, anchors: Tensor, targets, sizes: Tensor):
        """The baseline's ``anchor_target_layer.py`` assignment for the batch: ``(labels [N, M]``
        1 positive, 0 negative, -1 ignored, ``matched_gt_boxes [N, M, 4])``. Positive: IoU >=
        fg with a GT, or a GT's best anchor (ties included; a GT overlapping no anchor has
        none: L106's 1e-5); negative: best IoU < bg. With ``drop_cross_boundary`` anchors
        across the image border are never matched or sampled. ``anchors`` [M, 4], ``sizes``
        [N, 2] (h, w)."""
        gt_boxes, gt_valid = pad_per_image([t["boxes"].to(anchors.dtype) for t in targets])  # [N, G, 4]
        inside = self.inside(anchors, sizes) if self.drop_cross_boundary else None  # [N, M]
        match = match_boxes(boxes=anchors, gt_boxes=gt_boxes, gt_valid=gt_valid,
                            high=self.fg_iou_thresh, low=self.bg_iou_thresh,
                            allow_low_quality_matches=True, box_valid=inside,
                            low_quality_needs_overlap=True)
        matched = gt_boxes.gather(1, match.matches.clamp(min=0)[:, :, None].expand(-1, -1, 4))  # [N, M, 4]
        return match.labels, matched

    @staticmethod
    def inside(anchors: Tensor, sizes: Tensor) -> Tensor:
        """anchor_target_layer.py's test ``x1 >= 0, y1 >= 0, x2 < W, y2 < H`` on its inclusive
        boxes, i.e. ``x2 < W + 1`` on the continuous ones (``x2 <= W`` for integer corners; the
        half-pixel corners of odd-width anchors, e.g. 23 x 12, may stick out by 0.5 px).
        ``anchors`` [M, 4], ``sizes`` [N, 2] (h, w) -> [N, M]."""
        corner = (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0)  # [M]
        h, w = sizes[:, 0:1] + 1, sizes[:, 1:2] + 1  # [N, 1] each
        return corner & (anchors[:, 2] < w) & (anchors[:, 3] < h)

    def score(self, pred: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def compute_loss(self, pred, gt_deltas, pos, neg):
        raise NotImplementedError


def image_sizes_on(image_sizes, device: torch.device) -> Tensor:
    """``[(h, w), ...]`` -> [N, 2] float32 on ``device``: one small copy per step that does not
    wait for the device (pinned memory on CUDA, ``non_blocking``)."""
    sizes = torch.tensor(image_sizes, dtype=torch.float32).reshape(-1, 2)
    if device.type == "cuda":
        sizes = sizes.pin_memory()
    return sizes.to(device, non_blocking=True)


class BaselineRPN(ProposalNetwork):
    """Softmax objectness + smooth-L1 offsets (the baseline's RPN)."""

    def __init__(self, *, smooth_l1_beta: float, **kwargs):
        super().__init__(**kwargs)
        self.smooth_l1_beta = smooth_l1_beta

    def score(self, pred):
        return pred["logits"].softmax(dim=-1)[..., 1]  # foreground probability, [N, M]

    def compute_loss(self, pred, gt_deltas, pos, neg):
        """Cross-entropy over the sampled anchors; smooth-L1 over the positives, normalised by
        the number sampled (baseline RPN_POSITIVE_WEIGHT = -1). ``pos``, ``neg`` [N*M] bool,
        ``gt_deltas`` [N*M, 4]; dense: every anchor computed, the unsampled ones masked."""
        logits = pred["logits"].reshape(-1, 2)  # [N*M, 2]
        deltas = pred["deltas"].reshape(-1, 4)  # [N*M, 4]
        sampled = pos | neg
        count = sampled.sum().clamp(min=1)
        target = torch.where(sampled, pos.long(), -1)  # [N*M]: -1 not sampled
        loss_cls = F.cross_entropy(logits, target, ignore_index=-1, reduction="sum") / count
        loss_reg = masked_mean(F.smooth_l1_loss(deltas, gt_deltas, beta=self.smooth_l1_beta,
                                                reduction="none"), pos[:, None], count)
        return {"loss_rpn_cls": loss_cls, "loss_rpn_reg": loss_reg}


class KLRPN(ProposalNetwork):
    """KL-RPN: one KL loss (eq. 8) and the objectness of eq. 10."""

    SCORE_RULES = ("eq10", "mean_sigma")

    def __init__(self, *, gamma: float, neg_var: float, score_eps: float, score_rule: str = "eq10",
                 **kwargs):
        if score_rule not in self.SCORE_RULES:
            raise ValueError(f"score_rule {score_rule!r}: expected one of {self.SCORE_RULES}")
        super().__init__(**kwargs)
        self.gamma, self.neg_var, self.score_eps = gamma, neg_var, score_eps
        self.score_rule = score_rule

    def score(self, pred):
        if self.score_rule == "mean_sigma":  # ablation: minus the mean of the four sigmas, [N, M]
            return -torch.exp(0.5 * pred["log_var"].float()).mean(dim=-1)
        return objectness(pred["log_var"], self.score_eps)  # log of eq. 10, [N, M]

    def compute_loss(self, pred, gt_deltas, pos, neg):
        """Eq. 8: eq. 7 for positive anchors, eq. 4 for negative ones, summed over the 4 offsets
        and averaged over the sampled anchors; ignored anchors contribute nothing. fp32 always."""
        with torch.autocast(device_type=gt_deltas.device.type, enabled=False):
            mu = pred["deltas"].reshape(-1, 4).float()  # [N*M, 4]
            log_var = pred["log_var"].reshape(-1, 4).float()  # [N*M, 4]
            sampled = (pos | neg)[:, None]  # [N*M, 1]
            # unsampled anchors computed at beta = 0 (finite), then masked out
            log_var = torch.where(sampled, log_var, 0.0)
            per_anchor = torch.where(pos[:, None],
                                     kl_pos_loss(mu, log_var, gt_deltas.float(), self.gamma),  # eq. 7
                                     kl_neg_loss(mu, log_var, self.gamma, self.neg_var))  # eq. 4
            return {"loss_kl": masked_mean(per_anchor, sampled, sampled.sum().clamp(min=1))}
