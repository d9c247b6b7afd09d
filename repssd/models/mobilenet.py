"""MobileNet SSD and SSD-Lite, as in qfgaohao/pytorch-ssd (``mb1-ssd``, ``mb1-ssd-lite``,
``mb2-ssd-lite``), with torchvision's MobileNetV2 as the MobileNetV2 base.

SSD-Lite (MobileNetV2 paper, Sec. 6.2) replaces the extra layers' and heads' 3x3 convolutions
by depthwise-separable ones. Both bases take a width multiplier; every channel count below is
read off the built layers, never restated.
"""
from __future__ import annotations

from torch import Tensor, nn
from torchvision.models import mobilenet_v2
from torchvision.models.mobilenetv2 import InvertedResidual

from ..priors import PriorSpec
from .ssd import SSD, Normalize, SSDHead

__all__ = ["MobileNetV1Base", "MobileNetV2Base", "build_mb1_ssd", "build_mb2_ssdlite", "MOBILENET_MEAN"]

MOBILENET_MEAN, MOBILENET_STD = (127.0, 127.0, 127.0), 128.0  # (x - 127) / 128


def _conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


def _conv_dw(inp: int, oup: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1, each with BatchNorm and ReLU (MobileNetV1 Fig. 3)."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp), nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


def separable_conv(inp: int, oup: int, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    """pytorch-ssd's ``SeperableConv2d``: depthwise conv, BatchNorm, ReLU6, pointwise 1x1."""
    return nn.Sequential(nn.Conv2d(inp, inp, kernel_size, stride, padding, groups=inp), nn.BatchNorm2d(inp),
                         nn.ReLU6(), nn.Conv2d(inp, oup, kernel_size=1))


class MobileNetV1Base(nn.Module):
    """MobileNetV1 features (14 blocks) -> ``[block 11 (19x19), block 13 (10x10)]`` at 300 px."""

    def __init__(self, width_mult: float = 1.0) -> None:
        super().__init__()
        c = [int(ch * width_mult) for ch in (32, 64, 128, 256, 512, 1024)]
        self.features = nn.Sequential(
            _conv_bn(3, c[0], 2), _conv_dw(c[0], c[1], 1), _conv_dw(c[1], c[2], 2), _conv_dw(c[2], c[2], 1),
            _conv_dw(c[2], c[3], 2), _conv_dw(c[3], c[3], 1), _conv_dw(c[3], c[4], 2),
            *[_conv_dw(c[4], c[4], 1) for _ in range(5)], _conv_dw(c[4], c[5], 2), _conv_dw(c[5], c[5], 1))
        self.out_channels = (c[4], c[5])

    def forward(self, x: Tensor) -> list[Tensor]:
        first = self.features[:12](x)
        return [first, self.features[12:](first)]


class MobileNetV2Base(nn.Module):
    """torchvision MobileNetV2 features -> ``[expansion of block 14 (19x19), last conv (10x10)]``.

    The first source is taken inside block 14, after its 1x1 expansion (576 channels at width
    1.0), as pytorch-ssd's ``GraphPath(14, 'conv', 3)`` does.
    """

    def __init__(self, width_mult: float = 1.0) -> None:
        super().__init__()
        self.features = mobilenet_v2(weights=None, width_mult=width_mult).features
        self.out_channels = (self.features[14].conv[0].out_channels, self.features[-1].out_channels)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.features[:14](x)
        block = self.features[14]  # stride 2, so no residual connection to keep
        expanded = block.conv[0](x)
        x = self.features[15:](block.conv[1:](expanded))
        return [expanded, x]


def _heads(channels: list[int], anchors: tuple[int, ...], width: int, lite: bool) -> list[nn.Module]:
    if not lite:
        return [nn.Conv2d(c, a * width, kernel_size=3, padding=1) for c, a in zip(channels, anchors)]
    return ([separable_conv(c, a * width) for c, a in zip(channels[:-1], anchors[:-1])]
            + [nn.Conv2d(channels[-1], anchors[-1] * width, kernel_size=1)])


def _build(backbone: nn.Module, extras: list[nn.Module], spec: PriorSpec, num_classes: int, lite: bool) -> SSD:
    if spec.image_size != 300:
        raise ValueError(f"the MobileNet SSDs take 300 px inputs; spec {spec.name!r} is for {spec.image_size} px")
    channels = list(backbone.out_channels) + [_out_channels(e) for e in extras]
    anchors = spec.boxes_per_location
    if len(channels) != len(anchors):
        raise ValueError(f"prior spec {spec.name!r} has {len(anchors)} sources, the model has {len(channels)}")
    head = SSDHead(_heads(channels, anchors, 4, lite), _heads(channels, anchors, num_classes, lite), num_classes)
    return SSD(backbone, extras, head, spec, Normalize(MOBILENET_MEAN, MOBILENET_STD))


def _out_channels(module: nn.Module) -> int:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


def build_mb1_ssd(spec: PriorSpec, num_classes: int, lite: bool = False, width_mult: float = 1.0) -> SSD:
    """MobileNetV1 SSD (3x3 extras and heads) or SSD-Lite (separable ones)."""
    backbone = MobileNetV1Base(width_mult)
    extras = []
    for inp, mid, out in [(backbone.out_channels[1], 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256)]:
        if lite:
            extras.append(nn.Sequential(nn.Conv2d(inp, mid, 1), nn.ReLU(), separable_conv(mid, out, stride=2)))
        else:
            extras.append(nn.Sequential(nn.Conv2d(inp, mid, 1), nn.ReLU(),
                                        nn.Conv2d(mid, out, 3, stride=2, padding=1), nn.ReLU()))
    return _build(backbone, extras, spec, num_classes, lite)


def build_mb2_ssdlite(spec: PriorSpec, num_classes: int, width_mult: float = 1.0) -> SSD:
    """MobileNetV2 SSD-Lite: inverted-residual extras, separable heads."""
    backbone = MobileNetV2Base(width_mult)
    extras = [InvertedResidual(backbone.out_channels[1], 512, stride=2, expand_ratio=0.2),
              InvertedResidual(512, 256, stride=2, expand_ratio=0.25),
              InvertedResidual(256, 256, stride=2, expand_ratio=0.5),
              InvertedResidual(256, 64, stride=2, expand_ratio=0.25)]
    return _build(backbone, extras, spec, num_classes, lite=True)
