"""Box formats, pairwise IoU and IoG, and which boxes of an image overlap another (the crowd subset).

Boxes are ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2`` (xyxy) unless the name says
``cxcywh`` (centre x, centre y, width, height). Leading batch dimensions are allowed where a
docstring says ``[..., 4]``. Symbols: N and M are box counts.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_convert

__all__ = [
    "xyxy_to_cxcywh",
    "cxcywh_to_xyxy",
    "box_area",
    "box_iou",
    "box_iog",
    "pairwise_iog",
    "clip_boxes",
    "crowd_mask",
]


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """Convert ``boxes (Tensor[..., 4])`` from xyxy to cxcywh."""
    return box_convert(boxes, "xyxy", "cxcywh")


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Convert ``boxes (Tensor[..., 4])`` from cxcywh to xyxy (ssd.pytorch's ``point_form``)."""
    return box_convert(boxes, "cxcywh", "xyxy")


def box_area(boxes: Tensor) -> Tensor:
    """Area of xyxy ``boxes (Tensor[..., 4])`` -> ``Tensor[...]``; inverted boxes count as 0."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def _nonzero(denominator: Tensor) -> Tensor:
    """Clamp a non-negative denominator to the smallest normal float: exact for every value
    above it, and turns 0 / 0 into 0 (empty boxes) in one operator instead of a ``where``."""
    return denominator.clamp(min=torch.finfo(denominator.dtype).tiny)


def _nonzero_(denominator: Tensor) -> Tensor:
    """In-place :func:`_nonzero` for a temporary."""
    return denominator.clamp_(min=torch.finfo(denominator.dtype).tiny)


def _intersection(a: Tensor, b: Tensor) -> Tensor:
    """Intersection area of broadcastable xyxy boxes ``a (Tensor[..., 4])``, ``b (Tensor[..., 4])``."""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of xyxy boxes.

    Args:
        a (Tensor[..., N, 4]), b (Tensor[M, 4]) or (Tensor[..., M, 4]) with the same leading dims.

    Returns:
        Tensor[..., N, M]: intersection over union, 0 where the union is empty.

    The arithmetic is that of ssd.pytorch's ``jaccard`` and torchvision's ``box_iou``, so
    matching reproduces them bit for bit; unlike them it takes a leading batch dimension, works
    one coordinate at a time on contiguous ``[..., N, M]`` planes, and updates its own
    temporaries in place (autograd-safe): on CPU, fresh multi-MB buffers cost page faults, and
    this is 2-3x faster than allocating a new tensor per step.
    """
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2), inter = _pairwise_intersection(a, b)
    union = ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1)).sub_(inter)  # [..., N, M]
    return inter.div_(_nonzero_(union))


def _pairwise_intersection(a: Tensor, b: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor]:
    """The coordinates of ``a`` as ``[..., N, 1]`` and of ``b`` as ``[..., 1, M]`` columns, and
    the ``[..., N, M]`` intersection areas (a fresh tensor the caller may update in place)."""
    ax1, ay1, ax2, ay2 = a_cols = a.unsqueeze(-1).unbind(-2)  # [..., N, 1] each
    bx1, by1, bx2, by2 = b_cols = b.unsqueeze(-3).unbind(-1)  # [..., 1, M] each
    inter = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1)).clamp_(min=0)  # [..., N, M] width
    inter_h = torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1)).clamp_(min=0)  # [..., N, M]
    return a_cols, b_cols, inter.mul_(inter_h)


def box_iog(pred: Tensor, gt: Tensor) -> Tensor:
    """Elementwise intersection over ground truth, Repulsion Loss Eq. 4.

    Args:
        pred (Tensor[..., 4]): predicted xyxy boxes.
        gt (Tensor[..., 4]): ground-truth xyxy boxes, broadcastable with ``pred``.

    Returns:
        Tensor[...]: ``|pred_i ∩ gt_i| / |gt_i|`` in [0, 1]; 0 where ``gt_i`` has no area.
    """
    return _intersection(pred, gt) / _nonzero(box_area(gt))


def pairwise_iog(pred: Tensor, gt: Tensor) -> Tensor:
    """Pairwise IoG, how much of each ``gt`` lies inside each ``pred``: ``pred (Tensor[..., N, 4])``,
    ``gt (Tensor[..., M, 4])`` or ``(Tensor[M, 4])`` -> ``Tensor[..., N, M]``, 0 where ``gt_m``
    has no area. Computed on ``[..., N, M]`` planes like :func:`box_iou`."""
    _, (gx1, gy1, gx2, gy2), inter = _pairwise_intersection(pred, gt)
    return inter.div_(_nonzero_((gx2 - gx1) * (gy2 - gy1)))  # [..., N, M] / [..., 1, M]


def clip_boxes(boxes: Tensor, width: float = 1.0, height: float = 1.0) -> Tensor:
    """Clip xyxy ``boxes (Tensor[..., 4])`` to ``[0, width] x [0, height]`` (normalised by default)."""
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def crowd_mask(gt_boxes: Tensor | np.ndarray, gt_labels: Tensor | np.ndarray, iou_threshold: float = 0.1) -> Tensor:
    """Which ground-truth objects of one image are in a crowd: the crowd subset of the Repulsion Loss
    paper (Table 5), which :mod:`repssd.eval.crowd` scores and ``python -m repssd.data.stats`` counts.

    Args:
        gt_boxes (Tensor[G, 4]): xyxy boxes of all GT of the image (difficult ones included).
        gt_labels (Tensor[G]): their classes.
        iou_threshold: an object is crowd when its IoU with another object of the same class
            exceeds this (0.1 in the paper).

    Returns:
        Tensor[G] bool.
    """
    boxes = torch.as_tensor(gt_boxes, dtype=torch.float64).reshape(-1, 4)
    labels = torch.as_tensor(gt_labels).reshape(-1)
    iou = box_iou(boxes, boxes)  # [G,G]
    same = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~torch.eye(len(labels), dtype=torch.bool)  # [G,G]
    return ((iou > iou_threshold) & same).any(dim=1)
