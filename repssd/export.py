"""ONNX export: ``python -m repssd.export --weights W --output model.onnx [--nms]``.

The graph takes ``images (float32[B, 3, H, W])``, RGB in 0..255 at the model's input size, and
does the model's own normalisation, the network, the score function (softmax, or sigmoid for
models whose config says so, e.g. imported TF graphs) and decoding inside, so a runtime only
resizes images. Outputs:

- ``boxes (float32[B, P, 4])``: normalised xyxy boxes of every prior;
- ``scores (float32[B, P, C])``: class scores, column 0 = background;
- with ``--nms``, also ``selected (int64[N, 3])``: (image, label, prior) rows kept by ONNX
  ``NonMaxSuppression`` per image and class (labels 1..C-1).

The batch dimension is dynamic. The export uses PyTorch's TorchScript-based exporter, which
needs nothing beyond ``onnx``.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from .coder import decode
from .convert import WeightsError, load_model
from .files import atomic_path
from .models import MODELS
from .options import POSITIVE, bad_option, bad_output
from .postprocess import postprocess_options, rank_in_group

__all__ = ["ExportModule", "export_onnx", "select_nms"]


def select_nms(boxes: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float,
               score_threshold: float) -> Tensor:
    """Eager twin of ONNX ``NonMaxSuppression``.

    Args:
        boxes (Tensor[B, P, 4]): xyxy boxes.
        scores (Tensor[B, K, P]): per-class scores.

    Returns:
        Tensor[N, 3] int64: (image, class, box) rows, by image, then class, then score.
    """
    batch, classes, num = scores.shape
    flat = scores.reshape(-1)  # index = (b * K + k) * P + p
    candidates = torch.nonzero(flat > score_threshold).squeeze(1)
    group = torch.div(candidates, num, rounding_mode="floor")
    prior = candidates % num
    image = torch.div(group, classes, rounding_mode="floor")
    kept = batched_nms(boxes[image, prior], flat[candidates], group, iou_threshold)  # best first
    kept = kept[group[kept].argsort(stable=True)]  # by group, best first within each
    kept = kept[rank_in_group(group[kept], batch * classes) < max_per_class]
    return torch.stack((image[kept], group[kept] % classes, prior[kept]), dim=1)


class _NonMaxSuppression(torch.autograd.Function):
    """Runs :func:`select_nms` in eager mode and exports as one ONNX ``NonMaxSuppression`` node."""

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
        return select_nms(boxes, scores, max_per_class, iou_threshold, score_threshold)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
        def const(value, dtype):
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))
        return g.op("NonMaxSuppression", boxes, scores, const(max_per_class, torch.int64),
                    const(iou_threshold, torch.float32), const(score_threshold, torch.float32),
                    center_point_box_i=0)


class ExportModule(nn.Module):
    """``model`` plus normalisation, softmax, decoding and optionally NMS, as one graph."""

    def __init__(self, model: nn.Module, nms: bool = False, conf_thresh: float = 0.01,
                 nms_thresh: float = 0.45, top_k: int = 200, score: str = "softmax") -> None:
        super().__init__()
        self.model, self.score = model, score
        self.register_buffer("priors", model.priors.clone(), persistent=False)
        self.nms, self.conf_thresh, self.nms_thresh, self.top_k = nms, conf_thresh, nms_thresh, top_k
        self.eval()  # the exporter restores this module's mode, recursively, when it is done

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        loc, conf = self.model(self.model.preprocess(images))
        boxes = decode(loc, self.priors).clamp(0.0, 1.0)  # [B,P,4]
        scores = conf.softmax(dim=-1) if self.score == "softmax" else conf.sigmoid()  # [B,P,C]
        if not self.nms:
            return boxes, scores
        selected = _NonMaxSuppression.apply(boxes, scores[..., 1:].transpose(1, 2).contiguous(),
                                            self.top_k, self.nms_thresh, self.conf_thresh)
        label_shift = torch.tensor([0, 1, 0], dtype=torch.int64, device=selected.device)
        return boxes, scores, selected + label_shift


def export_onnx(model: nn.Module, path: str | Path, nms: bool = False, opset: int = 17, **nms_options) -> Path:
    """Write ``model`` as ONNX to ``path`` (dynamic batch); see the module docstring for I/O."""
    path = Path(path)
    module = ExportModule(model.cpu(), nms=nms, **nms_options)
    width, height = model.input_size
    outputs = ["boxes", "scores"] + (["selected"] if nms else [])
    dynamic = {"images": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}}
    if nms:
        dynamic["selected"] = {0: "detections"}
    with warnings.catch_warnings(), atomic_path(path) as temporary:  # whole or absent
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its own deprecation
        torch.onnx.export(module, (torch.zeros(2, 3, height, width),), str(temporary), dynamo=False,
                          opset_version=opset, input_names=["images"], output_names=outputs, dynamic_axes=dynamic)
    return path


OPSETS = (11, 20)  # the TorchScript exporter's range that holds every operator the models and the NMS use


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repssd.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--model", choices=list(MODELS), help="architecture (default: from the training config)")
    parser.add_argument("--output", type=Path, help="ONNX file (default: the weights path with .onnx)")
    parser.add_argument("--nms", action="store_true", help="add NonMaxSuppression to the graph")
    parser.add_argument("--conf-thresh", type=float, help="default: the checkpoint config's, else 0.01")
    parser.add_argument("--nms-thresh", type=float, help="default: the checkpoint config's, else 0.45")
    parser.add_argument("--top-k", type=int, help="boxes kept per image and class by the NMS (default: the "
                        "checkpoint config's, else 200)")
    parser.add_argument("--opset", type=int, default=17)
    opts = parser.parse_args(argv)
    problem = bad_option(opts, top_k=POSITIVE, opset=(lambda v: OPSETS[0] <= v <= OPSETS[1],
                                                      f"must be in {OPSETS[0]}..{OPSETS[1]} (torch's ONNX exporter; "
                                                      "NonMaxSuppression needs 11+ here)")) \
        or (bad_output(opts.output, "--output", folder=False) if opts.output else None)
    if problem:
        print(f"repssd.export: {problem}", file=sys.stderr)
        return 2
    try:
        model, config = load_model(opts.weights, opts.model)
    except WeightsError as err:
        print(f"repssd.export: {err}", file=sys.stderr)
        return 2
    post = postprocess_options(config, conf_thresh=opts.conf_thresh, nms_thresh=opts.nms_thresh, top_k=opts.top_k)
    output = export_onnx(model, opts.output or opts.weights.with_suffix(".onnx"), nms=opts.nms, opset=opts.opset,
                         conf_thresh=post["conf_thresh"], nms_thresh=post["nms_thresh"], top_k=post["top_k"],
                         score=post["score"])
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
