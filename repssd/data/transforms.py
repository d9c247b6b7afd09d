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
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from ..options import finite_float, given_twice, parse_tile_size

__all__ = ["SSDTrainTransform", "SSDTestTransform", "TileCrop", "parse_tile_crop", "FLAG_KEYS", "resize",
           "photometric_distort", "sample_patch", "CROP_OPTIONS"]

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


@dataclass(frozen=True)
class TileCrop:
    """Training windows at the scale sliced inference feeds the network (``--tile-crop``).

    Sliced inference (:mod:`repssd.slicing`) shows the network tiles of ``size`` source pixels,
    resized to its input; an image no larger than a tile goes in whole. Training on the same
    views keeps the weights at the scale they will be used at: an image larger than the window
    is cut to a window of ``size`` x ``U_log(jitter)`` source pixels (clipped to the image, as the
    last tiles are) placed around a random person, whole where it fits (anywhere in an image without people), then
    flipped and resized like any SSD sample; an image no larger than the window takes the usual
    SSD augmentation (zoom out, IoU crop), as it is seen whole.

    A person the window cuts keeps its box (clipped) when at least ``cut`` of it lies inside, and
    becomes an ignore region otherwise (neither positive nor negative: half a person is neither
    a person the tile must find nor background); ignore regions are cut like any box.

    Attributes:
        size: the window ``(W, H)`` in source pixels (the slicing tile).
        jitter: range of the window's scale factor, drawn log-uniformly.
        p: probability of a window for an image larger than it (else the usual augmentation).
        cut: the inside fraction below which a cut person becomes an ignore region.
    """

    size: tuple[int, int]
    jitter: tuple[float, float] = (0.75, 1.33)
    p: float = 1.0
    cut: float = 0.5

    def __post_init__(self) -> None:
        problems = [(min(self.size) < 1, f"size={self.size}: needs positive pixels"),
                    (not 0 < self.jitter[0] <= self.jitter[1], f"jitter={self.jitter[0]}-{self.jitter[1]}: needs "
                     "0 < A <= B"),
                    (not 0.0 <= self.p <= 1.0, f"p={self.p}: needs 0 <= p <= 1"),
                    (not 0.0 < self.cut <= 1.0, f"cut={self.cut}: needs 0 < cut <= 1")]
        for bad, message in problems:
            if bad:
                raise ValueError(message)

    def window(self, boxes: np.ndarray, people: np.ndarray, width: int, height: int,
               rng: np.random.Generator) -> tuple[int, int, int, int] | None:
        """The window (xyxy source pixels) for an image, or None where it is seen whole."""
        scale = float(np.exp(rng.uniform(np.log(self.jitter[0]), np.log(self.jitter[1]))))
        win_w, win_h = min(width, round(self.size[0] * scale)), min(height, round(self.size[1] * scale))
        if (win_w >= width and win_h >= height) or rng.random() >= self.p:
            return None
        if people.any():  # the person whole in the window where it fits, else its centre
            box = boxes[rng.choice(np.flatnonzero(people))]
            left = self._start(box[0], box[2], win_w, width, rng)
            top = self._start(box[1], box[3], win_h, height, rng)
        else:
            left, top = rng.uniform(0, width - win_w), rng.uniform(0, height - win_h)
        left, top = int(round(left)), int(round(top))
        return left, top, left + win_w, top + win_h


    @staticmethod
    def _start(low: float, high: float, window: int, extent: int, rng: np.random.Generator) -> float:
        """A window start along one axis holding [low, high] (or its centre if longer than the window)."""
        if high - low > window:
            low = high = (low + high) / 2
        first, last = max(0.0, high - window), min(low, extent - window)
        return rng.uniform(first, max(first, last))


def parse_tile_crop(text: str, auto_size: tuple[int, int] | None = None) -> TileCrop | None:
    """``"size=650,jitter=0.75-1.33,p=1,cut=0.5"`` (``size``: ``S``, ``WxH`` or ``auto``, which is
    ``auto_size``: the slicing ``auto`` tile of the model) -> :class:`TileCrop`; ``""`` -> None.
    ValueError names the bad part."""
    if not text.strip():
        return None
    options: dict = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        try:
            if not sep:
                raise ValueError("expected key=value")
            if key in options or (key == "size" and "size" in options):
                raise ValueError(given_twice(key))
            if key == "size":
                size = parse_tile_size(value)
                if size == "auto":
                    if auto_size is None:
                        raise ValueError("auto needs the model (its smallest anchor)")
                    size = auto_size
                options["size"] = tuple(size)
            elif key == "jitter":
                low, _, high = value.partition("-")
                options["jitter"] = (finite_float(low), finite_float(high or low))
            elif key in ("p", "cut"):
                options[key] = finite_float(value)
            else:
                raise ValueError("unknown key; known: size, jitter, p, cut")
        except ValueError as err:
            raise ValueError(f"{part!r}: {err}") from None
    if "size" not in options:
        raise ValueError("size= is required (S, WxH or auto)")
    return TileCrop(**options)


class SSDTrainTransform:
    """The SSD training augmentation.

    Args:
        size: the network input, ``S`` (S x S) or ``(W, H)``.
        mean: RGB fill of the zoom-out canvas, the model's mean (VGG: 123, 117, 104;
            MobileNet: 127), so that it normalises to about 0.
        min_size: boxes narrower or lower than this many output pixels are dropped.
        zoom_out: largest zoom-out ratio (the paper's 4; 1 disables zooming out). Smaller values
            converge faster on short schedules, at some cost in small-object recall.
        tile: windows at the sliced-inference scale instead of zoom-out and crop for images
            larger than a tile (:class:`TileCrop`; None: the paper's augmentation everywhere).

    Zoom-out, crop, flip and resize are one affine map, so the (up to 16x larger) zoom-out
    canvas is never built: the geometry is decided on box coordinates, then a single
    ``cv2.warpAffine`` renders the S x S output with the mean as border (after an area
    downscale of the source where the map shrinks more than 2x, against aliasing).
    """

    def __init__(self, size: int | Sequence[int] = 300, mean: Sequence[float] = (123.0, 117.0, 104.0),
                 min_size: float = 1.0, zoom_out: float = 4.0, tile: TileCrop | None = None) -> None:
        if zoom_out < 1.0:
            raise ValueError(f"zoom_out must be >= 1, got {zoom_out}")
        self.size, self.min_size, self.zoom_out, self.tile = _wh(size), min_size, zoom_out, tile
        self.mean = tuple(float(round(m)) for m in mean)

    def __call__(self, image: np.ndarray, target: dict) -> tuple[Tensor, dict]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        boxes = target["boxes"].numpy().astype(np.float64).reshape(-1, 4)
        image = photometric_distort(image, rng)
        height, width = image.shape[:2]
        if self.tile is not None:
            ignore = target["ignore"].numpy().reshape(-1) if "ignore" in target else np.zeros(len(boxes), bool)
            window = self.tile.window(boxes, ~ignore, width, height, rng)
            if window is not None:
                return self._windowed(image, target, boxes, np.array(window, dtype=float), rng)
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

    def _windowed(self, image: np.ndarray, target: dict, boxes: np.ndarray, window: np.ndarray,
                  rng: np.random.Generator) -> tuple[Tensor, dict]:
        """A :class:`TileCrop` window of the image (xyxy source pixels): boxes clipped to it; a box
        with less than ``tile.cut`` of its area inside becomes an ignore region, one with none is
        dropped."""
        flip = rng.random() < 0.5
        visible = target["visible"].numpy().astype(np.float64).reshape(-1, 4) if "visible" in target else \
            np.zeros((0, 4))
        clipped = np.concatenate([boxes[:, :2].clip(window[:2], window[2:]), boxes[:, 2:].clip(window[:2], window[2:])], 1)
        area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
        inside = area(clipped) / np.maximum(area(boxes), 1e-9)
        out_image, mapped = self._render(image, np.concatenate([boxes, visible]), window, np.zeros(2), flip)
        limit = np.tile(np.asarray(self.size, dtype=np.float64), 2)  # [W, H, W, H]
        boxes, visible = mapped[:len(boxes)].clip(0, limit), mapped[len(boxes):].clip(0, limit)
        keep = (inside > 0) & ((boxes[:, 2:] - boxes[:, :2]) >= self.min_size).all(axis=1)
        target = dict(target)
        target["ignore"] = target["ignore"] | torch.from_numpy(inside < self.tile.cut) if "ignore" in target \
            else torch.from_numpy(inside < self.tile.cut)
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
