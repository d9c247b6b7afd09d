"""The crowd subset (Repulsion Loss paper, Table 5): objects overlapping another object of their
class in the same image by IoU > 0.1."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..boxes import box_iou

__all__ = ["crowd_mask"]


def crowd_mask(gt_boxes: Tensor | np.ndarray, gt_labels: Tensor | np.ndarray, iou_threshold: float = 0.1) -> Tensor:
    """Which ground-truth objects of one image are in a crowd.

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
