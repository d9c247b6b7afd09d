"""The crowd subset (Repulsion Loss paper, Table 5): objects overlapping another object of their
class in the same image by IoU > 0.1."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..boxes import crowd_mask
from .voc import evaluate as voc_evaluate

__all__ = ["crowd_mask", "crowd_flags", "crowd_ground_truth", "evaluate"]


def crowd_flags(ground_truth: Sequence[Mapping], crowd_iou: float = 0.1) -> list[np.ndarray]:
    """Per image, the ``crowd_mask`` of all its GT (difficult ones included, ignore regions not)."""
    flags = []
    for gt in ground_truth:
        labels = np.asarray(_numpy(gt["labels"]), dtype=np.int64).reshape(-1)
        ignore = np.asarray(_numpy(gt.get("ignore", np.zeros(len(labels), bool))), dtype=bool).reshape(-1)
        boxes = np.asarray(_numpy(gt["boxes"]), dtype=np.float64).reshape(-1, 4)
        # ignore regions are not objects: give them a label no object has
        mask = crowd_mask(boxes, np.where(ignore, -1 - np.arange(len(labels)), labels), crowd_iou).numpy()
        flags.append(mask & ~ignore)
    return flags


def crowd_ground_truth(ground_truth: Sequence[Mapping], crowd_iou: float = 0.1) -> list[dict]:
    """The GT with every object that is not crowd marked difficult (what crowd AP scores)."""
    subset = []
    for gt, crowd in zip(ground_truth, crowd_flags(ground_truth, crowd_iou)):
        difficult = np.asarray(_numpy(gt.get("difficult", np.zeros(len(crowd), bool))), dtype=bool).reshape(-1)
        subset.append({**gt, "difficult": difficult | ~crowd})
    return subset


def evaluate(detections: Sequence[Mapping], ground_truth: Sequence[Mapping], crowd_iou: float = 0.1,
             **voc_options) -> dict:
    """Crowd-subset AP: VOC AP where every GT that is not crowd is ignored like a difficult one.

    Detections matching a non-crowd object are thus neither true nor false positives; the mean
    runs over classes with crowd GT. Also reports ``image_level``: plain VOC AP on the images
    that contain a crowd object.

    Returns:
        ``{"ap": {label: AP}, "map", "num_boxes": crowd GT counted (not difficult),
        "num_images": images holding one, "image_level": {"ap", "map", "num_images"}}``; both
        ``map`` are None (not applicable) when there is no crowd object (or no object, or no image).
    """
    subset = crowd_ground_truth(ground_truth, crowd_iou)
    result = voc_evaluate(detections, subset, **voc_options)
    counted = [int((~s["difficult"]).sum()) for s in subset]
    images = [i for i, n in enumerate(counted) if n]
    level = voc_evaluate([detections[i] for i in images], [ground_truth[i] for i in images], **voc_options)
    applicable = bool(images)  # no crowd object: there is no crowd AP to report, not a zero
    return {"ap": result["ap"], "map": result["map"] if applicable else None, "npos": result["npos"],
            "curves": result["curves"], "num_boxes": int(sum(counted)), "num_images": len(images),
            "image_level": {"ap": level["ap"], "map": level["map"] if applicable else None, "num_images": len(images)}}


def _numpy(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value
