"""Random TF-layout models (``randomised``) and small TFLite flatbuffers for the tests, written with
the ``tflite`` package's generated builders: ``write_tflite`` (any tensors and operators) and ``ssd_tflite`` (a repssd TF-layout model as the TF
Object Detection API's TFLite export holds it: BatchNorm folded, OHWI kernels, (ty, tx, th, tw)
boxes, TF scope names, optionally fp16 weights behind DEQUANTIZE and a TFLite_Detection_PostProcess op)."""
from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
import tflite
import torch
from flatbuffers import flexbuffers

from repssd.convert.tflite_model import layout_names

TYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int32): 2, np.dtype(np.uint8): 3,
         np.dtype(np.int8): 9}


def _vector(builder, start, items, prepend) -> int:
    start(builder, len(items))
    for item in reversed(items):
        prepend(item)
    return builder.EndVector()


def write_tflite(path: Path, tensors: list[dict], ops: list[dict], inputs: list[int], outputs: list[int]) -> Path:
    """``tensors``: dicts of name, dtype, shape, data (array or None), quantised (bool);
    ``ops``: dicts of kind (a builtin name, or a custom code), inputs, outputs, options (bytes)."""
    b = flatbuffers.Builder(1024)
    kinds = list(dict.fromkeys(op["kind"] for op in ops))
    codes = []
    for kind in kinds:
        builtin = getattr(tflite.BuiltinOperator, kind, None)
        custom = b.CreateString(kind) if builtin is None else None
        tflite.OperatorCodeStart(b)
        code = tflite.BuiltinOperator.CUSTOM if builtin is None else builtin
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        if custom is not None:
            tflite.OperatorCodeAddCustomCode(b, custom)
        codes.append(tflite.OperatorCodeEnd(b))
    buffers = [None]  # buffer 0 is the empty sentinel
    for tensor in tensors:
        buffers.append(None if tensor.get("data") is None else np.ascontiguousarray(tensor["data"]).tobytes())
    buffer_offsets = []
    for data in buffers:
        vector = b.CreateByteVector(data) if data else None
        tflite.BufferStart(b)
        if vector is not None:
            tflite.BufferAddData(b, vector)
        buffer_offsets.append(tflite.BufferEnd(b))
    tensor_offsets = []
    for k, tensor in enumerate(tensors):
        name = b.CreateString(tensor["name"])
        shape = _vector(b, tflite.TensorStartShapeVector, list(tensor["shape"]), b.PrependInt32)
        quant = None
        if tensor.get("quantised"):
            scale = _vector(b, tflite.QuantizationParametersStartScaleVector, [0.05], b.PrependFloat32)
            zero = _vector(b, tflite.QuantizationParametersStartZeroPointVector, [128], b.PrependInt64)
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scale)
            tflite.QuantizationParametersAddZeroPoint(b, zero)
            quant = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, TYPES[np.dtype(tensor["dtype"])])
        tflite.TensorAddBuffer(b, k + 1 if tensor.get("data") is not None else 0)
        tflite.TensorAddName(b, name)
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        tensor_offsets.append(tflite.TensorEnd(b))
    op_offsets = []
    for op in ops:
        ins = _vector(b, tflite.OperatorStartInputsVector, op["inputs"], b.PrependInt32)
        outs = _vector(b, tflite.OperatorStartOutputsVector, op["outputs"], b.PrependInt32)
        options = b.CreateByteVector(op["options"]) if op.get("options") else None
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, kinds.index(op["kind"]))
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if options is not None:
            tflite.OperatorAddCustomOptions(b, options)
        op_offsets.append(tflite.OperatorEnd(b))
    tensor_vector = _vector(b, tflite.SubGraphStartTensorsVector, tensor_offsets, b.PrependUOffsetTRelative)
    op_vector = _vector(b, tflite.SubGraphStartOperatorsVector, op_offsets, b.PrependUOffsetTRelative)
    in_vector = _vector(b, tflite.SubGraphStartInputsVector, inputs, b.PrependInt32)
    out_vector = _vector(b, tflite.SubGraphStartOutputsVector, outputs, b.PrependInt32)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vector)
    tflite.SubGraphAddOperators(b, op_vector)
    tflite.SubGraphAddInputs(b, in_vector)
    tflite.SubGraphAddOutputs(b, out_vector)
    subgraph = tflite.SubGraphEnd(b)
    subgraphs = _vector(b, tflite.ModelStartSubgraphsVector, [subgraph], b.PrependUOffsetTRelative)
    code_vector = _vector(b, tflite.ModelStartOperatorCodesVector, codes, b.PrependUOffsetTRelative)
    buffer_vector = _vector(b, tflite.ModelStartBuffersVector, buffer_offsets, b.PrependUOffsetTRelative)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, code_vector)
    tflite.ModelAddSubgraphs(b, subgraphs)
    tflite.ModelAddBuffers(b, buffer_vector)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    Path(path).write_bytes(b.Output())
    return Path(path)


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and non-trivial BatchNorm statistics, eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(values + 0.5 if name.endswith("running_var") else (values - 0.5) * 0.4)
    return model.eval()


class Graph:
    """Tensors and operators being put together for :func:`write_tflite`."""

    def __init__(self) -> None:
        self.tensors: list[dict] = []
        self.ops: list[dict] = []

    def tensor(self, name: str, shape, dtype=np.float32, data=None, quantised: bool = False) -> int:
        self.tensors.append({"name": name, "shape": [int(s) for s in shape], "dtype": dtype,
                             "data": None if data is None else np.asarray(data, dtype), "quantised": quantised})
        return len(self.tensors) - 1

    def constant(self, name: str, value: np.ndarray, fp16: bool) -> int:
        """A float32 constant, or an fp16 one behind a DEQUANTIZE op (as fp16 TFLite exports hold weights)."""
        if not fp16:
            return self.tensor(name, value.shape, np.float32, value)
        half = self.tensor(name, value.shape, np.float16, value.astype(np.float16))
        full = self.tensor(name + "_dequantize", value.shape)
        self.op("DEQUANTIZE", [half], [full])
        return full

    def op(self, kind: str, inputs: list[int], outputs: list[int], options: bytes = b"") -> None:
        self.ops.append({"kind": kind, "inputs": inputs, "outputs": outputs, "options": options})


def folded(model: torch.nn.Module, prefix: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(kernel OIHW, bias) of a conv (+ BatchNorm folded in) of ``model`` as float64 arrays."""
    state = {k: v.double().numpy() for k, v in model.state_dict().items() if v.is_floating_point()}
    if kind == "head":
        return state[f"{prefix}.weight"], state[f"{prefix}.bias"]
    bn = model.get_submodule(f"{prefix}.1")
    scale = state[f"{prefix}.1.weight"] / np.sqrt(state[f"{prefix}.1.running_var"] + bn.eps)
    return (state[f"{prefix}.0.weight"] * scale[:, None, None, None],
            state[f"{prefix}.1.bias"] - state[f"{prefix}.1.running_mean"] * scale)


def ssd_tflite(model: torch.nn.Module, path: Path, fp16: bool = False, postprocess: dict | None = None,
               anchors: np.ndarray | None = None, scores_op: str = "LOGISTIC", rename: dict | None = None) -> Path:
    """``model`` (``ssdlite_mbv2_tf``, ``ssd_mbv2_tf`` or ``ssd_mbv1_tf``, eval mode) as a TFLite SSD export.

    ``postprocess``: options of a TFLite_Detection_PostProcess op to add (its anchors: ``anchors``,
    (ycenter, xcenter, h, w), by default the model's priors); ``rename``: scope -> another scope."""
    g = Graph()
    width, height = model.input_size
    image = g.tensor("normalized_input_image_tensor", (1, height, width, 3))
    for scope, prefix, kind in layout_names(model.arch):
        kernel, bias = folded(model, prefix, kind)
        if kind == "head" and ".loc." in prefix:  # repssd (tx, ty, tw, th) -> TF (ty, tx, th, tw)
            order = [4 * a + k for a in range(bias.shape[0] // 4) for k in (1, 0, 3, 2)]
            kernel, bias = kernel[order], bias[order]
        depthwise = kind == "depthwise"
        kernel = kernel[:, 0].transpose(1, 2, 0)[None] if depthwise else kernel.transpose(0, 2, 3, 1)
        scope = (rename or {}).get(scope, scope)
        relu = kind != "head" and len(model.get_submodule(prefix)) == 3
        name = (f"{scope}/Relu6;{scope}/BatchNorm/FusedBatchNormV3;{scope}/Conv2D" if relu else
                f"{scope}/BiasAdd;{scope}/Conv2D" if kind == "head" else f"{scope}/BatchNorm/FusedBatchNormV3")
        weights = g.constant(f"{scope}/Conv2D", kernel.astype(np.float32), fp16)
        biases = g.constant(f"{scope}/biases", bias.astype(np.float32), fp16)
        out = g.tensor(name, (1, 1, 1, kernel.shape[-1] if depthwise else kernel.shape[0]))
        g.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [image, weights, biases], [out])
    priors = model.priors.double().numpy()
    classes = model.num_classes
    boxes = g.tensor("raw_outputs/box_encodings", (1, priors.shape[0], 4))
    logits = g.tensor("raw_outputs/class_predictions", (1, priors.shape[0], classes))
    g.op("CONCATENATION", [image], [boxes])
    g.op("CONCATENATION", [image], [logits])
    outputs = [boxes, logits]
    if postprocess is not None:
        scores = g.tensor("convert_scores", (1, priors.shape[0], classes))
        g.op(scores_op, [logits], [scores])
        anchors = priors[:, [1, 0, 3, 2]] if anchors is None else anchors
        anchor_tensor = g.tensor("anchors", anchors.shape, np.float32, anchors.astype(np.float32))
        outputs = [g.tensor(f"TFLite_Detection_PostProcess{':' + str(k) if k else ''}", (1, 10, 4)) for k in range(4)]
        g.op("TFLite_Detection_PostProcess", [boxes, scores, anchor_tensor], outputs, flexbuffers.Dumps(postprocess))
    return write_tflite(path, g.tensors, g.ops, [image], outputs)
