"""Second stages: the Faster R-CNN RoI head and the R-FCN position-sensitive head.

Both plug into :class:`DetectionHeads`, which reuses torchvision's ``RoIHeads`` for RoI
sampling (ground truth added to the proposals, IoU >= 0.5 foreground, 1:3 fg:bg), target
encoding (weights 10, 10, 5, 5) and test-time post-processing (per-class NMS), and computes the
baseline's loss (cross-entropy + smooth-L1 with sigma = 1, averaged over the sampled RoIs).

Glossary (R RoIs over the batch, C foreground classes):
    pred_class_logits  [R, C + 1]
    pred_box_deltas    [R, 4 (C + 1)] class-specific, or [R, 4] class-agnostic
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import RoIAlign, ps_roi_align

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

    def forward(self, feature: Tensor, proposals: list[Tensor]) -> tuple[Tensor, Tensor]:
        pooled = self.roi_align(feature, proposals)  # [R, C4, 7, 7]
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

    def forward(self, feature: Tensor, proposals: list[Tensor]) -> tuple[Tensor, Tensor]:
        x = F.relu(self.conv_new(self.layer4(feature)))  # [N, channels, H, W]
        scale = 1.0 / FEATURE_STRIDE
        cls = ps_roi_align(self.cls_maps(x), proposals, self.k, scale, self.sampling_ratio)  # [R, C+1, k, k]
        box = ps_roi_align(self.bbox_maps(x), proposals, self.k, scale, self.sampling_ratio)  # [R, 4 or 4(C+1), k, k]
        return cls.mean(dim=(2, 3)), box.mean(dim=(2, 3))  # average voting: [R, C+1], [R, 4 or 4(C+1)]


class DetectionHeads(RoIHeads):
    """torchvision ``RoIHeads`` with an injected ``box_head(feature, proposals)`` and the
    baseline's second-stage loss."""

    def __init__(self, *, box_head: nn.Module, num_classes: int, class_agnostic: bool,
                 smooth_l1_beta: float, fg_iou_thresh: float, bg_iou_thresh: float,
                 batch_size_per_image: int, positive_fraction: float, bbox_reg_weights,
                 score_thresh: float, nms_thresh: float, detections_per_img: int):
        super().__init__(None, box_head, None, fg_iou_thresh, bg_iou_thresh, batch_size_per_image,
                         positive_fraction, tuple(bbox_reg_weights), score_thresh, nms_thresh,
                         detections_per_img)
        self.num_classes, self.class_agnostic = num_classes, class_agnostic
        self.smooth_l1_beta = smooth_l1_beta

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes, targets=None):
        (feature,) = features.values()
        if self.training:
            proposals, _, gt_labels, gt_deltas = self.select_training_samples(proposals, targets)
        class_logits, box_deltas = self.box_head(feature, proposals)
        if self.training:
            return [], self.compute_loss(class_logits, box_deltas, torch.cat(gt_labels), torch.cat(gt_deltas))
        if self.class_agnostic:
            box_deltas = box_deltas.repeat(1, self.num_classes + 1)  # [R, 4] -> [R, 4 (C + 1)]
        boxes, scores, labels = self.postprocess_detections(class_logits, box_deltas, proposals, image_shapes)
        return [{"boxes": b, "scores": s, "labels": l} for b, s, l in zip(boxes, scores, labels)], {}

    def compute_loss(self, class_logits: Tensor, box_deltas: Tensor, gt_labels: Tensor,
                     gt_deltas: Tensor) -> dict[str, Tensor]:
        """Cross-entropy over the sampled RoIs; smooth-L1 on the foreground RoIs' deltas for
        their class, summed over x, y, w, h and averaged over all sampled RoIs."""
        loss_cls = F.cross_entropy(class_logits, gt_labels)
        fg = torch.where(gt_labels > 0)[0]
        deltas = box_deltas.reshape(box_deltas.shape[0], -1, 4)  # [R, 1 or C+1, 4]
        cls = torch.zeros_like(gt_labels[fg]) if self.class_agnostic else gt_labels[fg]
        loss_reg = F.smooth_l1_loss(deltas[fg, cls], gt_deltas[fg], beta=self.smooth_l1_beta,
                                    reduction="sum") / max(gt_labels.numel(), 1)
        return {"loss_cls": loss_cls, "loss_reg": loss_reg}


def _init_predictors(cls: nn.Module, bbox: nn.Module, cls_std: float, bbox_std: float) -> None:
    """The baseline's normal_init of RCNN_cls_score (0.01) and RCNN_bbox_pred (0.001)."""
    nn.init.normal_(cls.weight, std=cls_std)
    nn.init.normal_(bbox.weight, std=bbox_std)
    nn.init.zeros_(cls.bias)
    nn.init.zeros_(bbox.bias)
