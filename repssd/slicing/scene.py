"""Reading the scene for sliced inference (issue 34, in progress): how tall people are as a function of
where they stand, from a first pass's detections, and tiles placed band by band so that the smallest
plausible person of each band reaches the height at which the model finds people.

For a camera at ground level a person's height grows roughly linearly with the image row of their
feet (the ground plane's perspective; Mean Height Aided Suppression, arXiv 2408.13646, uses the same
relation to reject implausible boxes). :func:`fit_heights` fits ``height = a + b * y_feet`` to the
first pass's boxes, weighted by score and made robust by Huber reweighting (a few boxes on the wrong
scale, e.g. a face or a poster, do not tilt the line); too few boxes, or no spread of rows, give a
constant. :func:`band_tiles` then walks down the image: a band starting at row ``y`` gets square tiles
of side ``T`` such that the smallest plausible person in rows ``[y, y + T]`` is ``target`` pixels tall
in the network input (``T = least height * input / target``); where the whole-image pass already shows
that person at ``target`` or more, the band gets no tiles. Either sign of slope works (a rotated or
upside-down frame just puts the small people lower).

Not yet the ``auto`` rule: its constants (``target`` per model, the spread) are being chosen on the
validation images (experiments/recall_by_height.py, experiments/slicing_scene.sh).
Sizes are pixels of the original image; boxes xyxy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import tile_starts

__all__ = ["HeightFit", "fit_heights", "band_tiles"]

HUBER = 1.345  # Huber's constant, in units of the residuals' robust scale (95% efficiency for normal residuals)


@dataclass(frozen=True)
class HeightFit:
    """``height(y) = intercept + slope * y`` (pixels; ``y`` the row of the feet), fitted on ``count``
    boxes; ``spread``: the relative height a person may fall short of the line by (a lower quantile
    of the boxes' height / fitted height)."""

    intercept: float
    slope: float
    count: int
    spread: float = 0.0
    floor: float = 1.0

    def at(self, rows: np.ndarray | float) -> np.ndarray:
        """Fitted heights at ``rows``, never below ``floor`` (the line is not extrapolated to people
        much smaller than any seen)."""
        return np.maximum(self.intercept + self.slope * np.asarray(rows, np.float64), self.floor)

    def least(self, top: float, bottom: float) -> float:
        """The smallest plausible person height among feet in rows ``[top, bottom]``: the line is
        monotonic, so its least value is at an end, shortened by ``spread``."""
        return float(min(self.at(top), self.at(bottom))) * (1.0 - self.spread)


def fit_heights(boxes: np.ndarray, scores: np.ndarray, min_boxes: int = 3, iterations: int = 20,
                quantile: float = 0.1, image_height: float | None = None, min_rows: float = 0.2,
                shrink: float = 0.5) -> HeightFit | None:
    """Robust weighted line of box height on the row of the box bottom.

    Args:
        boxes (ndarray[N, 4]): xyxy pixels of the detected people.
        scores (ndarray[N]): their scores, the fit's base weights.
        min_boxes: fewer boxes give a constant (the weighted median height), none give None.
        iterations: Huber reweighting rounds.
        quantile: ``spread`` is 1 minus this lower quantile of height / fitted height (capped to [0, 0.5]).
        image_height, min_rows: boxes touching the top or bottom border are left out (cut people:
            with their tops all at row 0 they would fake a slope of 1); feet spread over less than
            ``min_rows`` of the image's rows give a constant (a slope from a few people in one band is noise).
        shrink: the line's ``floor`` is this share of the smallest box (how far below what the first
            pass saw the tiles may aim).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    keep = (boxes[:, 3] > boxes[:, 1]) & np.isfinite(boxes).all(1) & (scores > 0)
    if image_height:  # a box cut by the top or bottom border holds part of a person: its height is no height
        keep &= (boxes[:, 1] > 1.0) & (boxes[:, 3] < image_height - 1.0)
    boxes, scores = boxes[keep], scores[keep]
    if not len(boxes):
        return None
    height, feet = boxes[:, 3] - boxes[:, 1], boxes[:, 3]
    floor = max(1.0, shrink * float(height.min()))
    narrow = np.ptp(feet) < max(1e-6, min_rows * image_height if image_height else 0.0)
    if len(boxes) < min_boxes or narrow:
        order = np.argsort(height)
        cumulative = np.cumsum(scores[order])
        median = float(height[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
        return HeightFit(median, 0.0, len(boxes), _spread(height, np.full_like(height, median), quantile), floor)
    design = np.stack([np.ones_like(feet), feet], 1)
    weights = scores.copy()
    coef = np.zeros(2)
    for _ in range(iterations):
        root = np.sqrt(weights)
        coef, *_ = np.linalg.lstsq(design * root[:, None], height * root, rcond=None)
        residual = height - design @ coef
        scale = 1.4826 * np.median(np.abs(residual - np.median(residual))) or 1e-6  # MAD
        ratio = np.abs(residual) / (HUBER * scale)
        weights = scores * np.where(ratio <= 1.0, 1.0, 1.0 / np.maximum(ratio, 1e-12))
    fitted = np.maximum(design @ coef, floor)
    return HeightFit(float(coef[0]), float(coef[1]), len(boxes), _spread(height, fitted, quantile), floor)


def _spread(height: np.ndarray, fitted: np.ndarray, quantile: float) -> float:
    return float(np.clip(1.0 - np.quantile(height / fitted, quantile), 0.0, 0.5))


def _side(fit: HeightFit, top: float, scale: float) -> float:
    """The tile side ``T`` with ``T = scale * fit.least(top, top + T)``: the least person of a band is at
    its top when people grow downwards, at its bottom (``top + T``) when they shrink (solved exactly)."""
    keep = 1.0 - fit.spread
    if fit.slope >= 0:
        return scale * keep * float(fit.at(top))
    side = scale * keep * (fit.intercept + fit.slope * top) / (1.0 - scale * keep * fit.slope)
    return max(side, scale * keep * fit.floor)  # the line reaches its floor within the band


def band_tiles(image_height: int, image_width: int, fit: HeightFit, target: float, input_height: int,
               overlap: float = 0.2, min_tile: int = 64) -> np.ndarray:
    """Square tiles, band by band from the top, so that the least plausible person of each band is
    ``target`` pixels tall in a network input ``input_height`` pixels high -> ``int64 [T, 4]`` xyxy
    (empty where the whole-image pass already shows everyone at ``target`` or more).

    A band's tile side ``T`` solves ``T = fit.least(y, y + T) * input_height / target`` (exactly: the
    line is monotonic), clipped to ``[min_tile, min(image sides)]``; its tiles overlap by
    ``overlap`` along the row (SAHI's steps, :func:`~repssd.slicing.geometry.tile_starts`) and the next
    band starts ``T * (1 - overlap)`` lower, so bands overlap as tiles do.
    """
    whole = input_height / image_height  # the whole-image pass's vertical scale (the image is resized to the input)
    side_max = min(image_height, image_width)
    tiles, top = [], 0
    while top < image_height:
        side = int(np.clip(round(_side(fit, top, input_height / target)), min(min_tile, side_max), side_max))
        if fit.least(top, min(top + side, image_height)) * whole < target:  # else the whole image shows them
            band_top = min(top, image_height - side)
            tiles += [(left, band_top, left + side, band_top + side) for left in tile_starts(image_width, side, overlap)]
            if top + side >= image_height:
                break
        top += max(1, side - int(overlap * side))
    return np.array(tiles, np.int64).reshape(-1, 4)
