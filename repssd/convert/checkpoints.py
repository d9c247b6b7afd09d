"""Weight import: repssd checkpoints, ssd.pytorch, its ``vgg16_reducedfc.pth``, torchvision, and
base nets (repssd backbones, torchvision classifiers' ``features``).

``load_weights(model, path)`` reads any of these (always ``torch.load(weights_only=True)``),
recognises the format from the keys, renames them to repssd's layout and loads them, or raises
:class:`WeightsError` naming the file and the missing, unexpected or mis-shaped keys.

=================  ==================================================  ======================
format             keys                                                loads into
=================  ==================================================  ======================
repssd             ``backbone.*``, ``extras.*``, ``head.*``             any repssd model
ssd.pytorch        ``vgg.N``, ``L2Norm.weight``, ``extras.N``,         ``ssd300_vgg16``
                   ``loc.N``, ``conf.N`` (``ssd300_mAP_77.43_v2.pth``)
vgg16_reducedfc    ``N.weight`` / ``N.bias`` (ssd.pytorch's base net)   the VGG16 base only
torchvision        ``backbone.features``, ``backbone.extra``,          ``ssd300_vgg16`` built
                   ``head.*_head.module_list`` (``ssd300_vgg16``)      with its priors,
                                                                       ``ssd300_torchvision``
repssd_backbone    ``backbone.*`` only (``weights/mbv2_imagenet.pth``)  the backbone only
torchvision_       ``features.*``, ``classifier.*`` dropped            ``backbone.features``
features           (``mobilenet_v2(weights=...).state_dict()``)        only
=================  ==================================================  ======================

The base-net formats (``vgg16_reducedfc``, ``repssd_backbone``, ``torchvision_features``) start
training (``--base-weights``): they must cover every tensor of the part they fill, exactly.
"""
from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ..models import MODELS, build_model
from ..priors import get_spec

__all__ = ["WeightsError", "load_weights", "read_weights", "convert_state_dict", "detect_format",
           "infer_num_classes", "from_torchvision", "load_model", "mismatch_report",
           "config_beside", "BASE_FORMATS"]

StateDict = Mapping[str, Tensor]


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit the model."""


def _ssd_pytorch_key(key: str) -> str:
    if key == "L2Norm.weight":
        return "backbone.l2norm.weight"
    if m := re.fullmatch(r"extras\.(\d+)\.(.+)", key):  # flat list -> (1x1, 3x3) pairs
        index = int(m[1])
        return f"extras.{index // 2}.{0 if index % 2 == 0 else 2}.{m[2]}"
    for old, new in (("vgg.", "backbone.features."), ("loc.", "head.loc."), ("conf.", "head.conf.")):
        if key.startswith(old):
            return new + key[len(old):]
    return key


def _torchvision_key(key: str) -> str:
    if key == "backbone.scale_weight":
        return "backbone.l2norm.weight"
    if m := re.fullmatch(r"backbone\.extra\.0\.7\.([13])\.(.+)", key):  # fc6 / fc7 -> conv6 / conv7
        return f"backbone.features.{31 if m[1] == '1' else 33}.{m[2]}"
    if m := re.fullmatch(r"backbone\.extra\.0\.(\d)\.(.+)", key):  # pool4 .. conv5_3 follow conv4_3
        return f"backbone.features.{23 + int(m[1])}.{m[2]}"
    if m := re.fullmatch(r"backbone\.extra\.(\d+)\.(.+)", key):
        return f"extras.{int(m[1]) - 1}.{m[2]}"
    for old, new in (("head.regression_head.module_list.", "head.loc."),
                     ("head.classification_head.module_list.", "head.conf.")):
        if key.startswith(old):
            return new + key[len(old):]
    return key


_RENAMERS: dict[str, Callable[[str], str | None]] = {  # None: a key the format's file holds but no model uses
    "repssd": lambda key: key,
    "ssd.pytorch": _ssd_pytorch_key,
    "vgg16_reducedfc": lambda key: "backbone.features." + key,
    "torchvision": _torchvision_key,
    "repssd_backbone": lambda key: key,
    "torchvision_features": lambda key: None if key.startswith("classifier.") else "backbone." + key,
}

# base-net formats -> the prefix of the model's keys they fill
BASE_FORMATS = {"vgg16_reducedfc": "backbone.features.", "repssd_backbone": "backbone.",
                "torchvision_features": "backbone.features."}


def detect_format(state_dict: StateDict) -> str:
    """Name the layout of ``state_dict``: one of ``repssd``, ``ssd.pytorch``, ``vgg16_reducedfc``,
    ``torchvision``, ``repssd_backbone``, ``torchvision_features``; raises :class:`WeightsError`
    for anything else."""
    keys = list(state_dict)
    if any(k.startswith("head.classification_head.") for k in keys) or "backbone.scale_weight" in keys:
        return "torchvision"
    if any(k.startswith("vgg.") for k in keys) and "L2Norm.weight" in keys:
        return "ssd.pytorch"
    if keys and all(re.fullmatch(r"\d+\.(weight|bias)", k) for k in keys):
        return "vgg16_reducedfc"
    if any(k.startswith("backbone.") for k in keys) and any(k.startswith("head.") for k in keys):
        return "repssd"
    if keys and all(k.startswith("backbone.") for k in keys):
        return "repssd_backbone"
    if any(k.startswith("features.") for k in keys) and all(k.startswith(("features.", "classifier.")) for k in keys):
        return "torchvision_features"
    raise WeightsError("unrecognised weights layout; first keys: " + ", ".join(keys[:5]))


def convert_state_dict(state_dict: StateDict) -> tuple[dict[str, Tensor], str]:
    """``state_dict`` in any known layout -> (the same tensors under repssd key names, format)."""
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}  # DataParallel
    fmt = detect_format(state_dict)
    rename = _RENAMERS[fmt]
    return {new: v for k, v in state_dict.items() if (new := rename(k)) is not None}, fmt


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], str]:
    """Read a weights file -> (state_dict under repssd key names, source format).

    Accepts a bare state_dict or a checkpoint dict holding one under ``"model"`` or
    ``"state_dict"``; loads with ``weights_only=True`` onto the CPU.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    foreign = _foreign_format(path)
    if foreign:
        raise WeightsError(f"{path}: {foreign}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for corrupt or foreign files
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state_dict of tensors")
    try:
        return convert_state_dict(obj)
    except WeightsError as err:
        raise WeightsError(f"{path}: {err}") from None


def _foreign_format(path: Path) -> str | None:
    """What to do with a model file of another framework (by its header or name), or None."""
    with path.open("rb") as file:
        head = file.read(8)
    if head[4:8] == b"TFL3":
        return f"a TFLite model, not PyTorch weights; convert it first: python -m repssd.convert tflite {path} --out FILE.pth"
    if path.suffix == ".pb":
        return (f"a TensorFlow graph, not PyTorch weights; convert it first: python -m repssd.convert tf-graph {path} "
                "--out FILE.pth")
    if path.suffix == ".onnx":
        return "an ONNX model, not PyTorch weights (repssd exports ONNX; it loads .pth weights)"
    return None


def mismatch_report(expected: StateDict, given: StateDict) -> str:
    """The keys of ``expected`` that ``given`` lacks, those it has in excess and the mis-shaped
    ones, 8 of each named; empty when ``given`` fits exactly."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k} {tuple(given[k].shape)} (model: {tuple(expected[k].shape)})"
              for k in expected if k in given and given[k].shape != expected[k].shape]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" ... and {len(items) - 8} more" if len(items) > 8 else ""
            parts.append(f"{label} ({len(items)}): {', '.join(items[:8])}{more}")
    return "; ".join(parts)


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Load a weights file of any known format into ``model``; returns the format's name.

    Base-net weights (:data:`BASE_FORMATS`) fill only the part of the model they are for, e.g.
    ``model.backbone.features`` (the rest keeps its initialisation); every other format must cover
    the whole model exactly.
    """
    state, fmt = read_weights(path)
    _load_state(model, state, fmt, path)
    return fmt


def _load_state(model: nn.Module, state: StateDict, fmt: str, path: str | Path) -> None:
    expected = model.state_dict()
    if fmt in BASE_FORMATS:
        expected = {k: v for k, v in expected.items() if k.startswith(BASE_FORMATS[fmt])}
    report = mismatch_report(expected, state)
    spec = getattr(model, "spec", None)
    if report:
        raise WeightsError(f"{path}: {fmt} weights do not fit this model{_classes_hint(model, state)}: {report}")
    if fmt == "torchvision" and spec is not None and spec.name != "ssd300_torchvision":
        warnings.warn(f"{path}: torchvision's ssd300_vgg16 was trained with the 'ssd300_torchvision' priors, "
                      f"this model uses {spec.name!r}; build it with spec='ssd300_torchvision' to keep its "
                      "detections")
    model.load_state_dict(state, strict=fmt not in BASE_FORMATS)


def config_beside(path: Path) -> dict:
    """The config saved with a checkpoint: ``FILE.json`` beside ``FILE.pth`` (imported weights),
    else the training run's ``DIR/config.json`` for ``DIR/checkpoints/x.pth`` or ``DIR/x.pth``;
    empty when there is none."""
    path = Path(path)
    for config in (path.with_suffix(".json"), path.parent / "config.json", path.parent.parent / "config.json"):
        if config.is_file() and config != path:
            try:
                data = json.loads(config.read_text())
            except (OSError, ValueError) as err:
                raise WeightsError(f"{config}: unreadable training config ({err})") from None
            if not isinstance(data, dict):
                raise WeightsError(f"{config}: not a training config (a JSON {type(data).__name__}, "
                                   "not an object)")
            return data
    return {}


def load_model(path: str | Path, name: str | None = None, spec: str | None = None, **options) -> tuple[nn.Module, dict]:
    """Build the model a weights file is for and load it.

    The architecture is ``name``, else the ``model`` of the config saved beside the checkpoint
    (see :func:`config_beside`), else ``ssd300_vgg16`` for ssd.pytorch and torchvision weights;
    the input size is the config's ``image_size`` (or ``options["image_size"]``); the number of
    classes is read off the classification head.

    Returns:
        (model in eval mode, the training config beside the checkpoint or ``{}``).
    """
    path = Path(path)
    state, fmt = read_weights(path)
    if fmt in BASE_FORMATS:
        raise WeightsError(f"{path}: {fmt} base-net weights have no detection head; start training from them "
                           "instead (--base-weights)")
    config = config_beside(path)
    name = name or config.get("model") or ("ssd300_vgg16" if fmt in ("ssd.pytorch", "torchvision") else None)
    if name is None:
        raise WeightsError(f"{path}: cannot tell the architecture; pass the model name (one of {', '.join(MODELS)})")
    if name not in MODELS:
        raise WeightsError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    spec = spec or config.get("prior_spec") or ("ssd300_torchvision" if fmt == "torchvision" else MODELS[name][1])
    options = {**config.get("model_options", {}), **options}
    if config.get("image_size") and "image_size" not in options:
        options["image_size"] = config["image_size"]
    num_classes = infer_num_classes(state, get_spec(spec).boxes_per_location)
    names = config.get("class_names")
    if isinstance(names, list) and len(names) != num_classes - 1:  # labels would be named wrong or not at all
        raise WeightsError(f"{path}: the checkpoint has {num_classes - 1} classes but the config.json beside it names "
                           f"{len(names)} ({', '.join(map(str, names[:5]))}{', ...' if len(names) > 5 else ''}); "
                           "they are not from the same run")
    model = build_model(name, num_classes, spec=spec, **options)
    _load_state(model, state, fmt, path)
    return model.eval(), config


def _classes_hint(model: nn.Module, state: StateDict) -> str:
    """`` (weights for 21 classes, model has 5)`` when the classification heads disagree."""
    spec = getattr(model, "spec", None)
    try:
        theirs = infer_num_classes(state, spec.boxes_per_location) if spec is not None else None
    except WeightsError:
        return ""
    ours = getattr(model, "num_classes", None)
    return f" (weights for {theirs} classes, model has {ours})" if theirs not in (None, ours) else ""


def infer_num_classes(state_dict: StateDict, boxes_per_location: tuple[int, ...]) -> int:
    """C (background included) from a repssd-keyed state_dict's first classification layer."""
    convs = [v for k, v in state_dict.items() if k.startswith("head.conf.0.") and k.endswith("weight") and v.ndim == 4]
    if not convs:
        raise WeightsError("no classification head (head.conf.0.*) in these weights")
    channels = convs[-1].shape[0]
    if channels % boxes_per_location[0]:
        raise WeightsError(f"classification head has {channels} channels, not a multiple of "
                           f"{boxes_per_location[0]} boxes per location")
    return channels // boxes_per_location[0]


def from_torchvision(state_dict: StateDict) -> nn.Module:
    """A repssd ``ssd300_vgg16`` with ``ssd300_torchvision`` priors (torchvision's
    DefaultBoxGenerator) holding the weights of a torchvision ``ssd300_vgg16`` ``state_dict``."""
    state, fmt = convert_state_dict(state_dict)
    if fmt != "torchvision":
        raise WeightsError(f"expected torchvision ssd300_vgg16 weights, got the {fmt} layout")
    spec = get_spec("ssd300_torchvision")
    model = build_model("ssd300_vgg16", infer_num_classes(state, spec.boxes_per_location), spec=spec)
    model.load_state_dict(state)
    return model
