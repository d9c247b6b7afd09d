"""SSD data augmentation (SSD paper Sec. 3.6) and the test transform, on torchvision.transforms.v2.

Training: photometric distortion -> zoom out (expand up to 4x, filled with the model's mean) ->
IoU-constrained random crop (min IoU with some object in {0.1, 0.3, 0.5, 0.7, 0.9}, or no
constraint, or the whole image; patches 0.3-1 of the image, aspect ratio 1/2-2; objects whose
centre leaves the patch are dropped) -> horizontal flip -> resize. torchvision's
``RandomIoUCrop`` implements the paper's rule: a patch is accepted when *some* object overlaps it
by the minimum IoU (Caffe SSD's sampler). ssd.pytorch's check (``overlap.min() < min_iou and
max_iou < overlap.max()``) is never true, so it accepts any patch.

Both transforms take ``(image HxWx3 uint8 RGB array, target)`` from a dataset and return
``(Tensor[3, S, S] uint8, target)`` with ``boxes`` normalised to [0, 1]; the model's own
``preprocess`` normalises the pixels later, on its device. Boxes that become degenerate (under
``min_size`` pixels after resizing) are dropped with their labels and flags; images without
boxes pass through.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["SSDTrainTransform", "SSDTestTransform", "FLAG_KEYS"]

FLAG_KEYS = ("labels", "difficult", "ignore")  # per-box entries that follow the boxes


def _wrap(image: np.ndarray | Tensor, target: dict) -> tuple[tv_tensors.Image, dict]:
    """Array/tensor image and pixel-box target -> torchvision tv_tensors."""
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1) if isinstance(image, np.ndarray) else image
    height, width = pixels.shape[-2:]
    out = dict(target)
    out["boxes"] = tv_tensors.BoundingBoxes(target["boxes"].reshape(-1, 4), format="XYXY", canvas_size=(height, width))
    return tv_tensors.Image(pixels), out


def _unwrap(image: Tensor, target: dict) -> tuple[Tensor, dict]:
    """tv_tensors -> plain ``Tensor[3, S, S] uint8`` and boxes normalised to [0, 1]."""
    height, width = image.shape[-2:]
    out = dict(target)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    out["boxes"] = (target["boxes"].as_subclass(Tensor).float() / scale).clamp(0.0, 1.0)
    return image.as_subclass(Tensor), out


class _Boxed:
    """Base: wraps, runs ``self.pipeline``, drops degenerate boxes, unwraps."""

    pipeline: v2.Transform

    def __init__(self, size: int, min_size: float | None) -> None:
        self.size = size
        self.sanitize = None if min_size is None else v2.SanitizeBoundingBoxes(
            min_size=min_size, min_area=min_size * min_size,
            labels_getter=lambda inputs: tuple(inputs[1][k] for k in FLAG_KEYS if k in inputs[1]))

    def __call__(self, image, target: dict) -> tuple[Tensor, dict]:
        image, target = self.pipeline(*_wrap(image, target))
        if self.sanitize is not None:
            image, target = self.sanitize(image, target)
        return _unwrap(image, target)


class SSDTrainTransform(_Boxed):
    """The SSD training augmentation.

    Args:
        size: S, the network input side.
        mean: RGB fill for the zoom-out canvas, the model's mean (VGG: 123, 117, 104;
            MobileNet: 127) so that it normalises to about 0.
        min_size: boxes narrower or lower than this many output pixels are dropped.
    """

    def __init__(self, size: int = 300, mean: Sequence[float] = (123.0, 117.0, 104.0), min_size: float = 1.0) -> None:
        super().__init__(size, min_size)
        fill = [int(round(m)) for m in mean]
        self.distort = v2.RandomPhotometricDistort(p=0.5)
        self.zoom_out = v2.RandomZoomOut(fill={tv_tensors.Image: fill, "others": 0}, side_range=(1.0, 4.0), p=0.5)
        self.crop = v2.RandomIoUCrop()
        self.finish = v2.Compose([v2.RandomHorizontalFlip(p=0.5), v2.Resize((size, size), antialias=True)])

    def pipeline(self, image: tv_tensors.Image, target: dict):
        image, target = self.zoom_out(*self.distort(image, target))
        if len(target["boxes"]):  # the IoU constraint needs objects; an empty image keeps its frame
            image, target = self.sanitize(*self.crop(image, target))
        return self.finish(image, target)


class SSDTestTransform(_Boxed):
    """Resize to ``size`` x ``size``; boxes normalised to [0, 1], none dropped (a resize keeps
    the positive area the loaders checked)."""

    def __init__(self, size: int = 300) -> None:
        super().__init__(size, None)
        self.pipeline = v2.Resize((size, size), antialias=True)
