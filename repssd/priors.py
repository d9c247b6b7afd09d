"""SSD prior (default) boxes, SSD paper Sec. 2.2 "Choosing scales and aspect ratios".

Two layouts: :class:`PriorSpec` (ssd.pytorch / Caffe SSD, square inputs, sizes in pixels) and
:class:`GridAnchorSpec` (the TF Object Detection API's multiple-grid anchor generator, scales
relative to the shorter input side, any input size). Both give cxcywh priors.

A :class:`PriorSpec` lists, per source feature map, its size, its stride (``step``) in input
pixels, the min/max box sizes in pixels and the extra aspect ratios. ``generate_priors``
lays the boxes out in ssd.pytorch's order: feature map, then row y, then column x, then
``[s_k, sqrt(s_k * s_k_max), (ar, 1/ar) for each ar]``; sizes are over the input size, and
the boxes are clipped to [0, 1] as ``spec.clip`` says.

P is the number of priors.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

__all__ = ["PriorSpec", "GridAnchorSpec", "SPECS", "get_spec", "generate_priors"]


@dataclass(frozen=True)
class PriorSpec:
    """Geometry of an SSD's prior boxes; every count is derived from these fields.

    Attributes:
        name: registry name.
        image_size: square network input size in pixels.
        feature_maps: side of each source feature map, e.g. ``(38, 19, 10, 5, 3, 1)``.
        steps: stride of each map in input pixels; cell centres are ``(j + 0.5) * step / image_size``.
        min_sizes, max_sizes: box sizes in pixels; the extra square box has side
            ``sqrt(min * max)``.
        aspect_ratios: extra ratios per map; each ``ar`` adds boxes ``ar`` and ``1 / ar``.
        clip: what is clamped to [0, 1]: ``"all"`` cxcywh values (ssd.pytorch, pytorch-ssd),
            ``"wh"`` only the sizes (torchvision's DefaultBoxGenerator, whose centres may lie
            past 1 on maps whose step does not divide the image), or ``"none"``.
    """

    name: str
    image_size: int
    feature_maps: tuple[int, ...]
    steps: tuple[float, ...]
    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    clip: str = "all"

    def __post_init__(self) -> None:
        if self.clip not in ("all", "wh", "none"):
            raise ValueError(f"PriorSpec {self.name!r}: clip must be 'all', 'wh' or 'none', not {self.clip!r}")
        n = len(self.feature_maps)
        lengths = {len(self.steps), len(self.min_sizes), len(self.max_sizes), len(self.aspect_ratios)}
        if lengths != {n}:
            raise ValueError(f"PriorSpec {self.name!r}: feature_maps, steps, min_sizes, max_sizes "
                             f"and aspect_ratios must all have {n} entries")

    @property
    def boxes_per_location(self) -> tuple[int, ...]:
        """Priors per feature-map cell for each source: 2 squares + 2 per aspect ratio."""
        return tuple(2 + 2 * len(ars) for ars in self.aspect_ratios)

    @property
    def num_priors(self) -> int:
        """P, the total number of priors."""
        return sum(f * f * a for f, a in zip(self.feature_maps, self.boxes_per_location))

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the network input."""
        return self.image_size, self.image_size


@dataclass(frozen=True)
class GridAnchorSpec:
    """TF Object Detection API ``ssd_anchor_generator`` (``create_ssd_anchors`` +
    ``MultipleGridAnchorGenerator``), for SSD models imported from TF graphs.

    Layer k of n has scale ``s_k = min_scale + (max_scale - min_scale) k / (n - 1)`` and one box
    per aspect ratio (height ``s_k / sqrt(ar)``, width ``s_k sqrt(ar)``) plus a square box at
    ``sqrt(s_k s_{k+1})`` (``s_n = 1``); with ``reduce_boxes_in_lowest_layer`` the first layer
    has only (0.1, 1:1), (s_0, 2:1), (s_0, 1:2). Scales are relative to the shorter input side,
    so boxes stay square in pixels on a non-square input. Cell centres are ``(i + 0.5) / n``
    per axis; order: layer, row, column, box. Nothing is clipped.

    Attributes:
        image_size: (width, height) of the network input.
        feature_maps: (height, width) of every source map at that input.
        reference_size: scales are relative to a shorter side of this many pixels instead of the
            input's own (None, TF's rule), so the anchors keep their pixel sizes at other input
            sizes: what a network trained at 300 px expects of its receptive fields.
    """

    name: str
    image_size: tuple[int, int]
    feature_maps: tuple[tuple[int, int], ...]
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)  # TF's config literal 0.3333, not 1/3
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True
    clip: str = "none"
    reference_size: float | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        return self.image_size

    def box_shapes(self, k: int) -> list[tuple[float, float]]:
        """(scale, aspect ratio) of each box of layer k, in TF's order."""
        n = len(self.feature_maps)
        scales = [self.min_scale + (self.max_scale - self.min_scale) * i / (n - 1) for i in range(n)] + [1.0]
        if k == 0 and self.reduce_boxes_in_lowest_layer:
            return [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        shapes = [(scales[k], ar) for ar in self.aspect_ratios]
        if self.interpolated_scale_aspect_ratio > 0:
            shapes.append((math.sqrt(scales[k] * scales[k + 1]), self.interpolated_scale_aspect_ratio))
        return shapes

    @property
    def boxes_per_location(self) -> tuple[int, ...]:
        return tuple(len(self.box_shapes(k)) for k in range(len(self.feature_maps)))

    @property
    def num_priors(self) -> int:
        return sum(h * w * a for (h, w), a in zip(self.feature_maps, self.boxes_per_location))

    def with_feature_maps(self, feature_maps: tuple[tuple[int, int], ...]) -> "GridAnchorSpec":
        """The same generator on other grid sizes (a network's maps at another input size)."""
        return replace(self, feature_maps=tuple((int(h), int(w)) for h, w in feature_maps))

    def with_input_size(self, width: int, height: int) -> "GridAnchorSpec":
        """The spec for a ``width`` x ``height`` input; the model builder sets the grid sizes."""
        return replace(self, name=f"{self.name.split('@')[0]}@{width}x{height}", image_size=(int(width), int(height)))


def _spec(name: str, image_size: int, feature_maps, steps, min_sizes, max_sizes, aspect_ratios,
          clip: str = "all") -> PriorSpec:
    return PriorSpec(name, image_size, tuple(feature_maps), tuple(steps), tuple(min_sizes),
                     tuple(max_sizes), tuple(tuple(a) for a in aspect_ratios), clip)


_AR300 = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
_AR512 = [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]]
_MAPS300, _STEPS300 = [38, 19, 10, 5, 3, 1], [8, 16, 32, 64, 100, 300]
_MAPS512, _STEPS512 = [64, 32, 16, 8, 4, 2, 1], [8, 16, 32, 64, 128, 256, 512]

SPECS: dict[str, PriorSpec] = {s.name: s for s in [
    # ssd.pytorch data/config.py `voc` and `coco` (8732 priors).
    _spec("ssd300_voc", 300, _MAPS300, _STEPS300, [30, 60, 111, 162, 213, 264],
          [60, 111, 162, 213, 264, 315], _AR300),
    _spec("ssd300_coco", 300, _MAPS300, _STEPS300, [21, 45, 99, 153, 207, 261],
          [45, 99, 153, 207, 261, 315], _AR300),
    # torchvision ssd300_vgg16's DefaultBoxGenerator: the COCO sizes (scales 0.07 .. 1.05), but
    # only the sizes are clipped, so the last column and row of the 10x10 map centre at 1.0133.
    _spec("ssd300_torchvision", 300, _MAPS300, _STEPS300, [21, 45, 99, 153, 207, 261],
          [45, 99, 153, 207, 261, 315], _AR300, clip="wh"),
    # Original Caffe SSD512 (24564 priors).
    _spec("ssd512_voc", 512, _MAPS512, _STEPS512, [35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8],
          [76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6], _AR512),
    _spec("ssd512_coco", 512, _MAPS512, _STEPS512, [20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8],
          [51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72], _AR512),
    # qfgaohao/pytorch-ssd mobilenetv1_ssd_config (MobileNet SSD / SSD-Lite, 3000 priors).
    _spec("mobilenet_ssd300", 300, [19, 10, 5, 3, 2, 1], [16, 32, 64, 100, 150, 300],
          [60, 105, 150, 195, 240, 285], [105, 150, 195, 240, 285, 330], [[2, 3]] * 6),
    # TF Object Detection API ssd_mobilenet_v2 / ssdlite_mobilenet_v2 configs (1917 priors at 300 px)
    GridAnchorSpec("tf_ssd_anchors", (300, 300), ((19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1))),
]}


def get_spec(name: str) -> PriorSpec | GridAnchorSpec:
    """The named :class:`PriorSpec`; an unknown name raises ``ValueError`` listing the known ones."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown prior spec {name!r}; known: {', '.join(sorted(SPECS))}") from None


def _cell_shapes(spec: PriorSpec, k: int) -> np.ndarray:
    """Box (w, h) of one cell of map k, normalised, in ssd.pytorch's order -> ``float64 [A, 2]``."""
    s_k = spec.min_sizes[k] / spec.image_size
    s_big = math.sqrt(s_k * (spec.max_sizes[k] / spec.image_size))
    shapes = [(s_k, s_k), (s_big, s_big)]
    for ar in spec.aspect_ratios[k]:
        r = math.sqrt(ar)
        shapes += [(s_k * r, s_k / r), (s_k / r, s_k * r)]
    return np.asarray(shapes, dtype=np.float64)


def _generate_grid(spec: GridAnchorSpec) -> np.ndarray:
    """All anchors of a :class:`GridAnchorSpec` as ``float64 [P, 4]`` cxcywh."""
    width, height = spec.input_size
    short = spec.reference_size or min(width, height)  # pixels that scale 1.0 stands for
    maps = []
    for k, (rows, cols) in enumerate(spec.feature_maps):
        shapes = np.asarray(spec.box_shapes(k), dtype=np.float64)  # [A, 2] (scale, aspect ratio)
        root = np.sqrt(shapes[:, 1])
        wh = np.stack([shapes[:, 0] * root * short / width, shapes[:, 0] / root * short / height], axis=1)  # [A,2]
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) / rows, (np.arange(cols) + 0.5) / cols, indexing="ij")
        grid = np.empty((rows, cols, len(wh), 4))  # [rows, cols, A, 4]
        grid[..., 0], grid[..., 1], grid[..., 2:] = cx[..., None], cy[..., None], wh
        maps.append(grid.reshape(-1, 4))
    return np.concatenate(maps)


def _generate(spec: PriorSpec | GridAnchorSpec) -> np.ndarray:
    """All priors of ``spec`` as ``float64 [P, 4]`` cxcywh, before rounding to float32."""
    if isinstance(spec, GridAnchorSpec):
        return _generate_grid(spec)
    maps = []
    for k, f in enumerate(spec.feature_maps):
        f_k = spec.image_size / spec.steps[k]
        centres = (np.arange(f, dtype=np.float64) + 0.5) / f_k
        cy, cx = np.meshgrid(centres, centres, indexing="ij")  # [f, f], row y then column x
        wh = _cell_shapes(spec, k)  # [A, 2]
        grid = np.empty((f, f, len(wh), 4))  # [f, f, A, 4]
        grid[..., 0] = cx[..., None]
        grid[..., 1] = cy[..., None]
        grid[..., 2:] = wh
        maps.append(grid.reshape(-1, 4))
    return np.concatenate(maps)


@functools.lru_cache(maxsize=32)
def _cached(spec: PriorSpec, device: torch.device, dtype: torch.dtype) -> Tensor:
    # Rounding the float64 values straight to float32 is what ssd.pytorch's
    # torch.Tensor(list_of_floats) does, so the values match it bit for bit.
    priors = torch.from_numpy(_generate(spec)).to(torch.float32)
    if spec.clip == "all":
        priors = priors.clamp(0.0, 1.0)
    elif spec.clip == "wh":
        priors = torch.cat((priors[:, :2], priors[:, 2:].clamp(0.0, 1.0)), dim=1)
    return priors.to(device=device, dtype=dtype)


def generate_priors(spec: PriorSpec | GridAnchorSpec | str, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """Prior boxes of ``spec`` -> ``Tensor[P, 4]`` cxcywh, normalised to the input size.

    Cached per (spec, device, dtype): the same tensor is returned on every call, so treat it
    as read-only.
    """
    if isinstance(spec, str):
        spec = get_spec(spec)
    return _cached(spec, torch.device(device if device is not None else "cpu"), dtype)
