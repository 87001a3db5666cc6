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
    ``{"boxes", "labels", "scores"}`` per image, in input-image pixels; ``detect(images)`` ->
    those and the proposals behind them, from the same pass.
    """

    def __init__(self, backbone, rpn, roi_heads, transform, *, roi_loss_weight: float):
        super().__init__(backbone, rpn, roi_heads, transform)
        self.roi_loss_weight = roi_loss_weight

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        if not self.training:
            return self.detect(images)[0]
        if targets is None:
            raise ValueError("TwoStageDetector in training mode needs targets")
        images, targets = self.transform(images, targets)
        features = self.backbone(images.tensors)
        proposals, rpn_losses = self.rpn(images, features, targets)
        _, roi_losses = self.roi_heads(features, [p["boxes"] for p in proposals],
                                       images.image_sizes, targets)
        return {**rpn_losses, **{k: self.roi_loss_weight * v for k, v in roi_losses.items()}}

    def detect(self, images: list[Tensor]) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        """Eval mode, one pass: ``(detections, proposals)`` per image, both in input-image
        pixels; the proposals are exactly those the RoI head classified (see :meth:`propose`)."""
        transformed, features, proposals, original_sizes = self.first_stage(images)
        detections, _ = self.roi_heads(features, [p["boxes"] for p in proposals],
                                       transformed.image_sizes)
        detections = self.transform.postprocess(detections, transformed.image_sizes, original_sizes)
        return detections, self.to_input_pixels(proposals, transformed.image_sizes, original_sizes)

    @torch.no_grad()
    def propose(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """The first stage alone (eval mode): per image ``{"boxes" [K, 4] in input-image
        pixels, "scores" [K]}`` ranked by objectness as NMS saw it (baseline: foreground
        probability; KL-RPN: log of eq. 10's score), plus ``"log_var"`` [K, 4] for KL-RPN."""
        if self.training:
            raise RuntimeError("propose() is for analysis: call model.eval() first")
        transformed, _, proposals, original_sizes = self.first_stage(images)
        return self.to_input_pixels(proposals, transformed.image_sizes, original_sizes)

    def first_stage(self, images: list[Tensor]):
        """``(transformed images, features, proposals, original sizes)``, no targets."""
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        transformed, _ = self.transform(images)
        features = self.backbone(transformed.tensors)
        proposals, _ = self.rpn(transformed, features)
        return transformed, features, proposals, original_sizes

    @staticmethod
    def to_input_pixels(proposals: list[dict], sizes, original_sizes) -> list[dict]:
        """Proposal boxes from transformed-image to input-image pixels (new dicts)."""
        return [{**p, "boxes": resize_boxes(p["boxes"], size, original)}
                for p, size, original in zip(proposals, sizes, original_sizes)]
