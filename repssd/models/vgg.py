"""VGG16 base and extra layers of SSD300 / SSD512 (SSD paper Sec. 3; ssd.pytorch's ssd.py).

The base is VGG16 with pool3 in ceil mode, pool5 turned into 3x3 stride 1, fc6 and fc7 turned
into a dilated 3x3 convolution (conv6, dilation 6) and a 1x1 convolution (conv7); conv4_3 is
L2-normalised. ``VGG16Base.features`` keeps ssd.pytorch's layer indices (0..34), so its
``vgg.N`` weights and ``vgg16_reducedfc.pth`` map onto ``backbone.features.N``.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..priors import PriorSpec
from .ssd import SSD, L2Norm, Normalize, SSDHead

__all__ = ["VGG16Base", "vgg_extras", "build_vgg_ssd", "VGG_MEAN", "CONV4_3", "CONV7"]

VGG_MEAN = (123.0, 117.0, 104.0)  # RGB means on 0..255, ssd.pytorch's (104, 117, 123) BGR
_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512]
CONV4_3 = 23  # features[:23] ends with conv4_3's ReLU
CONV7 = 35  # number of layers in features


def _vgg_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    in_channels = 3
    for v in _CFG:
        if v in ("M", "C"):
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=v == "C"))
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    return layers + [
        nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5
        nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),  # conv6 (fc6, atrous)
        nn.ReLU(inplace=True),
        nn.Conv2d(1024, 1024, kernel_size=1),  # conv7 (fc7)
        nn.ReLU(inplace=True),
    ]


class VGG16Base(nn.Module):
    """VGG16 up to conv7 -> ``[L2Norm(conv4_3), conv7]`` (512 and 1024 channels)."""

    out_channels = (512, 1024)

    def __init__(self, l2norm_scale: float = 20.0) -> None:
        super().__init__()
        self.features = nn.ModuleList(_vgg_layers())
        self.l2norm = L2Norm(512, l2norm_scale)

    def forward(self, x: Tensor) -> list[Tensor]:
        for layer in self.features[:CONV4_3]:
            x = layer(x)
        conv4_3 = self.l2norm(x)
        for layer in self.features[CONV4_3:]:
            x = layer(x)
        return [conv4_3, x]


def _block(in_channels: int, mid: int, out: int, **conv3: int) -> nn.Sequential:
    """1x1 reduction then 3x3 convolution, both ReLU: one extra source (e.g. conv8_1, conv8_2)."""
    return nn.Sequential(nn.Conv2d(in_channels, mid, kernel_size=1), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, out, **{"kernel_size": 3, **conv3}), nn.ReLU(inplace=True))


def vgg_extras(image_size: int) -> list[nn.Sequential]:
    """Extra layers after conv7: SSD300 goes 19 -> 10, 5, 3, 1; SSD512 goes 32 -> 16, 8, 4, 2, 1."""
    if image_size == 300:
        return [_block(1024, 256, 512, stride=2, padding=1), _block(512, 128, 256, stride=2, padding=1),
                _block(256, 128, 256), _block(256, 128, 256)]
    if image_size == 512:  # original Caffe SSD512: conv12_2 is 4x4 with padding 1
        return [_block(1024, 256, 512, stride=2, padding=1), _block(512, 128, 256, stride=2, padding=1),
                _block(256, 128, 256, stride=2, padding=1), _block(256, 128, 256, stride=2, padding=1),
                _block(256, 128, 256, kernel_size=4, padding=1)]
    raise ValueError(f"VGG16 SSD is defined for 300 or 512 px inputs, not {image_size}")


def build_vgg_ssd(spec: PriorSpec, num_classes: int, image_size: int) -> SSD:
    """SSD300 or SSD512 (``image_size``) on VGG16 with priors ``spec``."""
    if spec.image_size != image_size:
        raise ValueError(f"SSD{image_size} needs {image_size} px priors; spec {spec.name!r} is for {spec.image_size} px")
    backbone = VGG16Base()
    extras = vgg_extras(spec.image_size)
    channels = list(backbone.out_channels) + [block[2].out_channels for block in extras]
    anchors = spec.boxes_per_location
    if len(channels) != len(anchors):
        raise ValueError(f"prior spec {spec.name!r} has {len(anchors)} sources, the VGG16 SSD has {len(channels)}")
    loc = [nn.Conv2d(c, a * 4, kernel_size=3, padding=1) for c, a in zip(channels, anchors)]
    conf = [nn.Conv2d(c, a * num_classes, kernel_size=3, padding=1) for c, a in zip(channels, anchors)]
    return SSD(backbone, extras, SSDHead(loc, conf, num_classes), spec, Normalize(VGG_MEAN))
