"""Region proposal networks: the baseline RPN and KL-RPN (paper §2).

Both share the baseline's anchors (``klrpn.models.anchors``) and torchvision's Matcher, sampler
and BoxCoder (through ``torchvision.models.detection.rpn.RegionProposalNetwork``) and differ in
the head, the loss and the objectness that ranks proposals for NMS. All box tensors are float32,
also under autocast (only the head's convolutions run in bf16/fp16).

Glossary (N images, A anchors per location, H x W feature map, M = H*W*A anchors per image):
    anchors            list of N tensors [M, 4], x1y1x2y2 in transformed-image pixels
    pred_logits        [N, M, 2] background/foreground logits (baseline RPN)
    pred_deltas        [N, M, 4] box-coder offsets (x, y, w, h); for KL-RPN the Gaussian means mu
    pred_log_var       [N, M, 4] KL-RPN's beta = log(sigma^2) per offset
    gt_labels          list of N tensors [M]: 1 positive, 0 negative, -1 ignored
    gt_deltas          [N*M, 4] box-coder offsets of each anchor's matched ground truth
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import boxes as box_ops

from klrpn.losses import kl_neg_loss, kl_pos_loss, objectness


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


class ProposalNetwork(RegionProposalNetwork):
    """RPN on one stride-16 feature map: predict, decode, rank, NMS; in training assign
    anchors (IoU >= fg / best anchor of a GT -> positive, IoU < bg -> negative), sample and
    compute the loss. Subclasses define ``compute_loss`` and ``score``."""

    def __init__(self, *, anchor_generator, head: nn.Module, fg_iou_thresh: float,
                 bg_iou_thresh: float, batch_size_per_image: int, positive_fraction: float,
                 pre_nms_top_n: dict[str, int], post_nms_top_n: dict[str, int],
                 nms_thresh: float, drop_cross_boundary: bool):
        super().__init__(anchor_generator, head, fg_iou_thresh, bg_iou_thresh,
                         batch_size_per_image, positive_fraction, pre_nms_top_n,
                         post_nms_top_n, nms_thresh)
        self.drop_cross_boundary = drop_cross_boundary

    def forward(self, images, features: dict[str, Tensor], targets=None):
        """Returns (proposals, losses); proposals[i] = {"boxes" [K, 4], "scores" [K], ...}."""
        (feature,) = features.values()
        # box geometry in float32 (bf16 under autocast would round a 900 px box by +-2 px): the
        # head's outputs are cast once, so decoding, ranking, NMS, target encoding and the
        # losses all run in float32; the anchors are float32 already (BaselineAnchorGenerator)
        pred = {k: v.float() for k, v in self.head(feature).items()}
        anchors = self.anchor_generator(images, [feature])
        boxes = self.box_coder.decode_single(
            pred["deltas"].detach().reshape(-1, 4), torch.cat(anchors)).view(len(anchors), -1, 4)
        scores = self.score(pred).detach()  # [N, M], higher = better
        proposals = self.filter_proposals_per_image(boxes, scores, pred, images.image_sizes)
        losses = {}
        if self.training:
            gt_labels, gt_boxes = self.assign_targets_to_anchors(anchors, targets, images.image_sizes)
            gt_deltas = self.box_coder.encode(gt_boxes, anchors)
            pos, neg = self.fg_bg_sampler(gt_labels)
            pos, neg = torch.cat(pos).bool(), torch.cat(neg).bool()
            losses = self.compute_loss(pred, torch.cat(gt_deltas), pos, neg)
        return proposals, losses

    def filter_proposals_per_image(self, boxes: Tensor, scores: Tensor, pred: dict,
                                   image_sizes) -> list[dict[str, Tensor]]:
        """Top-k by objectness, clip, drop empty boxes, NMS, keep the post-NMS top-k
        (the baseline's proposal layer). ``boxes`` [N, M, 4], ``scores`` [N, M]."""
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

    def assign_targets_to_anchors(self, anchors, targets, image_sizes=None):
        """torchvision's assignment, restricted (baseline anchor_target_layer) to anchors that lie
        inside the image when ``drop_cross_boundary``: the others are never matched or sampled."""
        labels, matched_gt_boxes = [], []
        for anchors_i, target, size in zip(anchors, targets, image_sizes):
            gt_boxes = target["boxes"].to(anchors_i.dtype)  # float32, as the anchors
            inside = self.inside(anchors_i, size) if self.drop_cross_boundary else None
            if gt_boxes.numel() == 0:
                matched = torch.zeros_like(anchors_i)
                label = torch.zeros(anchors_i.shape[0], dtype=torch.float32, device=anchors_i.device)
            else:
                iou = box_ops.box_iou(gt_boxes, anchors_i)  # [G, M]
                if inside is not None:
                    iou[:, ~inside] = -1.0  # never positive, never a GT's best anchor
                idx = self.proposal_matcher(iou)
                matched = gt_boxes[idx.clamp(min=0)]
                label = (idx >= 0).to(torch.float32)
                label[idx == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0.0
                label[idx == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1.0
            if inside is not None:
                label[~inside] = -1.0
            labels.append(label)
            matched_gt_boxes.append(matched)
        return labels, matched_gt_boxes

    @staticmethod
    def inside(anchors: Tensor, size) -> Tensor:
        """anchor_target_layer.py's test ``x1 >= 0, y1 >= 0, x2 < W, y2 < H`` on its inclusive
        boxes, i.e. ``x2 < W + 1`` on the continuous ones (``x2 <= W`` for integer corners; the
        half-pixel corners of odd-width anchors, e.g. 23 x 12, may stick out by 0.5 px)."""
        h, w = size
        return (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] < w + 1) & (anchors[:, 3] < h + 1)

    def score(self, pred: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def compute_loss(self, pred, gt_deltas, pos, neg):
        raise NotImplementedError


def indices(mask: Tensor) -> Tensor:
    """The positions where ``mask`` [K] is true, ascending: gathering with them
    (``index_select``) picks what ``x[mask]`` picks, with one host synchronisation on a GPU for
    the count instead of one per masked read and one more per masked read in the backward
    pass (whose gradient is a scatter-add, not a masked write)."""
    return torch.where(mask)[0]


class BaselineRPN(ProposalNetwork):
    """Softmax objectness + smooth-L1 offsets (the baseline's RPN)."""

    def __init__(self, *, smooth_l1_beta: float, **kwargs):
        super().__init__(**kwargs)
        self.smooth_l1_beta = smooth_l1_beta

    def score(self, pred):
        return pred["logits"].softmax(dim=-1)[..., 1]  # foreground probability, [N, M]

    def compute_loss(self, pred, gt_deltas, pos, neg):
        """Cross-entropy over the sampled anchors; smooth-L1 over the positives, normalised by
        the number sampled (baseline RPN_POSITIVE_WEIGHT = -1)."""
        logits = pred["logits"].reshape(-1, 2)  # [N*M, 2]
        deltas = pred["deltas"].reshape(-1, 4)  # [N*M, 4]
        sampled = pos | neg
        sampled_idx, pos_idx = indices(sampled), indices(pos)  # [S], [P]
        loss_cls = F.cross_entropy(logits.index_select(0, sampled_idx), pos[sampled_idx].long())
        loss_reg = F.smooth_l1_loss(deltas.index_select(0, pos_idx), gt_deltas[pos_idx],
                                    beta=self.smooth_l1_beta, reduction="sum") / sampled.sum().clamp(min=1)
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
            gt_deltas = gt_deltas.float()
            p, n = indices(pos), indices(neg)  # [P], [Q]
            loss = (kl_pos_loss(mu.index_select(0, p), log_var.index_select(0, p), gt_deltas[p],
                                self.gamma).sum()  # eq. 7
                    + kl_neg_loss(mu.index_select(0, n), log_var.index_select(0, n), self.gamma,
                                  self.neg_var).sum())  # eq. 4
            return {"loss_kl": loss / (pos | neg).sum().clamp(min=1)}
