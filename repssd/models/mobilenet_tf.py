"""The TensorFlow Object Detection API's SSDLite + MobileNetV2 (``ssd_mobilenet_v2`` feature
extractor with ``use_depthwise``) and SSD + MobileNetV2 (without it), layer for layer, so that
its frozen graphs and TFLite files import exactly.

What differs from :mod:`repssd.models.mobilenet` (pytorch-ssd's layout):

- TF-slim's MobileNetV2 (depth 1.0, expansion 6) with BatchNorm eps 1e-3 and ReLU6 everywhere;
  every convolution is TF ``SAME``-padded: a stride-2 convolution pads ``total // 2`` before
  and the rest after, so on an even side (300 -> 150) it pads 0 on the top/left and 1 on the
  bottom/right, where PyTorch's symmetric padding would shift every window by one pixel.
- Sources: ``expanded_conv_13``'s expansion output (576 channels, 19x19 at 300 px), ``Conv_1``
  (1280, 10x10) and four extra layers ``layer_19_{1,2}_Conv2d_{2..5}`` (1x1 conv -> 3x3
  depthwise stride 2 -> 1x1 conv, each with BN + ReLU6) at 5, 3, 2, 1.
- Heads: per source a 3x3 depthwise conv + BN + ReLU6, then a 1x1 conv with bias, for the box
  encodings and for the class logits separately.
- ``ssd_mbv2_tf`` (the API's ``ssd_mobilenet_v2`` config): the same base; the extras' 3x3
  stride-2 layers are full convolutions (``layer_19_2_Conv2d_k_3x3_s2_oup``, no depthwise), and
  the heads are one 1x1 convolution with bias per source (``kernel_size: 1``).
- ``ssd_mbv1_tf`` (``ssd_mobilenet_v1``): those extras and heads on TF-slim's MobileNetV1
  (``Conv2d_0``, then 13 depthwise-separable ``Conv2d_i_depthwise`` / ``Conv2d_i_pointwise``
  pairs, ReLU6); sources ``Conv2d_11_pointwise`` (512 channels, 19x19) and ``Conv2d_13_pointwise``
  (1024, 10x10).
- Priors: TF's multiple-grid anchor generator (:class:`~repssd.priors.GridAnchorSpec`), built
  for the grid sizes the network's feature maps have at the chosen input size, so the model
  runs at any input size (300x300, 512x512, 640x384, ...). Sides are ``ceil(n / 2)`` per
  stride-2 layer, read off a forward pass on the ``meta`` device.

The box channels are in repssd's (x, y, w, h) order (the importer reorders TF's (y, x, h, w)),
so matcher, coder, losses and post-processing are the usual ones.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..priors import GridAnchorSpec
from .ssd import SSD, Normalize, SSDHead

__all__ = ["SamePadConv2d", "TFMobileNetV1", "TFMobileNetV2", "build_tf_ssd", "build_ssdlite_mbv2_tf",
           "build_ssd_mbv2_tf", "build_ssd_mbv1_tf", "MBV1_BLOCKS", "MBV2_BLOCKS", "EXTRA_LAYERS", "TF_MEAN", "TF_STD", "BN_EPS"]

TF_MEAN, TF_STD = (127.5, 127.5, 127.5), 127.5  # x * (2 / 255) - 1, the graph's Preprocessor
BN_EPS = 1e-3
# TF-slim mobilenet_v2.V2_DEF after the first conv: (expansion, output channels, repeats, first stride)
MBV2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))
SOURCE_BLOCK = 13  # the first source is expanded_conv_13's expansion output
# TF-slim mobilenet_v1.MOBILENETV1_CONV_DEFS after Conv2d_0: (stride, output channels) of Conv2d_1 .. Conv2d_13
MBV1_BLOCKS = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512), (1, 512), (1, 512), (1, 512),
               (1, 512), (2, 1024), (1, 1024))
MBV1_SOURCE = 11  # the first source is Conv2d_11_pointwise
EXTRA_LAYERS = ((256, 512), (128, 256), (128, 256), (64, 128))  # (1x1 channels, output channels)


class SamePadConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's ``SAME`` padding: output side ``ceil(n / stride)``, the
    padding split ``total // 2`` before and the rest after (asymmetric for stride 2 on even sides)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 bias: bool = False) -> None:
        symmetric = (kernel_size - 1) // 2 if stride == 1 else 0  # stride 1, odd kernel: SAME is symmetric
        super().__init__(in_channels, out_channels, kernel_size, stride, symmetric, groups=groups, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad order: left, right, top, bottom
            total = max((math.ceil(size / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


def conv_bn(inp: int, oup: int, kernel_size: int = 1, stride: int = 1, depthwise: bool = False,
            relu: bool = True) -> nn.Sequential:
    """SAME conv (no bias) -> BatchNorm (eps 1e-3) [-> ReLU6], TF-slim's ``conv2d`` with ``normalizer_fn``."""
    layers = [SamePadConv2d(inp, oup, kernel_size, stride, groups=inp if depthwise else 1), nn.BatchNorm2d(oup, BN_EPS)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if relu else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """TF-slim ``expanded_conv``: [expand 1x1] -> depthwise 3x3 -> project 1x1 (linear), with the
    input added back when the stride is 1 and the channels agree."""

    def __init__(self, inp: int, oup: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = inp * expansion
        self.expand = conv_bn(inp, mid) if expansion != 1 else None
        self.depthwise = conv_bn(mid, mid, 3, stride, depthwise=True)
        self.project = conv_bn(mid, oup, relu=False)
        self.residual = stride == 1 and inp == oup

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x) if self.expand is not None else x))
        return x + out if self.residual else out


class TFMobileNetV2(nn.Module):
    """TF-slim MobileNetV2 (depth 1.0) -> ``[expanded_conv_13 expansion (576 ch), Conv_1 (1280 ch)]``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = conv_bn(3, 32, 3, 2)
        blocks, inp = [], 32
        for expansion, oup, repeats, stride in MBV2_BLOCKS:
            for k in range(repeats):
                blocks.append(InvertedResidual(inp, oup, stride if k == 0 else 1, expansion))
                inp = oup
        self.blocks = nn.ModuleList(blocks)
        self.conv_1 = conv_bn(inp, 1280)
        self.out_channels = (self.blocks[SOURCE_BLOCK].expand[0].out_channels, 1280)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.conv(x)
        for block in self.blocks[:SOURCE_BLOCK]:
            x = block(x)
        tapped = self.blocks[SOURCE_BLOCK]
        expanded = tapped.expand(x)
        x = tapped.project(tapped.depthwise(expanded))  # stride 2: no residual
        for block in self.blocks[SOURCE_BLOCK + 1:]:
            x = block(x)
        return [expanded, self.conv_1(x)]


class TFMobileNetV1(nn.Module):
    """TF-slim MobileNetV1 (depth 1.0) -> ``[Conv2d_11_pointwise (512 ch), Conv2d_13_pointwise (1024 ch)]``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = conv_bn(3, 32, 3, 2)
        blocks, inp = [], 32
        for stride, oup in MBV1_BLOCKS:
            blocks.append(nn.Sequential(conv_bn(inp, inp, 3, stride, depthwise=True), conv_bn(inp, oup)))
            inp = oup
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = (MBV1_BLOCKS[MBV1_SOURCE - 1][1], MBV1_BLOCKS[-1][1])

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.conv(x)
        sources = []
        for index, block in enumerate(self.blocks, start=1):
            x = block(x)
            if index in (MBV1_SOURCE, len(self.blocks)):
                sources.append(x)
        return sources


def _extra(inp: int, mid: int, oup: int, lite: bool = True) -> nn.Sequential:
    """``layer_19_1_Conv2d_k_1x1_mid`` -> SSDLite: ``layer_19_2_Conv2d_k_3x3_s2_oup_depthwise`` ->
    ``..._oup`` (1x1); SSD: ``layer_19_2_Conv2d_k_3x3_s2_oup`` (a full 3x3 convolution)."""
    if not lite:
        return nn.Sequential(conv_bn(inp, mid), conv_bn(mid, oup, 3, 2))
    return nn.Sequential(conv_bn(inp, mid), conv_bn(mid, mid, 3, 2, depthwise=True), conv_bn(mid, oup))


def _predictor(inp: int, oup: int, lite: bool = True) -> nn.Module:
    """``BoxPredictor_i/{BoxEncoding,Class}Predictor``: SSDLite: depthwise 3x3 + BN + ReLU6, then 1x1
    conv with bias; SSD: the 1x1 conv with bias alone."""
    if not lite:
        return nn.Conv2d(inp, oup, 1)
    return nn.Sequential(conv_bn(inp, inp, 3, depthwise=True), nn.Conv2d(inp, oup, 1))


_MAP_SIZES: dict[tuple, tuple[tuple[int, int], ...]] = {}  # (base, lite, width, height) -> feature_map_sizes


def feature_map_sizes(backbone: nn.Module, extras: nn.ModuleList, width: int, height: int) -> tuple[tuple[int, int], ...]:
    """(height, width) of every source at a ``width`` x ``height`` input, from a ``meta``-device
    forward pass (no memory, no arithmetic)."""
    with torch.device("meta"):
        x = torch.empty(1, 3, height, width)
    sources = list(_meta_forward(backbone, x))
    for extra in extras:
        sources.append(_meta_forward(extra, sources[-1]))
    return tuple((int(s.shape[-2]), int(s.shape[-1])) for s in sources)


def _meta_forward(module: nn.Module, x: Tensor):
    """``module(x)`` on ``meta`` tensors in eval mode, without touching the module's tensors: shapes only."""
    params = {name: torch.empty_like(p, device="meta") for name, p in module.named_parameters()}
    buffers = {name: torch.empty_like(b, device="meta") for name, b in module.named_buffers()}
    was_training = module.training
    try:
        return torch.func.functional_call(module.eval(), {**params, **buffers}, (x,))
    finally:
        module.train(was_training)


def build_ssdlite_mbv2_tf(spec: GridAnchorSpec, num_classes: int, anchor_reference: float | None = None) -> SSD:
    """SSDLite + MobileNetV2 as the TF Object Detection API builds it; see :func:`build_tf_ssd`."""
    return build_tf_ssd(spec, num_classes, anchor_reference, lite=True, base="v2")


def build_ssd_mbv2_tf(spec: GridAnchorSpec, num_classes: int, anchor_reference: float | None = None) -> SSD:
    """SSD + MobileNetV2 as the TF Object Detection API's ``ssd_mobilenet_v2`` config builds it
    (full 3x3 extras, 1x1 box predictors); see :func:`build_tf_ssd`."""
    return build_tf_ssd(spec, num_classes, anchor_reference, lite=False, base="v2")


def build_ssd_mbv1_tf(spec: GridAnchorSpec, num_classes: int, anchor_reference: float | None = None) -> SSD:
    """SSD + MobileNetV1 as the TF Object Detection API's ``ssd_mobilenet_v1`` config builds it
    (TF-slim MobileNetV1, full 3x3 extras, 1x1 box predictors); see :func:`build_tf_ssd`."""
    return build_tf_ssd(spec, num_classes, anchor_reference, lite=False, base="v1")


def build_tf_ssd(spec: GridAnchorSpec, num_classes: int, anchor_reference: float | None = None,
                 lite: bool = True, base: str = "v2") -> SSD:
    """An SSD (``lite``: SSDLite heads and extras) on TF-slim MobileNet ``base`` (``v1``/``v2``) as the
    TF Object Detection API builds it, on ``spec``'s input size.

    ``spec.feature_maps`` is ignored and replaced by the grid sizes this network has at
    ``spec.image_size``, so any input size gives matching priors. ``anchor_reference`` (e.g. 300)
    keeps the anchors' pixel sizes as on a shorter side of that many pixels (see
    :class:`~repssd.priors.GridAnchorSpec`); None scales them with the input, as TF does.
    """
    width, height = spec.input_size
    if min(width, height) < 33:  # below 33 px the last stride-2 layers see a 1x1 map already
        raise ValueError(f"{'ssdlite' if lite else 'ssd'}_mb{base}_tf needs inputs of at least 33x33 px, "
                         f"got {width}x{height}")
    backbone = TFMobileNetV2() if base == "v2" else TFMobileNetV1()
    channels = list(backbone.out_channels)
    extras = []
    for mid, oup in EXTRA_LAYERS:
        extras.append(_extra(channels[-1], mid, oup, lite))
        channels.append(oup)
    extras = nn.ModuleList(extras)
    key = (base, lite, width, height)  # the architecture fixes the map sizes: the meta pass runs once per key
    if key not in _MAP_SIZES:
        _MAP_SIZES[key] = feature_map_sizes(backbone, extras, width, height)
    spec = replace(spec.with_feature_maps(_MAP_SIZES[key]), reference_size=anchor_reference)
    anchors = spec.boxes_per_location
    head = SSDHead([_predictor(c, a * 4, lite) for c, a in zip(channels, anchors)],
                   [_predictor(c, a * num_classes, lite) for c, a in zip(channels, anchors)], num_classes)
    return SSD(backbone, list(extras), head, spec, Normalize(TF_MEAN, TF_STD))
