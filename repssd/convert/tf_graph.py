"""Import a TF Object Detection API SSDLite + MobileNetV2 frozen graph (``frozen_inference_graph.pb``)
into repssd's ``ssdlite_mbv2_tf``, without TensorFlow: the GraphDef is parsed with the compiled
protos ``tensorboard`` ships, its ``Const`` tensors are read by name, every weight is mapped (none
missing, none left over), and the post-processing the graph runs is read off it too.

Layout changes on the way: conv kernels HWIO -> OIHW, depthwise HWI1 -> I1HW, and the box
predictor's channels (ty, tx, th, tw) per anchor -> repssd's (tx, ty, tw, th). TF's box coder
scale factors (10, 10, 5, 5) are repssd's variances (0.1, 0.2).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import torch
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import graph_pb2
from tensorboard.util import tensor_util
from torch import Tensor

from ..models import build_model
from ..models.mobilenet_tf import EXTRA_LAYERS, MBV1_BLOCKS, MBV2_BLOCKS
from ..files import atomic_path
from .checkpoints import WeightsError

__all__ = ["TFGraphError", "read_graph", "convert_graph", "write_checkpoint", "checkpoint_problem", "tf_names",
           "box_order", "read_labels", "mismatch", "load_mapped", "GRAPH_DEFAULTS"]

WEIGHT_SUFFIXES = ("weights", "depthwise_weights", "biases", "gamma", "beta", "moving_mean", "moving_variance")
BN_KEYS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
# what the TF OD API's ssdlite_mobilenet_v2 configs use where a graph does not say
GRAPH_DEFAULTS = {"score": "sigmoid", "nms_thresh": 0.6, "conf_thresh": 1e-8, "top_k": 100, "image_size": [300, 300]}
_NMS = "Postprocessor/BatchMultiClassNonMaxSuppression/map/while/MultiClassNonMaxSuppression/"


class TFGraphError(WeightsError):
    """A file that is not a readable frozen graph of the supported layout."""


class Graph:
    """A parsed GraphDef: its float/int ``Const`` tensors by node name, and its op types."""

    def __init__(self, path: Path, constants: dict[str, np.ndarray], ops: dict[str, str]) -> None:
        self.path, self.constants, self.ops = path, constants, ops

    def weights(self) -> dict[str, np.ndarray]:
        """The trainable tensors (convolution kernels, biases, BatchNorm parameters)."""
        return {k: v for k, v in self.constants.items() if k.rsplit("/", 1)[-1] in WEIGHT_SUFFIXES}

    def scalar(self, name: str, default):
        """The one-element constant ``name`` as a Python number, or ``default`` if the graph lacks it."""
        value = self.constants.get(name)
        return value.item() if value is not None and value.size == 1 else default


def read_graph(path: str | Path) -> Graph:
    """Parse a frozen GraphDef -> :class:`Graph`; :class:`TFGraphError` naming the file if it is
    missing, truncated or not a graph."""
    path = Path(path)
    if not path.is_file():
        raise TFGraphError(f"{path}: no such graph file")
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeError, ValueError) as err:
        raise TFGraphError(f"{path}: not a TensorFlow GraphDef, or truncated ({type(err).__name__}: {err})") from None
    constants, ops = {}, {}
    for node in graph.node:
        ops[node.name] = node.op
        if node.op == "Const" and "value" in node.attr:
            try:
                constants[node.name] = tensor_util.make_ndarray(node.attr["value"].tensor)
            except (TypeError, ValueError):  # string constants and the like
                continue
    if not ops:
        raise TFGraphError(f"{path}: not a TensorFlow GraphDef (no nodes)")
    return Graph(path, constants, ops)


def _block_name(index: int) -> str:
    return "expanded_conv" if index == 0 else f"expanded_conv_{index}"


def tf_names(num_sources: int = 6, lite: bool = True, base: str = "v2") -> list[tuple[str, str, str]]:
    """(TF scope, repssd module prefix, kind) of every conv/BN pair of ``ssdlite_mbv2_tf``
    (``lite=False``: ``ssd_mbv2_tf``; ``base="v1"`` too: ``ssd_mbv1_tf``); kind is ``conv``,
    ``depthwise`` or ``head`` (1x1 conv with bias, no BatchNorm)."""
    if base == "v1":
        fe = "FeatureExtractor/MobilenetV1/"
        pairs = [(fe + "Conv2d_0", "backbone.conv", "conv")]
        for i in range(1, len(MBV1_BLOCKS) + 1):
            pairs += [(f"{fe}Conv2d_{i}_depthwise", f"backbone.blocks.{i - 1}.0", "depthwise"),
                      (f"{fe}Conv2d_{i}_pointwise", f"backbone.blocks.{i - 1}.1", "conv")]
    else:
        fe = "FeatureExtractor/MobilenetV2/"
        pairs = [(fe + "Conv", "backbone.conv", "conv")]
        index = 0
        for expansion, _, repeats, _ in MBV2_BLOCKS:
            for _ in range(repeats):
                scope, prefix = fe + _block_name(index), f"backbone.blocks.{index}"
                if expansion != 1:
                    pairs.append((scope + "/expand", prefix + ".expand", "conv"))
                pairs += [(scope + "/depthwise", prefix + ".depthwise", "depthwise"),
                          (scope + "/project", prefix + ".project", "conv")]
                index += 1
        pairs.append((fe + "Conv_1", "backbone.conv_1", "conv"))
    for k, (mid, oup) in enumerate(EXTRA_LAYERS):
        layer = k + 2
        pairs.append((f"{fe}layer_19_1_Conv2d_{layer}_1x1_{mid}", f"extras.{k}.0", "conv"))
        if lite:
            pairs += [(f"{fe}layer_19_2_Conv2d_{layer}_3x3_s2_{oup}_depthwise", f"extras.{k}.1", "depthwise"),
                      (f"{fe}layer_19_2_Conv2d_{layer}_3x3_s2_{oup}", f"extras.{k}.2", "conv")]
        else:
            pairs.append((f"{fe}layer_19_2_Conv2d_{layer}_3x3_s2_{oup}", f"extras.{k}.1", "conv"))
    for i in range(num_sources):
        for tf_part, part in (("BoxEncodingPredictor", "loc"), ("ClassPredictor", "conf")):
            if lite:
                pairs += [(f"BoxPredictor_{i}/{tf_part}_depthwise", f"head.{part}.{i}.0", "depthwise"),
                          (f"BoxPredictor_{i}/{tf_part}", f"head.{part}.{i}.1", "head")]
            else:
                pairs.append((f"BoxPredictor_{i}/{tf_part}", f"head.{part}.{i}", "head"))
    return pairs


def _kernel(value: np.ndarray, depthwise: bool) -> Tensor:
    """TF HWIO (depthwise: HW I 1) -> torch OIHW (depthwise: I 1 H W)."""
    return torch.from_numpy(np.ascontiguousarray(value.transpose(2, 3, 0, 1) if depthwise else value.transpose(3, 2, 0, 1)))


def box_order(anchors: int) -> list[int]:
    """Output channels (ty, tx, th, tw) per anchor -> (tx, ty, tw, th)."""
    return [4 * a + k for a in range(anchors) for k in (1, 0, 3, 2)]


def map_weights(graph: Graph, expected: dict[str, Tensor]) -> dict[str, Tensor]:
    """The graph's weights under repssd key names, checked against ``expected`` (the model's
    state_dict); raises naming, by their TF names, the tensors missing, left over or mis-shaped."""
    weights = graph.weights()
    pairs = []  # (TF name, repssd key, depthwise kernel?)
    for scope, prefix, kind in tf_names():
        head = kind == "head"
        pairs.append((f"{scope}/{'depthwise_weights' if kind == 'depthwise' else 'weights'}",
                      f"{prefix}.weight" if head else f"{prefix}.0.weight", kind == "depthwise"))
        pairs += ([(f"{scope}/biases", f"{prefix}.bias", False)] if head else
                  [(f"{scope}/BatchNorm/{tf_key}", f"{prefix}.1.{key}", False) for tf_key, key in BN_KEYS.items()])
    missing = [name for name, _, _ in pairs if name not in weights]
    left = sorted(set(weights) - {name for name, _, _ in pairs})
    state, shapes = {}, []
    for name, key, depthwise in pairs:
        if name not in weights:
            continue
        value = weights[name]
        state[key] = _kernel(value, depthwise) if value.ndim == 4 else torch.from_numpy(value.copy())
        if state[key].shape != expected[key].shape:
            shapes.append(f"{name} {tuple(value.shape)}")
    if missing or left or shapes:
        raise TFGraphError(f"{graph.path}: not the SSDLite + MobileNetV2 layout of ssdlite_mbv2_tf: "
                           f"{mismatch('tensors', missing, left, shapes)}")
    for key in [k for k in state if re.fullmatch(r"head\.loc\.\d+\.1\.(weight|bias)", k)]:  # the 1x1 convs
        state[key] = state[key][box_order(state[key].shape[0] // 4)]
    return state


def mismatch(noun: str, missing: list[str], left: list[str], shapes: list[str]) -> str:
    """``missing tensors (2): a, b; tensors left over (1): c`` (4 named of each)."""
    parts = [f"{label} ({len(items)}): {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
             for label, items in ((f"missing {noun}", missing), (f"{noun} left over", left),
                                  (f"{noun} of other shapes", shapes)) if items]
    return "; ".join(parts)


def load_mapped(model: torch.nn.Module, state: dict[str, Tensor], source: str, path: Path) -> dict[str, Tensor]:
    """Load an importer's ``state`` into ``model`` -> the model's full state_dict (BatchNorm's
    num_batches_tracked counters come from the model); anything else left unfilled is a mapping bug.
    :class:`WeightsError` naming ``path`` when a weight is NaN or infinite: such a file converts to a
    detector that finds nothing."""
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise WeightsError(f"{path}: NaN or infinite weights in {len(broken)} tensor(s), e.g. {broken[0]} "
                           "(a corrupt file)")
    result = model.load_state_dict(state, strict=False)
    unfilled = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")] + result.unexpected_keys
    if unfilled:  # a mapping bug, not a user error
        raise AssertionError(f"the {source} mapping leaves {', '.join(unfilled[:4])} unfilled")
    return model.state_dict()


def postprocessing(graph: Graph) -> dict:
    """Score function, NMS IoU, score threshold and detections per image the graph runs, and its
    input size; values the graph does not hold fall back to :data:`GRAPH_DEFAULTS`."""
    scales = [graph.scalar(f"Postprocessor/Decode/truediv{s}/y", None) for s in ("", "_1", "_2", "_3")]
    if all(v is not None for v in scales) and scales != [10.0, 10.0, 5.0, 5.0]:
        raise TFGraphError(f"{graph.path}: box coder scale factors {scales}; repssd's coder uses (10, 10, 5, 5)")
    score = {"Sigmoid": "sigmoid", "Softmax": "softmax"}.get(graph.ops.get("Postprocessor/convert_scores"),
                                                             GRAPH_DEFAULTS["score"])
    if graph.scalar("Postprocessor/scale_logits/y", 1.0) != 1.0:
        raise TFGraphError(f"{graph.path}: logit scale {graph.scalar('Postprocessor/scale_logits/y', 1.0)} "
                           "(repssd scores unscaled logits)")
    size = graph.constants.get("Preprocessor/map/while/ResizeImage/stack")
    height, width = (int(v) for v in size) if size is not None and size.size == 2 else GRAPH_DEFAULTS["image_size"]
    return {"score": score,
            "nms_thresh": round(float(graph.scalar(_NMS + "non_max_suppression/iou_threshold",
                                                   GRAPH_DEFAULTS["nms_thresh"])), 6),
            "conf_thresh": float(graph.scalar(_NMS + "non_max_suppression/score_threshold",
                                              GRAPH_DEFAULTS["conf_thresh"])),
            "top_k": int(graph.scalar(_NMS + "Minimum_1/x", GRAPH_DEFAULTS["top_k"])),
            "candidates": None, "clip": "after", "image_size": [width, height]}


def _num_classes(graph: Graph) -> int:
    """C (background included) from the first class predictor and the first map's 3 anchors."""
    bias = graph.constants.get("BoxPredictor_0/ClassPredictor/biases")
    if bias is None or bias.ndim != 1 or bias.shape[0] % 3:
        raise TFGraphError(f"{graph.path}: no BoxPredictor_0/ClassPredictor/biases with 3 anchors' class columns: "
                           "not a TF Object Detection API SSD graph")
    return bias.shape[0] // 3


def read_labels(text: str | None, num_classes: int, source: str = "--labels") -> list[str]:
    """Class names for labels 1..C-1 from a TF label map (``item { id: 1 display_name: "person" }``)
    or a plain list (one name per line or comma-separated, background excluded); ``class1`` ...
    without ``text``. ``source`` (the flag or the file) names them in errors: a count that does
    not fit the model, a name given twice."""
    if text is None:
        return [f"class{k}" for k in range(1, num_classes)]
    if re.search(r"^\s*item\s*\{", text, flags=re.M):  # a label map's blocks, not a word inside a class name
        ids = {int(m[1]): m[2] or m[3] for m in re.finditer(
            r"item\s*\{[^}]*?id:\s*(\d+)[^}]*?(?:display_name:\s*[\"']([^\"']*)[\"']|name:\s*[\"']([^\"']*)[\"'])",
            text, flags=re.S)}
        return [ids.get(k, f"class{k}") for k in range(1, num_classes)]
    names = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
    if len(names) != num_classes - 1:
        raise TFGraphError(f"{source}: {len(names)} class names given, but the graph has {num_classes - 1} classes")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise TFGraphError(f"{source}: class name {twice[0]!r} given twice")
    return names


def convert_graph(path: str | Path, labels: str | None = None,
                  labels_source: str = "--labels") -> tuple[dict[str, Tensor], dict]:
    """Read a frozen graph -> (state_dict of ``ssdlite_mbv2_tf``, the config to save beside it);
    ``labels_source`` names ``labels`` in errors (the flag or the label map's file)."""
    graph = read_graph(path)
    num_classes = _num_classes(graph)
    post = postprocessing(graph)
    image_size = post.pop("image_size")
    model = build_model("ssdlite_mbv2_tf", num_classes, image_size=tuple(image_size))
    full = load_mapped(model, map_weights(graph, model.state_dict()), "TF", graph.path)
    names = read_labels(labels, num_classes, labels_source)
    config = {"model": "ssdlite_mbv2_tf", "class_names": names, "image_size": list(image_size), "postprocess": post,
              "source": {"file": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                         "format": "TF Object Detection API frozen graph", "tensors": len(graph.weights())}}
    return full, config


def checkpoint_problem(out: str | Path, overwrite: bool = False) -> str | None:
    """Why ``out`` cannot receive a converted checkpoint (not a ``.pth`` name, a folder, an existing
    file without ``overwrite``, a file where its folder should be), as one line; None if it can."""
    out = Path(out)
    if out.suffix != ".pth":
        return f"{out}: the checkpoint name must end in .pth"
    if out.is_dir():
        return f"{out}: is a folder; --out names the checkpoint file (FILE.pth)"
    if out.exists() and not overwrite:
        return f"{out}: exists; pass --overwrite to replace it (and {out.with_suffix('.json').name} beside it)"
    for parent in out.parents:
        if parent.exists():
            return None if parent.is_dir() else f"{out}: cannot be created, {parent} is a file"
    return None


def write_checkpoint(state: dict[str, Tensor], config: dict, out: str | Path, overwrite: bool = False) -> Path:
    """Save ``{"model": state, "config": config}`` to ``out`` (``.pth``) and ``config`` to the
    ``.json`` beside it, which :func:`~repssd.convert.load_model` reads. Both are written whole or
    not at all (:mod:`repssd.files`); an existing ``out`` is replaced only with ``overwrite``.
    :class:`WeightsError` (one line naming ``out``) otherwise, or when the disk refuses the write,
    in which case what was there before is unchanged."""
    out = Path(out)
    problem = checkpoint_problem(out, overwrite)
    if problem:
        raise WeightsError(problem)
    try:
        with atomic_path(out) as checkpoint, atomic_path(out.with_suffix(".json")) as beside:
            with checkpoint.open("wb") as file:
                torch.save({"model": state, "config": config}, file)
            beside.write_text(json.dumps(config, indent=1))
    except OSError as err:
        raise WeightsError(f"{out}: could not be written ({err.strerror or err}); what was there is unchanged") from None
    return out
