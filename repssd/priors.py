"""SSD prior (default) boxes, SSD paper Sec. 2.2 "Choosing scales and aspect ratios".

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
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["PriorSpec", "SPECS", "get_spec", "generate_priors"]


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
]}


def get_spec(name: str) -> PriorSpec:
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


def _generate(spec: PriorSpec) -> np.ndarray:
    """All priors of ``spec`` as ``float64 [P, 4]`` cxcywh, before rounding to float32."""
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


def generate_priors(spec: PriorSpec | str, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """Prior boxes of ``spec`` -> ``Tensor[P, 4]`` cxcywh, normalised to the input size.

    Cached per (spec, device, dtype): the same tensor is returned on every call, so treat it
    as read-only.
    """
    if isinstance(spec, str):
        spec = get_spec(spec)
    return _cached(spec, torch.device(device if device is not None else "cpu"), dtype)
