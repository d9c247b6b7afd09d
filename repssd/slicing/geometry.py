"""Tile geometry of sliced inference: where the tiles of an image lie, and how big they are.

The tiles are SAHI's (obss/sahi ``sahi.slicing.get_slice_bboxes``) for the same tile size and
overlap, so results can be compared tile for tile: along each axis tiles start at 0 and step by
``size - int(overlap * size)``; the last one is moved back to end at the image border (never
past it), and a tile larger than the image is cut to the image. Rows run top to bottom, tiles
left to right within a row.

Sizes are ``(W, H)`` pixels of the original image, boxes ``xyxy`` integer pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import parse_tile_size

__all__ = ["Slicing", "tile_starts", "tile_boxes", "auto_tile_size", "parse_tile_size", "MERGES", "MERGE_METRICS",
           "AUTO_PERSON_PIXELS", "MAX_TILES"]

MERGES = ("nms", "greedy-nmm", "crowd")
MERGE_METRICS = ("iou", "ios")
# auto: the height in pixels of the smallest person the tiles must show (chosen on the MOT17-mini
# validation frames, see docs/slicing.md); such a person comes out the size of the smallest anchor
AUTO_PERSON_PIXELS = 65
MAX_TILES = 1024  # per image: more means flags that would run for minutes an image (refused, naming them)


def tile_starts(length: int, size: int, overlap: float) -> list[int]:
    """Start offsets of the tiles along one axis of ``length`` pixels (SAHI's loop): each
    tile covers ``[start, min(start + size, length))``."""
    step_back = int(overlap * size)
    starts, end, start = [], 0, 0
    while end < length:
        end = start + size
        if end > length:
            end = length
            start = max(0, end - size)
        starts.append(start)
        start = end - step_back
    return starts or [0]


def tile_boxes(height: int, width: int, size: tuple[int, int], overlap: float) -> np.ndarray:
    """Tiles of an image -> ``int64 [T, 4]`` xyxy pixels, rows top to bottom (SAHI's order).

    Args:
        height, width: the image's size in pixels.
        size: ``(W, H)`` of a tile in the image's pixels (a tile larger than the image is cut to it).
        overlap: fraction of a tile shared with its neighbour, in [0, 1).
    """
    tile_w, tile_h = size
    xs, ys = tile_starts(width, tile_w, overlap), tile_starts(height, tile_h, overlap)
    x0, y0 = np.meshgrid(np.asarray(xs, np.int64), np.asarray(ys, np.int64))  # [rows, cols]
    x0, y0 = x0.reshape(-1), y0.reshape(-1)
    return np.stack([x0, y0, np.minimum(x0 + tile_w, width), np.minimum(y0 + tile_h, height)], 1)


def auto_tile_size(height: int, width: int, input_size: tuple[int, int], smallest_anchor: float,
                   person_pixels: float = AUTO_PERSON_PIXELS) -> tuple[int, int]:
    """The ``auto`` tile ``(W, H)`` for an image: a person ``person_pixels`` tall in the image comes
    out the height of the model's smallest anchor in the network input, i.e. the tile is
    ``person_pixels / smallest_anchor`` high (``smallest_anchor``: the smallest prior's height as a
    fraction of the input; 0.1 -> 650-px tiles), the width keeping the model input's aspect. An
    image no larger than that is not sliced: the whole image already shows such a person at that
    size or larger. A whole-image pass sees the large people (``Slicing.full_image``)."""
    in_w, in_h = input_size
    tile_h = max(1, round(person_pixels / smallest_anchor))
    tile_w = max(1, round(tile_h * in_w / in_h))
    return (width, height) if tile_w >= width and tile_h >= height else (tile_w, tile_h)


@dataclass(frozen=True)
class Slicing:
    """How to slice images for inference.

    Args:
        size: tile ``(W, H)`` in pixels of the original image (an int S: S x S), or ``"auto"``
            (:func:`auto_tile_size`, which keeps the model input's aspect).
        overlap: fraction of a tile shared with each neighbour, 0 <= overlap < 1 (SAHI's ratio).
        full_image: also run the whole image at the model input (SAHI's ``perform_standard_pred``);
            skipped when one tile already covers the image.
        merge: ``"nms"`` (greedy suppression), ``"greedy-nmm"`` (SAHI's greedy non-maximum merging:
            the kept box grows to the union of those it absorbs) or ``"crowd"`` (repssd's: see
            :mod:`repssd.slicing.merge`).
        metric: ``"iou"`` or ``"ios"`` (intersection over the smaller box) for nms and greedy-nmm;
            the crowd merge has its own (IoU within the view the two tiles share).
        thresh: overlap at or above which two boxes are merged; None: 0.5 for ios, else the model's
            NMS threshold (``Detector`` fills it in).
        edge_margin: a box whose side lies within this fraction of the tile size of an interior
            tile edge is cut by it (crowd merge).
    """

    size: tuple[int, int] | str = "auto"
    overlap: float = 0.2
    full_image: bool = True
    merge: str = "crowd"
    metric: str = "iou"
    thresh: float | None = None
    edge_margin: float = 0.02

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", parse_tile_size(self.size) or "auto")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"slice overlap must be in [0, 1), got {self.overlap}")
        if self.merge not in MERGES:
            raise ValueError(f"unknown merge {self.merge!r}; known: {', '.join(MERGES)}")
        if self.metric not in MERGE_METRICS:
            raise ValueError(f"unknown merge metric {self.metric!r}; known: {', '.join(MERGE_METRICS)}")
        if self.merge == "crowd" and self.metric != "iou":
            raise ValueError("the crowd merge compares boxes by IoU within the shared view; metric must be iou")
        if self.thresh is not None and not 0.0 < self.thresh <= 1.0:
            raise ValueError(f"merge threshold must be in (0, 1], got {self.thresh}")
        if not 0.0 <= self.edge_margin < 0.5:
            raise ValueError(f"edge margin must be in [0, 0.5), got {self.edge_margin}")

    def tile_size(self, height: int, width: int, input_size: tuple[int, int], smallest_anchor: float) -> tuple[int, int]:
        """This image's tile ``(W, H)``: the given size, or the ``auto`` rule's."""
        if self.size == "auto":
            return auto_tile_size(height, width, input_size, smallest_anchor)
        return self.size

    def threshold(self, nms_thresh: float) -> float:
        """The merge threshold, defaulted (0.5 for ios, else the model's NMS IoU)."""
        if self.thresh is not None:
            return self.thresh
        return 0.5 if self.metric == "ios" else nms_thresh

    def tiles(self, height: int, width: int, input_size: tuple[int, int], smallest_anchor: float) -> np.ndarray:
        """Tiles of one image -> ``int64 [T, 4]``, the whole image appended as the last row when
        :attr:`full_image` and more than one tile."""
        size = self.tile_size(height, width, input_size, smallest_anchor)
        boxes = tile_boxes(height, width, size, self.overlap)
        if len(boxes) > MAX_TILES:
            raise ValueError(f"--slice {size[0]}x{size[1]} at --slice-overlap {self.overlap:g} cuts a {width}x{height} "
                             f"image into {len(boxes)} tiles (more than {MAX_TILES}): use larger tiles or less overlap")
        if self.full_image and len(boxes) > 1:
            boxes = np.concatenate([boxes, np.array([[0, 0, width, height]], np.int64)])
        return boxes

    def describe(self) -> str:
        size = self.size if self.size == "auto" else f"{self.size[0]}x{self.size[1]}"
        thresh = "default" if self.thresh is None else f"{self.thresh:g}"
        return (f"tiles {size}, overlap {self.overlap:g}, {'with' if self.full_image else 'without'} the whole image, "
                f"merge {self.merge} ({self.metric} {thresh})")
