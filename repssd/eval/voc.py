"""PASCAL VOC average precision, with the VOC devkit's semantics, vectorised.

Per class, detections of all images are sorted by score; each is compared with the ground truth
of its image and class it overlaps most (IoU over ``iou_threshold``; strictly greater, as the
devkit). If that GT is difficult (or an ignore region) the detection is neither a true nor a false
positive; the first detection to claim a GT is a true positive, later ones are false positives
(duplicates); detections that overlap nothing enough are false positives. AP is the 11-point
interpolated area (VOC2007, ``use_07_metric=True``) or the exact area under the interpolated
curve (VOC2010+). ``plus_one`` uses the devkit's inclusive-pixel boxes (width = x2 - x1 + 1).

No Python loop runs per detection: the best GT of every detection comes from chunked array
operations, and "first claim wins" from one ``np.unique``. Symbols: D detections, N GT.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["average_precision", "evaluate", "match_all", "match_detections"]

_CHUNK = 1 << 20  # detection-GT pairs per step of the overlap computation


def _array(value, dtype, shape=None) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    out = np.asarray(value, dtype=dtype)
    return out.reshape(shape) if shape is not None else out


def average_precision(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool) -> float:
    """AP from a precision/recall curve (VOC devkit ``voc_ap``).

    ``use_07_metric``: mean of the highest precision at recall >= t for t = 0, 0.1, ..., 1.
    Otherwise the area under the curve made monotone (precision at r = max over r' >= r).
    """
    rec, prec = np.asarray(rec, dtype=np.float64), np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        points = [prec[rec >= t].max() if (rec >= t).any() else 0.0 for t in np.arange(0.0, 1.1, 0.1)]
        return float(np.sum(points) / 11.0)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def _flatten(items: Sequence[Mapping], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """List of per-image dicts -> concatenated arrays plus ``image`` (the image index)."""
    out = {"boxes": np.concatenate([_array(d["boxes"], np.float64, (-1, 4)) for d in items] or [np.zeros((0, 4))]),
           "labels": np.concatenate([_array(d["labels"], np.int64, (-1,)) for d in items] or [np.zeros(0, np.int64)])}
    out["image"] = np.repeat(np.arange(len(items)), [len(_array(d["labels"], np.int64, (-1,))) for d in items])
    for key in keys:
        dtype = np.float64 if key == "scores" else bool
        parts = [_array(d[key], dtype, (-1,)) if key in d else np.zeros(len(_array(d["labels"], np.int64, (-1,))), dtype)
                 for d in items]
        out[key] = np.concatenate(parts or [np.zeros(0, dtype)])  # an empty split keeps the dtype
    return out


def _overlaps(det: np.ndarray, gt: np.ndarray, plus_one: bool) -> np.ndarray:
    """Elementwise IoU of paired boxes ``det [..., 4]`` and ``gt [..., 4]``."""
    one = 1.0 if plus_one else 0.0
    iw = np.clip(np.minimum(det[..., 2], gt[..., 2]) - np.maximum(det[..., 0], gt[..., 0]) + one, 0, None)
    ih = np.clip(np.minimum(det[..., 3], gt[..., 3]) - np.maximum(det[..., 1], gt[..., 1]) + one, 0, None)
    inter = iw * ih
    union = ((det[..., 2] - det[..., 0] + one) * (det[..., 3] - det[..., 1] + one)
             + (gt[..., 2] - gt[..., 0] + one) * (gt[..., 3] - gt[..., 1] + one) - inter)
    return inter / np.maximum(union, np.finfo(np.float64).tiny)


def match_detections(det: dict[str, np.ndarray], gt: dict[str, np.ndarray], iou_threshold: float,
                     plus_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """Devkit matching of every detection (already sorted by class, then score, best first).

    Returns:
        (tp, fp): ``bool [D]`` each; a detection matched to a difficult GT is neither.
    """
    if len(gt["labels"]) == 0:
        return np.zeros(len(det["labels"]), bool), np.ones(len(det["labels"]), bool)
    # GT grouped by (image, class): group k holds sorted GT rows start[k] : start[k] + count[k]
    num_classes = int(max(det["labels"].max(initial=0), gt["labels"].max())) + 1
    order = np.argsort(gt["image"] * num_classes + gt["labels"], kind="stable")
    gt_boxes, gt_hard = gt["boxes"][order], gt["difficult"][order]
    groups, start, count = np.unique((gt["image"] * num_classes + gt["labels"])[order],
                                     return_index=True, return_counts=True)
    det_group = det["image"] * num_classes + det["labels"]
    slot = np.minimum(np.searchsorted(groups, det_group), len(groups) - 1)
    has_gt = groups[slot] == det_group
    first, width = start[slot], np.where(has_gt, count[slot], 0)
    most = int(width.max(initial=0))
    best_iou, best_gt = np.full(len(det_group), -np.inf), np.zeros(len(det_group), dtype=np.int64)
    step = max(1, _CHUNK // max(most, 1))
    for lo in range(0, len(det_group) if most else 0, step):  # chunks bound the [D, most] pair matrix
        hi = min(lo + step, len(det_group))
        valid = np.arange(most) < width[lo:hi, None]  # [d, most]
        index = np.where(valid, first[lo:hi, None] + np.arange(most), 0)  # [d, most]
        iou = np.where(valid, _overlaps(det["boxes"][lo:hi, None, :], gt_boxes[index], plus_one), -np.inf)
        best = iou.argmax(1)
        best_gt[lo:hi], best_iou[lo:hi] = index[np.arange(hi - lo), best], iou[np.arange(hi - lo), best]
    hit = best_iou > iou_threshold
    hard = hit & gt_hard[best_gt]
    claims = np.nonzero(hit & ~hard)[0]  # in sorted order, so the first claim of a GT wins
    _, first_claim = np.unique(best_gt[claims], return_index=True)
    tp = np.zeros(len(hit), dtype=bool)
    tp[claims[first_claim]] = True
    return tp, ~tp & ~hard


def match_all(detections: Sequence[Mapping], ground_truth: Sequence[Mapping], iou_threshold: float,
              plus_one: bool) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """Flatten per-image detections and GT (ignore regions count as difficult), sort detections
    by class then score (best first), match: ``(det, gt, tp [D], fp [D])``."""
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection entries for {len(ground_truth)} images")
    gt = _flatten(ground_truth, ("difficult", "ignore"))
    gt["difficult"] = gt["difficult"] | gt["ignore"]
    det = _flatten(detections, ("scores",))
    order = np.lexsort((-det["scores"], det["labels"]))  # by class, then best first (stable)
    det = {k: v[order] for k, v in det.items()}
    tp, fp = match_detections(det, gt, iou_threshold, plus_one)
    return det, gt, tp, fp


def evaluate(detections: Sequence[Mapping], ground_truth: Sequence[Mapping], iou_threshold: float = 0.5,
             use_07_metric: bool = True, plus_one: bool = True) -> dict:
    """VOC AP per class and their mean.

    Args:
        detections: per image ``{"boxes": [N, 4] xyxy pixels, "scores": [N], "labels": [N]}``.
        ground_truth: per image ``{"boxes": [G, 4], "labels": [G], "difficult": [G] bool}``,
            optionally ``"ignore"`` (treated like difficult). NumPy arrays or tensors.

    Returns:
        ``{"ap": {label: AP}, "map": mean AP, "npos": {label: non-difficult GT},
        "curves": {label: (recall, precision)}}``; a class with no non-difficult GT is left out
        of ``ap`` and ``map``; a class with GT but no detections has AP 0.
    """
    det, gt, tp, fp = match_all(detections, ground_truth, iou_threshold, plus_one)
    result = {"ap": {}, "npos": {}, "curves": {}}
    for label in np.unique(gt["labels"]):
        npos = int(((gt["labels"] == label) & ~gt["difficult"]).sum())
        if npos == 0:
            continue
        mine = det["labels"] == label
        tp_c, fp_c = np.cumsum(tp[mine]), np.cumsum(fp[mine])
        rec = tp_c / npos
        prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
        result["ap"][int(label)] = average_precision(rec, prec, use_07_metric)
        result["npos"][int(label)] = npos
        result["curves"][int(label)] = (rec, prec)
    result["map"] = float(np.mean(list(result["ap"].values()))) if result["ap"] else 0.0
    return result
