"""SSD models by name: ``build_model(name, num_classes)``.

=================  ===============================================  ===================
name               architecture                                     priors
=================  ===============================================  ===================
ssd300_vgg16       SSD300, VGG16 (ssd.pytorch)                      ssd300_voc (8732)
ssd512_vgg16       SSD512, VGG16 (original Caffe SSD512)            ssd512_voc (24564)
mb1_ssd            MobileNetV1 SSD (qfgaohao/pytorch-ssd)           mobilenet_ssd300 (3000)
mb1_ssdlite        MobileNetV1 SSD-Lite (qfgaohao/pytorch-ssd)      mobilenet_ssd300 (3000)
mb2_ssdlite        MobileNetV2 SSD-Lite (torchvision MobileNetV2)   mobilenet_ssd300 (3000)
ssdlite_mbv2_tf    TF Object Detection API SSDLite + MobileNetV2    tf_ssd_anchors (1917 at
                   (imports frozen graphs: repssd.convert tf-graph) 300 px; any input size)
ssd_mbv2_tf        TF Object Detection API SSD + MobileNetV2        tf_ssd_anchors (as
                   (imports TFLite files: repssd.convert tflite)    ssdlite_mbv2_tf)
ssd_mbv1_tf        TF Object Detection API SSD + MobileNetV1        tf_ssd_anchors (as
                   (imports TFLite files: repssd.convert tflite)    ssdlite_mbv2_tf)
=================  ===============================================  ===================
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..priors import GridAnchorSpec, PriorSpec, get_spec
from .mobilenet import build_mb1_ssd, build_mb2_ssdlite
from .mobilenet_tf import build_ssd_mbv1_tf, build_ssd_mbv2_tf, build_ssdlite_mbv2_tf
from .ssd import SSD, L2Norm, Normalize, SSDHead
from .vgg import build_vgg_ssd

__all__ = ["MODELS", "TF_MODELS", "build_model", "parse_image_size", "size_option", "SSD", "SSDHead", "Normalize", "L2Norm"]

# name -> (builder(spec, num_classes, **options), default prior spec)
MODELS: dict[str, tuple[Callable[..., SSD], str]] = {
    "ssd300_vgg16": (partial(build_vgg_ssd, image_size=300), "ssd300_voc"),
    "ssd512_vgg16": (partial(build_vgg_ssd, image_size=512), "ssd512_voc"),
    "mb1_ssd": (lambda spec, n, **kw: build_mb1_ssd(spec, n, lite=False, **kw), "mobilenet_ssd300"),
    "mb1_ssdlite": (lambda spec, n, **kw: build_mb1_ssd(spec, n, lite=True, **kw), "mobilenet_ssd300"),
    "mb2_ssdlite": (build_mb2_ssdlite, "mobilenet_ssd300"),
    "ssdlite_mbv2_tf": (build_ssdlite_mbv2_tf, "tf_ssd_anchors"),
    "ssd_mbv2_tf": (build_ssd_mbv2_tf, "tf_ssd_anchors"),
    "ssd_mbv1_tf": (build_ssd_mbv1_tf, "tf_ssd_anchors"),
}
# the TF layouts (priors from TF's grid anchor generator): any input size, --anchor-reference
TF_MODELS = tuple(name for name, (_, spec) in MODELS.items() if spec == "tf_ssd_anchors")


def build_model(name: str, num_classes: int, spec: PriorSpec | GridAnchorSpec | str | None = None,
                image_size: int | tuple[int, int] | None = None, **options) -> SSD:
    """Build model ``name`` with ``num_classes`` outputs per prior (C, background included).

    Args:
        spec: prior layout, by default the model's own (e.g. ``"ssd300_coco"`` for COCO
            scales on SSD300; ``"ssd300_coco"`` is also torchvision's DefaultBoxGenerator).
        image_size: network input, ``S`` or ``(width, height)``; only models whose priors
            follow their feature maps (:data:`TF_MODELS`) take other sizes than their spec's.
        options: builder options, e.g. ``width_mult=0.5`` for the MobileNet models.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    if num_classes < 2:
        raise ValueError(f"num_classes counts background too and must be >= 2, got {num_classes}")
    builder, default_spec = MODELS[name]
    spec = get_spec(spec or default_spec) if not isinstance(spec, (PriorSpec, GridAnchorSpec)) else spec
    if image_size is not None:
        spec = _resized(name, spec, parse_image_size(image_size))
    model = builder(spec, num_classes, **options)
    model.arch = name
    return model


def parse_image_size(value: int | str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``300``, ``"512"``, ``"640x384"`` (width x height) or ``(640, 384)`` -> ``(width, height)``."""
    if isinstance(value, str):
        parts = value.lower().split("x")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"image size {value!r}: expected S or WIDTHxHEIGHT, e.g. 512 or 640x384")
        value = [int(p) for p in parts]
    if isinstance(value, int):
        value = (value, value)
    width, height = (int(v) for v in (list(value) * 2)[:2]) if len(value) == 1 else (int(v) for v in value)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return width, height


def _resized(name: str, spec: PriorSpec | GridAnchorSpec, size: tuple[int, int]) -> PriorSpec | GridAnchorSpec:
    if isinstance(spec, GridAnchorSpec):
        return spec.with_input_size(*size)
    if size != spec.input_size:
        raise ValueError(f"{name} takes {spec.image_size}x{spec.image_size} inputs (its priors are fixed to "
                         f"{spec.name!r}); other input sizes work with {' and '.join(TF_MODELS)}")
    return spec


def size_option(value: str | None, anchor_reference: float | None = None) -> dict:
    """``--image-size`` and ``--anchor-reference`` of the CLIs as builder options (``{}`` when not given)."""
    options = {} if value is None else {"image_size": parse_image_size(value)}
    return {**options, "anchor_reference": anchor_reference} if anchor_reference else options
