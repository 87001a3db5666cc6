"""Backbones and their RoI-wise "top" networks, as in the baseline (jwyang/faster-rcnn.pytorch).

- VGG-16: conv1_1..conv5_3 (torchvision's ``features`` without the last max-pool, stride 16);
  the RoI top is fc6/fc7 from VGG's classifier (fc8 dropped).
- ResNet-101 C4: conv1..layer3 (stride 16); the RoI top is layer4 followed by a spatial mean.
  For R-FCN, layer4 runs on the whole feature map with dilation 2 instead of stride 2.

``width`` scales every channel count (the smoke profile's toy models are the same families at
1/8 width); at width 1 the modules and parameter names equal torchvision's, so its ImageNet
weights load. All ResNet BatchNorms are frozen (baseline TRAIN.BN_TRAIN = False) and apply a
per-channel scale and shift computed once (:class:`FoldedFrozenBatchNorm2d`).

``caffe=True`` builds the caffe ResNet the baseline's caffe-converted weights belong to
(jwyang/faster-rcnn.pytorch lib/model/faster_rcnn/resnet.py): a downsampling bottleneck strides
in its first 1x1 conv instead of the 3x3 (``Bottleneck.__init__``, "# change"), and the stem's
max-pool has no padding and rounds up (``ResNet.__init__``). The parameter names and shapes are
torchvision's (the baseline loads resnet101_caffe.pth into the same names), so counts are equal.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.models.vgg import make_layers
from torchvision.ops.misc import FrozenBatchNorm2d

# torchvision's VGG-16 configuration "D"; "M" = 2x2 max-pool.
VGG16_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG_FROZEN_LAYERS = 10  # conv1_1 .. pool2: the baseline fixes features[0:10]
VGG_FC = 4096


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def width_init_scale(width: float) -> float:
    """Factor for a fixed-std initialisation (N(0, 0.01) and the like) of a layer whose fan-in
    shrinks with ``width``: 1/sqrt(width) keeps the activations at the full-size network's scale.
    1 at full width (the baseline's values exactly). Without it a 1/8-width model's fc layers
    start sqrt(8) times too small per layer and its classifier barely learns in a smoke run."""
    return width ** -0.5


class FoldedFrozenBatchNorm2d(FrozenBatchNorm2d):
    """torchvision's ``FrozenBatchNorm2d`` that computes its scale ``w / sqrt(var + eps)`` and
    shift ``b - mean * scale`` once, not on every call: 2 kernels per forward instead of 11
    (about 900 fewer per ResNet-101 forward pass, a third of a training step's operations; on a
    GPU each is a launch the host pays for). The same operations on the same buffers as
    torchvision's forward, so outputs and gradients are bit-identical. The cached pair is
    recomputed whenever a buffer is replaced (``.to()``, ``load_state_dict`` into a new tensor)
    or changed in place (``load_state_dict``, ``copy_``, ``fill_``): it is keyed on the buffer
    objects, which it holds, and their version counters. Writes that bypass version counters
    (through ``.data``) are not seen; nothing in klrpn makes them."""

    _folded: tuple | None = None  # (buffers, (their versions, eps), scale, shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        buffers = (self.weight, self.bias, self.running_mean, self.running_var)
        stamp = (tuple(t._version for t in buffers), self.eps)
        if (self._folded is None or self._folded[1] != stamp
                or any(a is not b for a, b in zip(self._folded[0], buffers))):
            w, b, rm, rv = (t.reshape(1, -1, 1, 1) for t in buffers)
            scale = w * (rv + self.eps).rsqrt()
            self._folded = (buffers, stamp, scale, b - rm * scale)
        _, _, scale, shift = self._folded
        return x * scale + shift


class VGG16(nn.Module):
    """``features`` (to conv5_3, stride 16) and ``classifier`` (fc6, fc7) with torchvision's names."""

    def __init__(self, *, width: float = 1.0, pool_size: int = 7):
        super().__init__()
        layers = [v if v == "M" else scaled(v, width) for v in VGG16_LAYERS[:-1]]
        self.features = make_layers(layers, batch_norm=False)
        self.out_channels = layers[-1]
        fc = scaled(VGG_FC, width)
        self.classifier = nn.Sequential(  # indices 0..5 of torchvision's VGG.classifier
            nn.Linear(self.out_channels * pool_size * pool_size, fc), nn.ReLU(True), nn.Dropout(),
            nn.Linear(fc, fc), nn.ReLU(True), nn.Dropout(),
        )
        self.top_channels = fc
        for m in self.modules():  # torchvision VGG's initialisation ...
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):  # ... with N(0, 0.01) at full width (see width_init_scale)
                nn.init.normal_(m.weight, 0, 0.01 * width_init_scale(width))
                nn.init.zeros_(m.bias)

    def freeze(self, frozen: str) -> None:
        if frozen == "conv1-conv2":
            for p in self.features[:VGG_FROZEN_LAYERS].parameters():
                p.requires_grad_(False)

    def load_imagenet(self, path: Path) -> None:
        state = _load_state(path)
        state = {k: v for k, v in state.items() if not k.startswith("classifier.6.")}  # fc8
        self.load_state_dict(state)

    def split(self) -> tuple[nn.Module, nn.Module]:
        """(body: image -> conv5_3 [N, C, H/16, W/16], top: [R, C, 7, 7] RoIs -> [R, fc])."""
        return self.features, nn.Sequential(nn.Flatten(start_dim=1), self.classifier)


class ResNet101(ResNet):
    """torchvision's ResNet with Bottleneck blocks, frozen BN, scalable width and depth."""

    def __init__(self, *, width: float = 1.0, blocks: tuple[int, ...] = (3, 4, 23, 3),
                 dilate_layer4: bool = False, caffe: bool = False):
        nn.Module.__init__(self)  # ResNet.__init__ fixes the widths; build the same modules here
        self._norm_layer = FoldedFrozenBatchNorm2d
        self.groups, self.base_width, self.dilation = 1, 64, 1
        self.inplanes = scaled(64, width)
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = FoldedFrozenBatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(Bottleneck, scaled(64, width), blocks[0])
        self.layer2 = self._make_layer(Bottleneck, scaled(128, width), blocks[1], stride=2)
        self.layer3 = self._make_layer(Bottleneck, scaled(256, width), blocks[2], stride=2)
        self.out_channels = self.inplanes
        self.layer4 = self._make_layer(Bottleneck, scaled(512, width), blocks[3], stride=2,
                                       dilate=dilate_layer4)
        self.top_channels = self.inplanes
        if caffe:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
            for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
                first = layer[0]
                if first.conv2.stride != (1, 1):  # a downsampling block: stride in the 1x1
                    first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)
        for m in self.modules():  # torchvision ResNet's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def freeze(self, frozen: str) -> None:
        parts = {"conv1": [self.conv1], "conv1-layer1": [self.conv1, self.layer1]}.get(frozen, [])
        for module in parts:
            for p in module.parameters():
                p.requires_grad_(False)

    def load_imagenet(self, path: Path) -> None:
        state = {k: v for k, v in _load_state(path).items() if not k.startswith("fc.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        # FrozenBatchNorm2d has no num_batches_tracked buffer; nothing else may differ
        unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"{path}: not a ResNet-101 state dict (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")

    def split(self) -> tuple[nn.Module, nn.Module]:
        """(body: conv1 .. layer3, image -> [N, C4, H/16, W/16], top: layer4 [+ mean in the
        Faster R-CNN head]). The fc layer is not used."""
        body = nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool,
                             self.layer1, self.layer2, self.layer3)
        return body, self.layer4


def _load_state(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: ImageNet weights not found; run `klrpn data download weights` "
            "or set model.pretrained: false")
    return torch.load(path, map_location="cpu", weights_only=True)
