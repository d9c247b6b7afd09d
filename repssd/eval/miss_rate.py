"""CrowdHuman metrics: AP, MR^-2 and JI, following the CrowdHuman evaluation toolkit as CrowdDet
ships it (``lib/evaluate/APMRToolkits``, ``lib/evaluate/compute_JI.py``).

Matching for AP and MR^-2 (the toolkit's ``compare_caltech``): per image, detections in score order
each take the unmatched non-ignore GT of highest IoU above the threshold; a detection matching
none but covering an ignore region (intersection over the *detection's* area above the
threshold) is neither a true nor a false positive. Ignore regions are never "used up". Here the
rank-k detection of every image is matched in the same step, so the loop runs over ranks, not
over images or detections.

- AP: trapezoidal area under the precision/recall points (no interpolation), recall over the
  non-ignore GT;
- MR^-2: the miss rate at the first point where false positives per image reach each of the
  toolkit's 9 references (10^-2 .. 1, rounded to 4 decimals as it lists them), averaged in log space;
- JI: per image and score threshold t (0, 0.1, ..., 0.9), the detections scoring above t and the
  non-ignore GT are matched one-to-one by maximum total IoU over pairs with IoU > 0.5 (k
  matches); unmatched detections lying more than 0.5 inside an ignore region (intersection over
  the detection's area) leave the detection count n, unmatched GT lying more than 0.5 inside one
  leave the GT count m; the image scores k / (m + n - k). JI is the mean over images with m or n
  non-zero, best over t.

Boxes are used as given: repssd's loaders clip GT to the image and its post-processing clips
detections, where the toolkit clips both to [0, w - 1] x [0, h - 1] for x1, y1 and [0, w] x [0, h]
for x2, y2 (a sub-pixel difference at the right and bottom edges only).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from .voc import _array

__all__ = ["evaluate", "match_greedy", "log_average_miss_rate", "jaccard_index", "FPPI_POINTS"]

# the toolkit's CALTECH_-2 references, as it lists them (10 ** linspace(-2, 0, 9), rounded)
FPPI_POINTS = np.array([0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000])
JI_SCORE_THRESHOLDS = np.arange(10) / 10


def _pairwise(det: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and intersection-over-detection-area of ``det [..., D, 4]`` with ``gt [..., G, 4]``."""
    d, g = det[..., :, None, :], gt[..., None, :, :]
    iw = np.clip(np.minimum(d[..., 2], g[..., 2]) - np.maximum(d[..., 0], g[..., 0]), 0, None)
    ih = np.clip(np.minimum(d[..., 3], g[..., 3]) - np.maximum(d[..., 1], g[..., 1]), 0, None)
    inter = iw * ih
    det_area = (d[..., 2] - d[..., 0]) * (d[..., 3] - d[..., 1])
    union = det_area + (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1]) - inter
    tiny = np.finfo(np.float64).tiny
    return inter / np.maximum(union, tiny), inter / np.maximum(det_area, tiny)


def _pad(items: list[np.ndarray], width: int, fill=0.0) -> np.ndarray:
    out = np.full((len(items), width) + items[0].shape[1:], fill, dtype=items[0].dtype) if items else np.zeros((0, width))
    for i, item in enumerate(items):
        out[i, :len(item)] = item
    return out


def match_greedy(det_boxes: list[np.ndarray], gt_boxes: list[np.ndarray], gt_ignore: list[np.ndarray],
                 iou_threshold: float = 0.5) -> list[np.ndarray]:
    """Per image, each detection's outcome (detections in score order): 1 true positive,
    0 false positive, -1 ignored."""
    images = len(det_boxes)
    most_det = max([len(d) for d in det_boxes] + [1])
    most_gt = max([len(g) for g in gt_boxes] + [1])
    det = _pad([d.reshape(-1, 4) for d in det_boxes], most_det) if images else np.zeros((0, most_det, 4))
    gt = _pad([g.reshape(-1, 4) for g in gt_boxes], most_gt) if images else np.zeros((0, most_gt, 4))
    real_gt = _pad([np.ones(len(g), bool) for g in gt_boxes], most_gt, False)
    ignore = _pad([i.astype(bool) for i in gt_ignore], most_gt, False) & real_gt
    objects = real_gt & ~ignore
    iou, ioa = _pairwise(det, gt)  # [I, D, G]
    matched = np.zeros((images, most_gt), dtype=bool)
    outcome = np.zeros((images, most_det), dtype=np.int64)
    rows = np.arange(images)
    for k in range(most_det):  # rank k of every image at once
        free = np.where(objects & ~matched & (iou[:, k] > iou_threshold), iou[:, k], -1.0)  # [I, G]
        best = free.argmax(1)
        hit = free[rows, best] > 0
        matched[rows[hit], best[hit]] = True
        covered = (ignore & (ioa[:, k] > iou_threshold)).any(1)
        outcome[:, k] = np.where(hit, 1, np.where(covered, -1, 0))
    return [outcome[i, :len(d)] for i, d in enumerate(det_boxes)]


def _sorted_image(det: Mapping, label: int) -> tuple[np.ndarray, np.ndarray]:
    labels = _array(det["labels"], np.int64, (-1,))
    boxes, scores = _array(det["boxes"], np.float64, (-1, 4))[labels == label], _array(det["scores"], np.float64, (-1,))[labels == label]
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order]


def log_average_miss_rate(fp: np.ndarray, tp: np.ndarray, npos: int, num_images: int) -> float:
    """MR^-2 from cumulative false and true positives over detections in score order."""
    if len(fp) == 0 or npos == 0:
        return 1.0
    fppi, miss = fp / num_images, 1.0 - tp / npos
    index = [int(np.argmax(fppi >= ref)) if (fppi >= ref).any() else len(fppi) - 1 for ref in FPPI_POINTS]
    with np.errstate(divide="ignore"):
        return float(np.exp(np.log(miss[index]).mean()))


def jaccard_index(det_boxes: list[np.ndarray], det_scores: list[np.ndarray], gt_boxes: list[np.ndarray],
                  gt_ignore: list[np.ndarray], iou_threshold: float = 0.5) -> float:
    """The toolkit's JI (module docstring): best over score thresholds of the mean per-image
    k / (m + n - k), ignore regions taking unmatched detections and GT out of n and m."""
    best = 0.0
    for threshold in JI_SCORE_THRESHOLDS:
        ratios = []
        for boxes, scores, gt, ignore in zip(det_boxes, det_scores, gt_boxes, gt_ignore):
            dets, objects, regions = boxes[scores > threshold], gt[~ignore], gt[ignore]
            det_free, gt_free = np.ones(len(dets), bool), np.ones(len(objects), bool)
            if len(dets) and len(objects):
                iou, _ = _pairwise(dets, objects)
                weight = np.where(iou > iou_threshold, iou, 0.0)
                rows, cols = linear_sum_assignment(weight, maximize=True)  # maximum-weight matching
                hit = weight[rows, cols] > 0
                det_free[rows[hit]], gt_free[cols[hit]] = False, False
            k = int((~det_free).sum())
            n = len(dets) - _inside(dets[det_free], regions, iou_threshold)
            m = len(objects) - _inside(objects[gt_free], regions, iou_threshold)
            if m + n:
                ratios.append(k / (m + n - k))
        if ratios:
            best = max(best, float(np.mean(ratios)))
    return best


def _inside(boxes: np.ndarray, regions: np.ndarray, threshold: float) -> int:
    """How many ``boxes`` lie more than ``threshold`` inside some region (over their own area)."""
    if not len(boxes) or not len(regions):
        return 0
    _, ioa = _pairwise(boxes, regions)
    return int((ioa.max(axis=1) > threshold).sum())


def evaluate(detections: Sequence[Mapping], ground_truth: Sequence[Mapping], label: int = 1,
             iou_threshold: float = 0.5) -> dict:
    """CrowdHuman AP, MR^-2 and JI of class ``label`` (pixel xyxy boxes; GT ``ignore`` flags)."""
    det_boxes, det_scores = zip(*(_sorted_image(d, label) for d in detections)) if detections else ((), ())
    gt_boxes, gt_ignore = [], []
    for gt in ground_truth:
        labels = _array(gt["labels"], np.int64, (-1,))
        ignore = _array(gt.get("ignore", np.zeros(len(labels), bool)), bool, (-1,))
        mine = (labels == label) | ignore
        gt_boxes.append(_array(gt["boxes"], np.float64, (-1, 4))[mine])
        gt_ignore.append(ignore[mine])
    outcomes = match_greedy(list(det_boxes), gt_boxes, gt_ignore, iou_threshold)
    scores = np.concatenate(list(det_scores) + [np.zeros(0)])
    outcome = np.concatenate(outcomes + [np.zeros(0, np.int64)])
    counted = outcome != -1
    order = np.argsort(-scores[counted], kind="stable")
    result = outcome[counted][order]
    tp, fp = np.cumsum(result == 1), np.cumsum(result == 0)
    npos = int(sum((~i).sum() for i in gt_ignore))
    recall, precision = tp / max(npos, 1), tp / np.maximum(tp + fp, 1)
    ap = float(np.sum((recall[1:] - recall[:-1]) * (precision[1:] + precision[:-1]) / 2)) if len(recall) > 1 else 0.0
    return {"ap": ap, "mr": log_average_miss_rate(fp, tp, npos, len(ground_truth)),
            "ji": jaccard_index(list(det_boxes), list(det_scores), gt_boxes, gt_ignore, iou_threshold),
            "npos": npos, "num_images": len(ground_truth)}
