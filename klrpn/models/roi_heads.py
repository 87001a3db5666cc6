"""Second stages: the Faster R-CNN RoI head and the R-FCN position-sensitive head.

Both plug into :class:`DetectionHeads`, which matches (ground truth added to the proposals,
IoU >= 0.5 foreground) and samples RoIs as the baseline does (a fixed number per image,
``klrpn.models.matching``), encodes targets with torchvision's box coding (weights 10, 10, 5,
5), reuses torchvision's ``RoIHeads`` for test-time post-processing (per-class NMS) and
computes the baseline's loss (cross-entropy + smooth-L1 with sigma = 1, averaged over the
sampled RoIs). Proposals, ground
truth, targets, the RoIs given to RoIAlign / PS-RoIAlign and the decoded detections are float32,
also under autocast.

Glossary (B images, R RoIs over the batch, C foreground classes):
    rois               [R, 5] (image index, x1, y1, x2, y2) in training; [K_i, 4] per image in eval
    pred_class_logits  [R, C + 1]
    pred_box_deltas    [R, 4 (C + 1)] class-specific, or [R, 4] class-agnostic
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import RoIAlign, ps_roi_align

from klrpn.models.box_coder import BoxCoder
from klrpn.models.matching import masked_mean, match_boxes, pad_per_image, sample_rois

FEATURE_STRIDE = 16
RFCN_CHANNELS = 1024  # R-FCN [11]: the width its head's initialisation is meant for


class FastRCNNHead(nn.Module):
    """RoIAlign 7x7 on the stride-16 map, the backbone's ``top`` (VGG fc6/fc7 or ResNet
    layer4 + mean), and linear class / box predictors."""

    def __init__(self, *, top: nn.Module, top_channels: int, num_classes: int, pool_size: int,
                 sampling_ratio: int, class_agnostic: bool, cls_init_std: float, bbox_init_std: float):
        super().__init__()
        # aligned=False: the baseline's RoIAlign (no half-pixel offset)
        self.roi_align = RoIAlign(pool_size, 1.0 / FEATURE_STRIDE, sampling_ratio, aligned=False)
        self.top = top
        self.cls_score = nn.Linear(top_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(top_channels, 4 if class_agnostic else 4 * (num_classes + 1))
        _init_predictors(self.cls_score, self.bbox_pred, cls_init_std, bbox_init_std)

    def forward(self, feature: Tensor, rois) -> tuple[Tensor, Tensor]:
        """``rois``: [K_i, 4] per image, or [R, 5] (image index, x1, y1, x2, y2)."""
        pooled = self.roi_align(feature, rois)  # [R, C4, 7, 7]
        x = self.top(pooled)  # [R, top_channels] (VGG) or [R, top_channels, 4, 4] (ResNet layer4)
        if x.dim() == 4:
            x = x.mean(dim=(2, 3))  # the baseline's ResNet head: spatial mean after layer4
        return self.cls_score(x), self.bbox_pred(x)


class RFCNHead(nn.Module):
    """R-FCN [11]: dilated layer4 on the whole map, a 1x1 conv to 1024 channels + ReLU,
    position-sensitive score maps (k^2 (C + 1)) and box maps (class-agnostic 4 k^2 as in [11],
    or class-specific 4 k^2 (C + 1) as RFCN_CoupleNet.pytorch's default), read by PS-RoIAlign
    and averaged over the k x k bins (average voting)."""

    def __init__(self, *, layer4: nn.Module, top_channels: int, num_classes: int, channels: int,
                 k: int, sampling_ratio: int, cls_init_std: float, bbox_init_std: float,
                 class_agnostic: bool = True, init_scale: float = 1.0):
        super().__init__()
        self.layer4 = layer4  # built with dilation 2: stays at stride 16
        self.conv_new = nn.Conv2d(top_channels, channels, 1)
        self.cls_maps = nn.Conv2d(channels, k * k * (num_classes + 1), 1)
        box_outputs = 4 if class_agnostic else 4 * (num_classes + 1)
        self.bbox_maps = nn.Conv2d(channels, k * k * box_outputs, 1)
        self.k, self.sampling_ratio = k, sampling_ratio
        nn.init.normal_(self.conv_new.weight, std=0.01 * init_scale)
        nn.init.zeros_(self.conv_new.bias)
        # the maps' fan-in is `channels` (1024 in R-FCN [11]): same activation-scale rule
        maps_scale = (RFCN_CHANNELS / channels) ** 0.5
        _init_predictors(self.cls_maps, self.bbox_maps, cls_init_std * maps_scale, bbox_init_std * maps_scale)

    def forward(self, feature: Tensor, rois) -> tuple[Tensor, Tensor]:
        """``rois``: [K_i, 4] per image, or [R, 5] (image index, x1, y1, x2, y2)."""
        x = F.relu(self.conv_new(self.layer4(feature)))  # [N, channels, H, W]
        scale = 1.0 / FEATURE_STRIDE
        # PS-RoIAlign in float32 on the float32 RoIs, as torchvision's CUDA autocast wrapper of
        # ps_roi_align does (it has none on the CPU, where bf16 maps and float32 RoIs clash)
        cls_maps, bbox_maps = self.cls_maps(x).float(), self.bbox_maps(x).float()
        cls = ps_roi_align(cls_maps, rois, self.k, scale, self.sampling_ratio)  # [R, C+1, k, k]
        box = ps_roi_align(bbox_maps, rois, self.k, scale, self.sampling_ratio)  # [R, 4 or 4(C+1), k, k]
        return cls.mean(dim=(2, 3)), box.mean(dim=(2, 3))  # average voting: [R, C+1], [R, 4 or 4(C+1)]


class DetectionHeads(RoIHeads):
    """torchvision ``RoIHeads`` with an injected ``box_head(feature, rois)`` and the baseline's
    second-stage sampling and loss.

    Training takes the RPN's padded :class:`~klrpn.models.rpn.ProposalBatch` and works on the
    whole batch with fixed-size tensors, without a host synchronisation: ground truth added to
    the proposals, matching (``klrpn.models.matching.match_boxes``: IoU >= ``fg_iou_thresh``
    foreground, below ``bg_iou_thresh`` background), the baseline's draw of exactly
    ``batch_size_per_image`` RoIs per image (``sample_rois``, ``proposal_target_layer_cascade.py``:
    at most ``round(positive_fraction * R)`` foreground without replacement, the rest background
    with replacement), target encoding (weights 10, 10, 5, 5) and a masked loss. Evaluation is
    torchvision's: per image, per-class NMS (``postprocess_detections``)."""

    def __init__(self, *, box_head: nn.Module, num_classes: int, class_agnostic: bool,
                 smooth_l1_beta: float, fg_iou_thresh: float, bg_iou_thresh: float,
                 batch_size_per_image: int, positive_fraction: float, bbox_reg_weights,
                 score_thresh: float, nms_thresh: float, detections_per_img: int):
        super().__init__(None, box_head, None, fg_iou_thresh, bg_iou_thresh, batch_size_per_image,
                         positive_fraction, tuple(bbox_reg_weights), score_thresh, nms_thresh,
                         detections_per_img)
        self.box_coder = BoxCoder(weights=tuple(bbox_reg_weights))  # torchvision's, no host copies
        self.num_classes, self.class_agnostic = num_classes, class_agnostic
        self.smooth_l1_beta = smooth_l1_beta
        self.fg_iou_thresh, self.bg_iou_thresh = fg_iou_thresh, bg_iou_thresh
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction

    def forward(self, features: dict[str, Tensor], proposals, image_shapes, targets=None):
        """Training: ``proposals`` a ``ProposalBatch`` -> ``([], losses)``; evaluation:
        ``proposals`` [K_i, 4] per image -> (detections per image, {})."""
        (feature,) = features.values()
        if self.training:
            rois, gt_labels, gt_deltas = self.select_training_samples(proposals, targets)
            class_logits, box_deltas = self.box_head(feature, rois)
            # the predictors' outputs (bf16 under autocast), cast once: the loss in float32
            return [], self.compute_loss(class_logits.float(), box_deltas.float(), gt_labels, gt_deltas)
        # float32 proposals: RoIHeads decodes detections in their dtype; RoIAlign reads float32 RoIs
        proposals = [p.float() for p in proposals]
        class_logits, box_deltas = self.box_head(feature, proposals)
        class_logits, box_deltas = class_logits.float(), box_deltas.float()
        if self.class_agnostic:
            box_deltas = box_deltas.repeat(1, self.num_classes + 1)  # [R, 4] -> [R, 4 (C + 1)]
        boxes, scores, labels = self.postprocess_detections(class_logits, box_deltas, proposals, image_shapes)
        return [{"boxes": b, "scores": s, "labels": l} for b, s, l in zip(boxes, scores, labels)], {}

    def select_training_samples(self, proposals, targets):
        """``(rois [B*R, 5], gt_labels [B*R], gt_deltas [B*R, 4])`` for the batch: RoIs as
        (image index, x1, y1, x2, y2) for RoIAlign; labels the class, 0 background, -1 for the
        slots of an image with no candidate at all; deltas the encoded matched ground truth of
        the foreground RoIs (0 elsewhere)."""
        gt_boxes, gt_valid = pad_per_image([t["boxes"].float() for t in targets])  # [B, G, 4]
        gt_classes, _ = pad_per_image([t["labels"] for t in targets])  # [B, G]
        # the ground truth joins the candidates (RoIHeads.add_gt_proposals)
        boxes = torch.cat([proposals.boxes.float(), gt_boxes], dim=1)  # [B, P + G, 4]
        valid = torch.cat([proposals.valid, gt_valid], dim=1)  # [B, P + G]
        match = match_boxes(boxes=boxes, gt_boxes=gt_boxes, gt_valid=gt_valid,
                            high=self.fg_iou_thresh, low=self.bg_iou_thresh,
                            allow_low_quality_matches=False, box_valid=valid)
        sample = sample_rois(quality=match.quality, valid=valid,
                             batch_size_per_image=self.batch_size_per_image,
                             positive_fraction=self.positive_fraction,
                             fg_thresh=self.fg_iou_thresh, bg_thresh_hi=self.bg_iou_thresh)
        b, r = sample.index.shape
        rois = boxes.gather(1, sample.index[:, :, None].expand(b, r, 4))  # [B, R, 4]
        slot = match.matches.gather(1, sample.index).clamp(min=0)  # [B, R]: the matched GT
        labels = torch.where(sample.foreground, gt_classes.gather(1, slot), 0)
        labels = torch.where(sample.valid, labels, -1)  # [B, R]
        matched = gt_boxes.gather(1, slot[:, :, None].expand(b, r, 4))  # [B, R, 4]
        fg = (labels > 0).reshape(-1, 1)  # [B*R, 1]
        gt_deltas = torch.where(fg, self.box_coder.encode_single(matched.reshape(-1, 4),
                                                                 rois.reshape(-1, 4)), 0.0)
        image = torch.arange(b, dtype=rois.dtype, device=rois.device)[:, None, None].expand(b, r, 1)
        return torch.cat([image, rois], dim=2).reshape(-1, 5), labels.reshape(-1), gt_deltas

    def compute_loss(self, class_logits: Tensor, box_deltas: Tensor, gt_labels: Tensor,
                     gt_deltas: Tensor) -> dict[str, Tensor]:
        """Cross-entropy over the sampled RoIs; smooth-L1 on the foreground RoIs' deltas for
        their class, summed over x, y, w, h and averaged over all sampled RoIs. Labels -1
        (no RoI in the slot) count nowhere. ``class_logits`` [R, C + 1], ``box_deltas``
        [R, 4 or 4 (C + 1)], ``gt_labels`` [R], ``gt_deltas`` [R, 4]."""
        count = (gt_labels >= 0).sum().clamp(min=1)
        loss_cls = F.cross_entropy(class_logits, gt_labels, ignore_index=-1, reduction="sum") / count
        deltas = box_deltas.reshape(box_deltas.shape[0], -1, 4)  # [R, 1 or C+1, 4]
        cls = torch.zeros_like(gt_labels) if self.class_agnostic else gt_labels.clamp(min=0)  # [R]
        pred = deltas.gather(1, cls[:, None, None].expand(-1, 1, 4))[:, 0]  # [R, 4]: its class
        loss_reg = masked_mean(F.smooth_l1_loss(pred, gt_deltas, beta=self.smooth_l1_beta,
                                                reduction="none"), (gt_labels > 0)[:, None], count)
        return {"loss_cls": loss_cls, "loss_reg": loss_reg}


def _init_predictors(cls: nn.Module, bbox: nn.Module, cls_std: float, bbox_std: float) -> None:
    """The baseline's normal_init of RCNN_cls_score (0.01) and RCNN_bbox_pred (0.001)."""
    nn.init.normal_(cls.weight, std=cls_std)
    nn.init.normal_(bbox.weight, std=bbox_std)
    nn.init.zeros_(cls.bias)
    nn.init.zeros_(bbox.bias)
