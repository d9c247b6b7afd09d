"""SSD models by name: ``build_model(name, num_classes)``.

=================  ===============================================  ===================
name               architecture                                     priors
=================  ===============================================  ===================
ssd300_vgg16       SSD300, VGG16 (ssd.pytorch)                      ssd300_voc (8732)
ssd512_vgg16       SSD512, VGG16 (original Caffe SSD512)            ssd512_voc (24564)
mb1_ssd            MobileNetV1 SSD (qfgaohao/pytorch-ssd)           mobilenet_ssd300 (3000)
mb1_ssdlite        MobileNetV1 SSD-Lite (qfgaohao/pytorch-ssd)      mobilenet_ssd300 (3000)
mb2_ssdlite        MobileNetV2 SSD-Lite (torchvision MobileNetV2)   mobilenet_ssd300 (3000)
=================  ===============================================  ===================
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..priors import PriorSpec, get_spec
from .mobilenet import build_mb1_ssd, build_mb2_ssdlite
from .ssd import SSD, L2Norm, Normalize, SSDHead
from .vgg import build_vgg_ssd

__all__ = ["MODELS", "build_model", "SSD", "SSDHead", "Normalize", "L2Norm"]

# name -> (builder(spec, num_classes, **options), default prior spec)
MODELS: dict[str, tuple[Callable[..., SSD], str]] = {
    "ssd300_vgg16": (partial(build_vgg_ssd, image_size=300), "ssd300_voc"),
    "ssd512_vgg16": (partial(build_vgg_ssd, image_size=512), "ssd512_voc"),
    "mb1_ssd": (lambda spec, n, **kw: build_mb1_ssd(spec, n, lite=False, **kw), "mobilenet_ssd300"),
    "mb1_ssdlite": (lambda spec, n, **kw: build_mb1_ssd(spec, n, lite=True, **kw), "mobilenet_ssd300"),
    "mb2_ssdlite": (build_mb2_ssdlite, "mobilenet_ssd300"),
}


def build_model(name: str, num_classes: int, spec: PriorSpec | str | None = None, **options) -> SSD:
    """Build model ``name`` with ``num_classes`` outputs per prior (C, background included).

    Args:
        spec: prior layout, by default the model's own (e.g. ``"ssd300_coco"`` for COCO
            scales on SSD300; ``"ssd300_coco"`` is also torchvision's DefaultBoxGenerator).
        options: builder options, e.g. ``width_mult=0.5`` for the MobileNet models.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    if num_classes < 2:
        raise ValueError(f"num_classes counts background too and must be >= 2, got {num_classes}")
    builder, default_spec = MODELS[name]
    spec = get_spec(spec or default_spec) if not isinstance(spec, PriorSpec) else spec
    model = builder(spec, num_classes, **options)
    model.arch = name
    return model
