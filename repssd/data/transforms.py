"""SSD data augmentation (SSD paper Sec. 3.6) and the test transform, in NumPy/OpenCV on uint8.

Training: photometric distortion -> zoom out (expand up to 4x, filled with the model's mean) ->
IoU-constrained random crop -> horizontal flip -> resize. The parameters and the crop rule are
torchvision.transforms.v2's (``RandomPhotometricDistort``, ``RandomZoomOut``, ``RandomIoUCrop``,
``RandomHorizontalFlip``), which follow the paper and Caffe SSD: a patch (0.3-1 of each side,
aspect ratio 1/2-2) is accepted when *some* object whose centre lies in it overlaps it by the
sampled minimum IoU in {0.1, 0.3, 0.5, 0.7, 0.9}; or any patch (option 0); or the whole image.
ssd.pytorch's check (``overlap.min() < min_iou and max_iou < overlap.max()``) is never true, so
it accepts any patch. The first version of this module composed the v2 transforms themselves:
on tensors they ran at half the speed of ssd.pytorch's NumPy pipeline (hue conversion and the
crop's per-trial Python loop), so the same semantics are implemented here on uint8 with OpenCV,
a vectorised crop sampler and one affine warp for all the geometry (benchmarks/bench_data.py).

Both transforms take ``(image HxWx3 uint8 RGB array, target)`` and return
``(Tensor[3, H, W] uint8, target)`` with ``boxes`` normalised to [0, 1] (``size``: ``S`` for
S x S, or ``(W, H)``); the model's own
``preprocess`` normalises the pixels later, on its device. Boxes narrower or lower than
``min_size`` output pixels are dropped with their labels and flags (:data:`FLAG_KEYS`); a
target's ``visible`` boxes (pedestrian datasets) go through the same geometry as its boxes.
Images without boxes pass through. Randomness comes from torch's generator (one draw per image seeds a NumPy generator),
so ``torch.manual_seed`` and DataLoader worker seeding make it reproducible.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ["SSDTrainTransform", "SSDTestTransform", "FLAG_KEYS", "resize", "photometric_distort",
           "sample_patch", "CROP_OPTIONS"]

FLAG_KEYS = ("labels", "difficult", "ignore", "visibility")  # per-box entries that follow the boxes
CROP_OPTIONS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)  # minimum IoU; 0: any patch; 1: the whole image


def _wh(size: int | Sequence[int]) -> tuple[int, int]:
    """``S`` or ``(W, H)`` -> ``(W, H)``."""
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def resize(image: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """``image`` to ``size`` (``S`` x ``S``, or ``(W, H)``): area averaging when shrinking
    (antialiased), bilinear when enlarging. Training, evaluation and ``Detector`` all resize
    through here. (TF Object Detection API graphs resize with plain bilinear interpolation,
    which aliases when shrinking a photo several times.)"""
    out_w, out_h = _wh(size)
    height, width = image.shape[:2]
    shrink = width > out_w or height > out_h
    return cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """torchvision's ``RandomPhotometricDistort`` on uint8 RGB: each of brightness (0.875-1.125),
    contrast (0.5-1.5, before or after the colour steps), saturation (0.5-1.5), hue (+-0.05 of
    the circle) and a channel permutation happens with probability 1/2."""
    out = image
    if rng.random() < 0.5:
        out = cv2.convertScaleAbs(out, alpha=rng.uniform(0.875, 1.125))
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        out = _contrast(out, rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:  # saturation: blend with the grey image
        grey = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        out = cv2.addWeighted(out, factor := rng.uniform(0.5, 1.5), grey, 1 - factor, 0)
    if rng.random() < 0.5:  # hue: rotate OpenCV's 0..179 hue channel
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
        shift = int(round(rng.uniform(-0.05, 0.05) * 180))
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and rng.random() < 0.5:
        out = _contrast(out, rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        out = np.ascontiguousarray(out[..., rng.permutation(3)])
    return out


def _contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the mean grey level (torchvision's ``adjust_contrast``)."""
    mean = float(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean())
    return cv2.addWeighted(image, factor, image, 0, (1 - factor) * mean)


def sample_patch(boxes: np.ndarray, width: int, height: int, min_iou: float, rng: np.random.Generator,
                 trials: int = 40) -> tuple[int, int, int, int] | None:
    """One ``RandomIoUCrop`` attempt: up to ``trials`` patches, all drawn at once, the first one
    that passes wins.

    A patch (left, top, right, bottom) passes when its sides are 0.3-1 of the image's, its
    aspect ratio is 1/2-2, it is not empty, some box centre lies strictly inside it, and one of
    those boxes overlaps it by IoU >= ``min_iou``. Returns None when no trial passes.
    """
    scale = 0.3 + 0.7 * rng.random((trials, 2))
    new_w, new_h = (width * scale[:, 0]).astype(int), (height * scale[:, 1]).astype(int)
    offset = rng.random((trials, 2))
    left, top = ((width - new_w) * offset[:, 0]).astype(int), ((height - new_h) * offset[:, 1]).astype(int)
    right, bottom = left + new_w, top + new_h
    aspect = new_w / np.maximum(new_h, 1)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2  # [G]
    inside = ((left[:, None] < cx) & (cx < right[:, None]) & (top[:, None] < cy) & (cy < bottom[:, None]))  # [T,G]
    iw = np.minimum(right[:, None], boxes[:, 2]) - np.maximum(left[:, None], boxes[:, 0])  # [T,G]
    ih = np.minimum(bottom[:, None], boxes[:, 3]) - np.maximum(top[:, None], boxes[:, 1])  # [T,G]
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (new_w * new_h)[:, None] + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    iou = np.where(inside, inter / np.maximum(union, 1e-9), -1.0)  # [T,G]
    ok = (aspect >= 0.5) & (aspect <= 2.0) & (new_w > 0) & (new_h > 0) & inside.any(1) & (iou.max(1) >= min_iou)
    if not ok.any():
        return None
    t = int(np.argmax(ok))
    return int(left[t]), int(top[t]), int(right[t]), int(bottom[t])


def _keep(target: dict, keep: np.ndarray, boxes: np.ndarray, visible: np.ndarray | None = None) -> dict:
    out = dict(target)
    out["boxes"] = torch.from_numpy(boxes[keep].astype(np.float32)).reshape(-1, 4)
    if visible is not None:
        out["visible"] = torch.from_numpy(visible[keep].astype(np.float32)).reshape(-1, 4)
    index = torch.from_numpy(np.nonzero(keep)[0])
    for key in FLAG_KEYS:
        if key in target:
            out[key] = target[key][index]
    return out


def _to_tensor(image: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


class SSDTrainTransform:
    """The SSD training augmentation.

    Args:
        size: the network input, ``S`` (S x S) or ``(W, H)``.
        mean: RGB fill of the zoom-out canvas, the model's mean (VGG: 123, 117, 104;
            MobileNet: 127), so that it normalises to about 0.
        min_size: boxes narrower or lower than this many output pixels are dropped.
        zoom_out: largest zoom-out ratio (the paper's 4; 1 disables zooming out). Smaller values
            converge faster on short schedules, at some cost in small-object recall.

    Zoom-out, crop, flip and resize are one affine map, so the (up to 16x larger) zoom-out
    canvas is never built: the geometry is decided on box coordinates, then a single
    ``cv2.warpAffine`` renders the S x S output with the mean as border (after an area
    downscale of the source where the map shrinks more than 2x, against aliasing).
    """

    def __init__(self, size: int | Sequence[int] = 300, mean: Sequence[float] = (123.0, 117.0, 104.0),
                 min_size: float = 1.0, zoom_out: float = 4.0) -> None:
        if zoom_out < 1.0:
            raise ValueError(f"zoom_out must be >= 1, got {zoom_out}")
        self.size, self.min_size, self.zoom_out = _wh(size), min_size, zoom_out
        self.mean = tuple(float(round(m)) for m in mean)

    def __call__(self, image: np.ndarray, target: dict) -> tuple[Tensor, dict]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        boxes = target["boxes"].numpy().astype(np.float64).reshape(-1, 4)
        image = photometric_distort(image, rng)
        height, width = image.shape[:2]
        # zoom out: the image sits at (left, top) of a mean-filled canvas, ratio 1-4 times larger
        region, offset = np.array([0.0, 0.0, width, height]), np.zeros(2)
        if rng.random() < 0.5 and self.zoom_out > 1.0:
            ratio = rng.uniform(1.0, self.zoom_out)
            canvas_w, canvas_h = int(width * ratio), int(height * ratio)
            offset = np.array([int(rng.uniform(0, canvas_w - width)), int(rng.uniform(0, canvas_h - height))], float)
            region = np.array([0.0, 0.0, canvas_w, canvas_h])
        boxes = boxes + np.tile(offset, 2)  # canvas coordinates
        keep = np.ones(len(boxes), dtype=bool)
        if len(boxes):  # the IoU constraint needs objects; an empty image keeps its frame
            patch, keep = self._crop(boxes, int(region[2]), int(region[3]), rng)
            if patch is not None:
                region = np.array(patch, dtype=float)
        flip = rng.random() < 0.5
        visible = target["visible"].numpy().astype(np.float64).reshape(-1, 4) + np.tile(offset, 2) \
            if "visible" in target else np.zeros((0, 4))  # visible parts move with their boxes
        out_image, mapped = self._render(image, np.concatenate([boxes, visible]), region, offset, flip)
        limit = np.tile(np.asarray(self.size, dtype=np.float64), 2)  # [W, H, W, H]
        boxes, visible = mapped[:len(boxes)].clip(0, limit), mapped[len(boxes):].clip(0, limit)
        keep &= ((boxes[:, 2:] - boxes[:, :2]) >= self.min_size).all(axis=1)
        return _to_tensor(out_image), _keep(target, keep, boxes / limit,
                                            visible / limit if "visible" in target else None)

    def _crop(self, boxes: np.ndarray, width: int, height: int, rng) -> tuple[tuple | None, np.ndarray]:
        """torchvision's RandomIoUCrop loop: options until one yields a patch; (None, all kept)
        for the whole image."""
        for _ in range(100):  # option 1.0 (the whole image) always succeeds, so this ends quickly
            min_iou = CROP_OPTIONS[rng.integers(len(CROP_OPTIONS))]
            if min_iou >= 1.0:
                break
            patch = sample_patch(boxes, width, height, min_iou, rng)
            if patch is not None:
                left, top, right, bottom = patch
                cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
                return patch, (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
        return None, np.ones(len(boxes), dtype=bool)

    def _render(self, image: np.ndarray, boxes: np.ndarray, region: np.ndarray, offset: np.ndarray,
                flip: bool) -> tuple[np.ndarray, np.ndarray]:
        """Map canvas ``region`` (xyxy) onto the W x H output; returns (output, boxes in output px)."""
        out_w, out_h = self.size
        scale = np.array([out_w, out_h], dtype=np.float64) / (region[2:] - region[:2])  # output px per canvas px, (x, y)
        source, source_scale = image, 1.0
        if scale.min() < 0.5:  # area-downscale first so the bilinear warp never skips pixels
            source_scale = 2.0 * scale.min()
            source = cv2.resize(image, None, fx=source_scale, fy=source_scale, interpolation=cv2.INTER_AREA)
        # continuous coordinates: out = (canvas - region_origin) * scale, canvas = source / s + offset
        a = scale / source_scale
        b = (offset - region[:2]) * scale
        if flip:
            a, b = a * [-1, 1], b * [-1, 1] + [out_w, 0]
        # cv2 maps pixel centres: out + 0.5 = a * (src + 0.5) + b
        matrix = np.array([[a[0], 0, b[0] + 0.5 * a[0] - 0.5], [0, a[1], b[1] + 0.5 * a[1] - 0.5]])
        out = cv2.warpAffine(source, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=self.mean)
        mapped = (boxes - np.tile(region[:2], 2)) * np.tile(scale, 2)
        if flip:
            mapped = np.stack([out_w - mapped[:, 2], mapped[:, 1], out_w - mapped[:, 0], mapped[:, 3]], axis=1)
        return out, mapped.reshape(-1, 4)


class SSDTestTransform:
    """Resize to ``size`` (``S`` or ``(W, H)``, see :func:`resize`); boxes (and ``visible`` boxes)
    normalised to [0, 1], none dropped (a resize keeps the positive area the loaders checked)."""

    def __init__(self, size: int | Sequence[int] = 300) -> None:
        self.size = _wh(size)

    def __call__(self, image: np.ndarray, target: dict) -> tuple[Tensor, dict]:
        height, width = image.shape[:2]
        out = dict(target)
        scale = torch.tensor([width, height, width, height])
        for key in ("boxes", "visible"):
            if key in target:
                out[key] = (target[key].reshape(-1, 4) / scale).clamp(0, 1)
        return _to_tensor(resize(image, self.size)), out
