"""The two-stage detector: transform -> backbone -> (KL-)RPN -> RoI heads (torchvision-style)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes


class Backbone(nn.Module):
    """Wraps a body (image -> stride-16 map) into torchvision's feature dict ``{"0": map}``."""

    def __init__(self, body: nn.Module, out_channels: int):
        super().__init__()
        self.body = body
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        return OrderedDict([("0", self.body(x))])  # [N, C, H/16, W/16]


class DetectionTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform with separate training short sides (one picked at random per
    batch: multi-scale training when several) and a single test short side."""

    def __init__(self, *, train_min_sizes, test_min_size: int, max_size: int, image_mean, image_std):
        super().__init__(tuple(train_min_sizes), max_size, image_mean, image_std)
        self.train_min_sizes, self.test_min_size = tuple(train_min_sizes), int(test_min_size)

    def train(self, mode: bool = True):
        super().train(mode)
        self.min_size = self.train_min_sizes if mode else (self.test_min_size,)
        return self


class TwoStageDetector(GeneralizedRCNN):
    """Faster R-CNN or R-FCN with the baseline RPN or KL-RPN.

    train: ``model(images, targets)`` -> loss dict whose sum is the total loss (eq. 9: the RoI
    losses are multiplied by ``roi_loss_weight``); eval: ``model(images)`` -> one
    ``{"boxes", "labels", "scores"}`` per image, in input-image pixels.
    """

    def __init__(self, backbone, rpn, roi_heads, transform, *, roi_loss_weight: float):
        super().__init__(backbone, rpn, roi_heads, transform)
        self.roi_loss_weight = roi_loss_weight

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        if self.training and targets is None:
            raise ValueError("TwoStageDetector in training mode needs targets")
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        images, targets = self.transform(images, targets)
        features = self.backbone(images.tensors)
        proposals, rpn_losses = self.rpn(images, features, targets)
        detections, roi_losses = self.roi_heads(features, [p["boxes"] for p in proposals],
                                                images.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **{k: self.roi_loss_weight * v for k, v in roi_losses.items()}}
        return self.transform.postprocess(detections, images.image_sizes, original_sizes)

    @torch.no_grad()
    def propose(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """The first stage alone (eval mode): per image ``{"boxes" [K, 4] in input-image
        pixels, "scores" [K]}`` ranked by objectness as NMS saw it (baseline: foreground
        probability; KL-RPN: log of eq. 10's score), plus ``"log_var"`` [K, 4] for KL-RPN."""
        if self.training:
            raise RuntimeError("propose() is for analysis: call model.eval() first")
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        transformed, _ = self.transform(images)
        proposals, _ = self.rpn(transformed, self.backbone(transformed.tensors))
        for p, size, original in zip(proposals, transformed.image_sizes, original_sizes):
            p["boxes"] = resize_boxes(p["boxes"], size, original)
        return proposals
