"""Import a TF Object Detection API SSD or SSDLite TFLite file (MobileNetV2; SSD on MobileNetV1)
into repssd's ``ssd_mbv2_tf`` / ``ssdlite_mbv2_tf`` / ``ssd_mbv1_tf``, without TensorFlow: the
flatbuffer is read with the ``tflite`` package (the schema's generated classes), every
convolution is found by the TF scope its output tensor is named after, and every weight is mapped
(none missing, none left over).

What a TFLite export changes, and what the import does about it:

- Weights are fp32 or fp16 (fp16 constants feed ``DEQUANTIZE`` ops): both become float32.
  Integer-quantised models (uint8 / int8 tensors) are refused in one line.
- BatchNorm is folded into the convolutions (a kernel and a bias per convolution). The import
  keeps it folded: each convolution keeps its BatchNorm module, set to the identity (mean 0,
  variance 1, scale ``sqrt(1 + eps)``, shift = the folded bias), so the model has the layout of
  a frozen-graph import and everything that works on one (``--freeze-bn``, L2-SP, export,
  ``fuse_conv_bn``) works on it; fine-tuning can train the scale and shift. Batch statistics
  would renormalise folded activations, so training such weights needs ``--freeze-bn`` (the
  config beside the checkpoint says ``"batchnorm": "folded"`` and the trainer checks it).
- Kernels are OHWI (depthwise: 1HWC) -> OIHW (C1HW); box channels (ty, tx, th, tw) -> repssd's
  (tx, ty, tw, th), as for frozen graphs.
- Anchors and box coder: from a ``TFLite_Detection_PostProcess`` op when the file has one (its
  anchors must equal repssd's multiple-grid anchors to 1e-4, its scales (10, 10, 5, 5)); files
  without it (raw outputs only, e.g. MediaPipe's) are checked by their anchor count per map and
  in all, and take the TF Object Detection API defaults, which the config records.
"""
from __future__ import annotations

import hashlib
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite
import torch
from flatbuffers import flexbuffers
from torch import Tensor

from ..models import build_model
from ..models.mobilenet_tf import BN_EPS
from .checkpoints import WeightsError
from .tf_graph import GRAPH_DEFAULTS, box_order, load_mapped, mismatch, read_labels, tf_names

__all__ = ["TFLiteError", "TFLiteGraph", "read_tflite", "convert_tflite", "select_classes", "layout_names",
           "POSTPROCESS_OP", "LAYOUTS"]

POSTPROCESS_OP = "TFLite_Detection_PostProcess"
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
           9: np.int8, 10: np.float64}
_QUANTISED = (np.uint8, np.int8, np.int16)
_OP_SUFFIXES = {"Relu6", "Relu", "BiasAdd", "Conv2D", "depthwise", "FusedBatchNormV3", "FusedBatchNorm", "add"}


class TFLiteError(WeightsError):
    """A file that is not a readable TFLite SSD of a supported layout."""


@dataclass
class TFLiteTensor:
    name: str
    dtype: type
    shape: tuple[int, ...]
    data: np.ndarray | None  # constants only
    quantised: bool


@dataclass
class TFLiteOp:
    kind: str  # builtin operator name, or the custom code for CUSTOM ops
    inputs: list[int]
    outputs: list[int]
    options: bytes = b""


@dataclass
class TFLiteGraph:
    """The first subgraph of a TFLite model: tensors, operators in execution order, inputs, outputs."""

    path: Path
    tensors: list[TFLiteTensor]
    ops: list[TFLiteOp]
    inputs: list[int]
    outputs: list[int]
    producers: dict[int, TFLiteOp] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.producers = {t: op for op in self.ops for t in op.outputs}

    def constant(self, index: int) -> np.ndarray | None:
        """Tensor ``index`` as float32 if it is a constant or a ``DEQUANTIZE``d fp16 constant, else None."""
        if index < 0:  # an optional input left out
            return None
        tensor = self.tensors[index]
        if tensor.data is not None:
            return tensor.data.astype(np.float32) if tensor.dtype == np.float16 else tensor.data
        op = self.producers.get(index)
        if op is not None and op.kind == "DEQUANTIZE" and self.tensors[op.inputs[0]].data is not None:
            source = self.tensors[op.inputs[0]]
            if source.dtype != np.float16:
                raise TFLiteError(f"{self.path}: {source.name} is {np.dtype(source.dtype).name}-quantised; "
                                  "repssd imports float models (fp32 or fp16 weights) only")
            return source.data.astype(np.float32)
        return None


def _operator_names() -> dict[int, str]:
    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def read_tflite(path: str | Path) -> TFLiteGraph:
    """Parse a TFLite flatbuffer -> :class:`TFLiteGraph`; :class:`TFLiteError` naming the file if it
    is missing, not a TFLite model, truncated, or holds no subgraph."""
    path = Path(path)
    if not path.is_file():
        raise TFLiteError(f"{path}: no such TFLite file")
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise TFLiteError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier)")
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        if model.SubgraphsLength() < 1:
            raise TFLiteError(f"{path}: a TFLite model without a subgraph")
        graph = model.Subgraphs(0)
        names = _operator_names()
        tensors = [_tensor(model, graph.Tensors(i), buf) for i in range(graph.TensorsLength())]
        ops = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            kind = names.get(builtin, f"op{builtin}")
            if kind == "CUSTOM":
                kind = (code.CustomCode() or b"CUSTOM").decode()
            options = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
            ops.append(TFLiteOp(kind, [int(j) for j in op.InputsAsNumpy()] if op.InputsLength() else [],
                                [int(j) for j in op.OutputsAsNumpy()] if op.OutputsLength() else [], options))
        inputs = [int(j) for j in graph.InputsAsNumpy()] if graph.InputsLength() else []
        outputs = [int(j) for j in graph.OutputsAsNumpy()] if graph.OutputsLength() else []
    except TFLiteError:
        raise
    except (IndexError, struct.error, ValueError, TypeError, AttributeError, UnicodeDecodeError) as err:
        raise TFLiteError(f"{path}: truncated or corrupt TFLite file ({type(err).__name__}: {err})") from None
    _check_tables(path, tensors, ops, inputs, outputs)
    return TFLiteGraph(path, tensors, ops, inputs, outputs)


# operators the import reads, and the inputs / outputs it reads of each
_ARITY = {"CONV_2D": (2, 1), "DEPTHWISE_CONV_2D": (2, 1), "DEQUANTIZE": (1, 1), POSTPROCESS_OP: (2, 1)}


def _check_tables(path: Path, tensors: list, ops: list[TFLiteOp], inputs: list[int], outputs: list[int]) -> None:
    """Every tensor index the graph holds lies in its tensor table (-1, an omitted optional input,
    only among operator inputs), and every operator the import reads has the inputs and outputs it
    reads: :class:`TFLiteError` naming the file and the first offender otherwise, so that a corrupt
    index is refused here and not found out deep in the conversion."""
    count = len(tensors)
    tables = [("the graph's inputs", inputs, 0), ("the graph's outputs", outputs, 0)]
    tables += [(f"operator {i} ({op.kind}) inputs", op.inputs, -1) for i, op in enumerate(ops)]
    tables += [(f"operator {i} ({op.kind}) outputs", op.outputs, 0) for i, op in enumerate(ops)]
    for where, indices, lowest in tables:
        bad = [j for j in indices if not lowest <= j < count]
        if bad:
            raise TFLiteError(f"{path}: {where} name tensor {bad[0]}, but the file has {count} tensors (corrupt file)")
    for i, op in enumerate(ops):
        wanted_in, wanted_out = _ARITY.get(op.kind, (0, 0))
        if len(op.inputs) < wanted_in or len(op.outputs) < wanted_out or min(op.inputs[:wanted_in], default=0) < 0:
            raise TFLiteError(f"{path}: operator {i} ({op.kind}) has {len(op.inputs)} inputs and {len(op.outputs)} "
                              "outputs, fewer than it needs (corrupt file)")


def _tensor(model, tensor, buf: bytes) -> TFLiteTensor:
    dtype = _DTYPES.get(tensor.Type())
    shape = tuple(int(s) for s in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    quant = tensor.Quantization()
    quantised = dtype in _QUANTISED or bool(quant is not None and quant.ScaleLength())
    data = None
    buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() > 0 else None
    if buffer is not None and dtype is not None:
        raw = buffer.DataAsNumpy() if buffer.DataLength() else None
        if raw is None and hasattr(buffer, "Offset") and buffer.Offset() > 1:  # > 2 GB files: data after the buffer
            raw = np.frombuffer(buf, np.uint8, buffer.Size(), buffer.Offset())
        if raw is not None and len(raw):
            count = math.prod(shape)
            if len(raw) != count * np.dtype(dtype).itemsize:
                raise ValueError(f"tensor {tensor.Name().decode()} holds {len(raw)} bytes for shape {list(shape)}")
            data = np.frombuffer(raw.tobytes(), dtype).reshape(shape)
    return TFLiteTensor(tensor.Name().decode(), dtype, shape, data, quantised)


def scope_of(tensor_name: str) -> str:
    """The TF scope a convolution's output tensor is named after: ``A/B/expanded_conv/depthwise/Relu6;...``
    -> ``A/B/expanded_conv/depthwise``; ``.../project/BatchNorm/FusedBatchNormV3`` -> ``.../project``."""
    parts = tensor_name.split(";")[0].split("/")
    if len(parts) > 1 and parts[-1] in _OP_SUFFIXES:
        parts = parts[:-1]
    if len(parts) > 1 and parts[-1] == "BatchNorm":
        parts = parts[:-1]
    return "/".join(parts)


def _convolutions(graph: TFLiteGraph) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    """scope -> (kernel OHWI / 1HWC, bias, depthwise?) of every convolution of ``graph``."""
    convs = {}
    for op in graph.ops:
        if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        out = graph.tensors[op.outputs[0]]
        if out.quantised or graph.tensors[op.inputs[0]].quantised:
            raise TFLiteError(f"{graph.path}: integer-quantised model ({out.name} is "
                              f"{np.dtype(out.dtype).name}); repssd imports float models (fp32 or fp16 weights) only")
        kernel = graph.constant(op.inputs[1])
        bias = graph.constant(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        if kernel is None:
            raise TFLiteError(f"{graph.path}: the kernel of {out.name} is not a constant")
        if kernel.ndim != 4 or (bias is not None and bias.ndim != 1):
            raise TFLiteError(f"{graph.path}: the kernel {list(kernel.shape)} or bias of {out.name} has the wrong "
                              "rank (corrupt file)")
        scope = scope_of(out.name)
        if scope in convs:
            raise TFLiteError(f"{graph.path}: two convolutions named {scope}")
        channels = kernel.shape[-1] if op.kind == "DEPTHWISE_CONV_2D" else kernel.shape[0]
        convs[scope] = (kernel, bias if bias is not None else np.zeros(channels, np.float32),
                        op.kind == "DEPTHWISE_CONV_2D")
    return convs


LAYOUTS = {  # (base, SSDLite heads?) -> repssd model
    ("MobilenetV2", True): "ssdlite_mbv2_tf", ("MobilenetV2", False): "ssd_mbv2_tf",
    ("MobilenetV1", False): "ssd_mbv1_tf"}


def _layout(graph: TFLiteGraph, scopes: set[str]) -> str:
    """The repssd model of the graph's layout (:data:`LAYOUTS`), from the scopes; :class:`TFLiteError`
    for anything else."""
    if not any(s.startswith("BoxPredictor_") for s in scopes):
        kinds = sorted({op.kind for op in graph.ops})
        raise TFLiteError(f"{graph.path}: no SSD box predictors (BoxPredictor_* convolutions) among "
                          f"{len(scopes)} convolutions (ops: {', '.join(kinds[:6])}{' ...' if len(kinds) > 6 else ''}): "
                          "not a TF Object Detection API SSD (a classifier?)")
    bases = sorted({s.split("/")[1] for s in scopes if s.startswith("FeatureExtractor/") and s.count("/") > 1})
    lite = "BoxPredictor_0/BoxEncodingPredictor_depthwise" in scopes
    if len(bases) != 1 or (bases[0], lite) not in LAYOUTS:
        raise TFLiteError(f"{graph.path}: {'SSDLite' if lite else 'SSD'} on feature extractor "
                          f"{', '.join(bases) or 'unknown'}; repssd imports "
                          + ", ".join(f"{'SSDLite' if l else 'SSD'} on {b}" for b, l in LAYOUTS))
    return LAYOUTS[bases[0], lite]


def layout_names(arch: str) -> list[tuple[str, str, str]]:
    """:func:`~repssd.convert.tf_graph.tf_names` of the repssd model ``arch`` (one of :data:`LAYOUTS`' values)."""
    return tf_names(lite=arch.startswith("ssdlite"), base="v1" if "mbv1" in arch else "v2")


def _kernel(value: np.ndarray, depthwise: bool) -> Tensor:
    """TFLite OHWI -> torch OIHW; depthwise 1HWC -> C1HW."""
    value = value[0].transpose(2, 0, 1)[:, None] if depthwise else value.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.array(value, dtype=np.float32))  # a copy: the file's buffers are read-only


def map_weights(graph: TFLiteGraph, convs: dict, arch: str, expected: dict[str, Tensor]) -> dict[str, Tensor]:
    """The convolutions under repssd key names with identity BatchNorm, checked against ``expected``
    (the model's state_dict); raises naming, by TF scope, what is missing, left over or mis-shaped."""
    pairs = layout_names(arch)
    missing = [scope for scope, _, _ in pairs if scope not in convs]
    left = sorted(set(convs) - {scope for scope, _, _ in pairs})
    state, shapes = {}, []
    scale = torch.sqrt(torch.tensor(1.0) + BN_EPS)  # BatchNorm's 1 / sqrt(var + eps) with var 1, undone
    for scope, prefix, kind in pairs:
        if scope not in convs:
            continue
        kernel, bias, depthwise = convs[scope]
        head = kind == "head"
        key = f"{prefix}.weight" if head else f"{prefix}.0.weight"
        weight = _kernel(kernel, depthwise)
        bias = torch.from_numpy(np.array(bias, dtype=np.float32))
        if weight.shape != expected[key].shape or bias.shape != weight.shape[:1]:
            shapes.append(f"{scope} {tuple(kernel.shape)}")
            continue
        if head and prefix.startswith("head.loc."):
            order = box_order(weight.shape[0] // 4)
            weight, bias = weight[order], bias[order]
        state[key] = weight
        if head:
            state[f"{prefix}.bias"] = bias
        else:
            channels = bias.shape[0]
            state.update({f"{prefix}.1.weight": scale.repeat(channels), f"{prefix}.1.bias": bias,
                          f"{prefix}.1.running_mean": torch.zeros(channels),
                          f"{prefix}.1.running_var": torch.ones(channels)})
    if missing or left or shapes:
        raise TFLiteError(f"{graph.path}: not the {arch} layout: {mismatch('convolutions', missing, left, shapes)}")
    return state


def _postprocess_op(graph: TFLiteGraph) -> TFLiteOp | None:
    return next((op for op in graph.ops if op.kind == POSTPROCESS_OP), None)


def postprocessing(graph: TFLiteGraph, priors: Tensor) -> tuple[dict, str]:
    """(post-processing options, where they come from): a ``TFLite_Detection_PostProcess`` op's
    options and anchors (checked against ``priors``, repssd's (cx, cy, w, h)), else the TF Object
    Detection API defaults."""
    post = {**{k: v for k, v in GRAPH_DEFAULTS.items() if k != "image_size"}, "candidates": None, "clip": "after"}
    op = _postprocess_op(graph)
    if op is None:
        return post, f"TF Object Detection API defaults (the file has no {POSTPROCESS_OP} op)"
    try:
        options = flexbuffers.Loads(op.options) if op.options else {}
    except Exception as err:  # flexbuffers raises many kinds on corrupt bytes
        raise TFLiteError(f"{graph.path}: unreadable {POSTPROCESS_OP} options ({type(err).__name__})") from None
    scales = [float(options.get(k, d)) for k, d in (("y_scale", 10), ("x_scale", 10), ("h_scale", 5), ("w_scale", 5))]
    if scales != [10.0, 10.0, 5.0, 5.0]:
        raise TFLiteError(f"{graph.path}: box coder scales (y, x, h, w) {scales}; repssd's coder uses (10, 10, 5, 5)")
    anchors = graph.constant(op.inputs[2]) if len(op.inputs) > 2 else None
    if anchors is not None:  # (ycenter, xcenter, h, w)
        anchors = torch.from_numpy(np.asarray(anchors, np.float32).reshape(-1, 4)[:, [1, 0, 3, 2]].copy())
        if anchors.shape != priors.shape or not torch.allclose(anchors, priors.float(), atol=1e-4):
            error = (anchors - priors).abs().max().item() if anchors.shape == priors.shape else None
            raise TFLiteError(f"{graph.path}: the {POSTPROCESS_OP} anchors ({anchors.shape[0]}) are not repssd's "
                              f"multiple-grid anchors ({priors.shape[0]})"
                              + (f": largest difference {error:.3g}" if error is not None else ""))
    scores = graph.producers.get(op.inputs[1]) if len(op.inputs) > 1 else None
    post.update(score="softmax" if scores is not None and scores.kind == "SOFTMAX" else "sigmoid",
                nms_thresh=round(float(options.get("nms_iou_threshold", post["nms_thresh"])), 6),
                conf_thresh=float(options.get("nms_score_threshold", post["conf_thresh"])),
                top_k=int(options.get("max_detections", post["top_k"])))
    return post, f"its {POSTPROCESS_OP} op" + (" (anchors checked)" if anchors is not None else "")


def _check_anchor_counts(graph: TFLiteGraph, model, convs: dict, arch: str) -> None:
    """Box predictor channels per map = 4 x repssd's anchors per location; the box encodings in all = priors."""
    expected = model.spec.boxes_per_location
    prefix = "BoxPredictor_{}/BoxEncodingPredictor"
    found = tuple(convs[prefix.format(i)][0].shape[0] // 4 for i in range(len(expected)))
    if found != expected:
        raise TFLiteError(f"{graph.path}: {found} anchors per location; the multiple-grid generator gives {expected}")
    for index in graph.outputs:
        tensor = graph.tensors[index]
        if "box_encodings" in tensor.name and len(tensor.shape) == 3 and tensor.shape[1] != model.priors.shape[0]:
            raise TFLiteError(f"{graph.path}: {tensor.shape[1]} box encodings; {arch} has {model.priors.shape[0]} "
                              "anchors at this input size")


def select_classes(state: dict[str, Tensor], names: list[str], keep: list[str]) -> tuple[dict[str, Tensor], list[str]]:
    """Keep the classes ``keep`` (by name, any case; background always) in the class predictors.

    Exact for sigmoid scores (each class is scored on its own); softmax scores would change."""
    lower = [n.lower() for n in names]
    unknown = [k for k in keep if k.lower() not in lower]
    if unknown:
        raise TFLiteError(f"--classes: no class {', '.join(map(repr, unknown))} among {', '.join(names)}")
    twice = sorted({k for k in keep if [c.lower() for c in keep].count(k.lower()) > 1})
    if twice:
        raise TFLiteError(f"--classes: {twice[0]!r} given twice")
    columns = [0] + [1 + lower.index(k.lower()) for k in keep]
    classes = len(names) + 1
    out = dict(state)
    for key, value in state.items():
        if re.fullmatch(r"head\.conf\.\d+(\.1)?\.(weight|bias)", key):  # the class predictors' last convolutions
            anchors = value.shape[0] // classes
            out[key] = value[[a * classes + c for a in range(anchors) for c in columns]].clone()
    return out, [names[c - 1] for c in columns[1:]]


def convert_tflite(path: str | Path, labels: str | None = None, classes: list[str] | None = None,
                   labels_source: str = "--labels") -> tuple[dict[str, Tensor], dict]:
    """Read a TFLite SSD -> (state_dict of ``ssd_mbv2_tf`` or ``ssdlite_mbv2_tf``, the config to save
    beside it). ``labels``: a label map or names (background excluded; ``labels_source``, the flag
    or the file, names them in errors); ``classes``: keep only these."""
    graph = read_tflite(path)
    convs = _convolutions(graph)
    arch = _layout(graph, set(convs))
    if not graph.inputs or len(graph.tensors[graph.inputs[0]].shape) != 4:
        raise TFLiteError(f"{graph.path}: the input is not an NHWC image tensor")
    image = graph.tensors[graph.inputs[0]]
    if image.quantised:
        raise TFLiteError(f"{graph.path}: integer-quantised model ({np.dtype(image.dtype).name} input); "
                          "repssd imports float models (fp32 or fp16 weights) only")
    _, height, width, channels = image.shape
    if min(height, width) <= 0 or channels != 3:
        raise TFLiteError(f"{graph.path}: the input tensor's shape {list(image.shape)} is no NHWC RGB image")
    anchors_first = 3  # reduce_boxes_in_lowest_layer
    class_bias = convs.get("BoxPredictor_0/ClassPredictor", (None, np.zeros(0), False))[1]
    if class_bias.shape[0] % anchors_first:
        raise TFLiteError(f"{graph.path}: BoxPredictor_0/ClassPredictor has {class_bias.shape[0]} channels, "
                          f"not {anchors_first} anchors' class columns")
    num_classes = class_bias.shape[0] // anchors_first
    if num_classes < 2:
        raise TFLiteError(f"{graph.path}: BoxPredictor_0/ClassPredictor has {class_bias.shape[0]} channels: fewer than "
                          "background and one class")
    model = build_model(arch, num_classes, image_size=(width, height))
    _check_anchor_counts(graph, model, convs, arch)
    post, post_source = postprocessing(graph, model.priors)
    state = load_mapped(model, map_weights(graph, convs, arch, model.state_dict()), "TFLite", graph.path)
    names = read_labels(labels, num_classes, labels_source)
    if classes:
        if post["score"] != "sigmoid":  # a softmax over fewer columns changes every score
            raise TFLiteError(f"{graph.path}: the model scores with {post['score']}; keeping some classes is exact "
                              "for sigmoid scores only: convert it without --classes")
        state, names = select_classes(state, names, classes)
    fp16 = any(op.kind == "DEQUANTIZE" for op in graph.ops)
    config = {"model": arch, "class_names": names, "image_size": [width, height], "postprocess": post,
              "batchnorm": "folded",
              "source": {"file": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                         "format": f"TFLite ({'fp16' if fp16 else 'fp32'} weights, BatchNorm folded)",
                         "convolutions": len(convs), "postprocess": post_source}}
    return state, config
