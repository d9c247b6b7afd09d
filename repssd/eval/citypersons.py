"""CityPersons' log-average miss rate (MR^-2), with the official script's semantics, vectorised.

Reference: cvgroup-njust/CityPersons, ``evaluation/eval_script/eval_MR_multisetup.py`` (a modified
pycocotools ``COCOeval``) with ``coco.py``, run once per setup as ``eval_demo.py`` does. A setup is a
GT height range and a visibility range, both inclusive. Per setup:

- GT of class ``label`` outside either range, or flagged ``ignore``, is ignored;
- detections of class ``label`` are sorted by score (stable), capped at ``max_dets`` per image,
  then those of height outside [lo / 1.25, hi * 1.25) are dropped (the official ``expFilter``);
- per image in score order, a detection takes the unmatched non-ignored GT of highest IoU >=
  ``iou_threshold`` (a true positive); failing that, a detection whose intersection over its own
  area with some ignored GT is >= the threshold is neither a true nor a false positive (ignored
  GT are never used up); otherwise it is a false positive;
- the counted detections of all images are sorted by score (stable: image order, then rank); the
  miss rate at FPPI reference r is 1 - recall at the last detection with FPPI <= r, and MR^-2 =
  exp(mean(log(miss rate))) over the 9 references 10^-2 .. 10^0.

Quirks of the official code, reproduced here:

- FPPI divides by all images, also those without GT and detections.
- When the first counted detection is a false positive and 1 / num_images exceeds a reference r,
  no detection has FPPI <= r and the index -1 reads Python's ``recall[-1]``: the *final* recall.
  With fewer than 100 images the lowest references can so be optimistic.
- Every ignored GT is matched by intersection over the detection's area, also people ignored only
  for being out of the setup's ranges: a detection lying on a too-small or too-occluded person is
  not a false positive.
- IoU exactly at the threshold matches (``>=``); of equal IoUs the later GT wins (the scan skips
  ``iou < best``); ``iou_threshold`` is capped at 1 - 1e-10.
- No counted detection at all: every reference reads recall 0, MR 1. Recall 1 at any reference
  gives MR 0 (log 0).
- A setup without non-ignored GT scores -1 officially; ``nan`` here.
- Only category 1 is accumulated, and ignore regions take part only in category 1 (as in
  ``val_gt.json``); here GT of class ``label`` and ignored GT of any class take part.

For users of the official script: ``_prepare`` writes a setup's ignore flags into the shared GT
annotations (the demo rebuilds the COCO objects per setup; reusing them carries the flags over),
``loadRes`` fails on an empty result list, a GT id of 0 turns its match into a false positive, and
``summarize`` prints MR with 2 decimals and returns nothing.

Boxes are pixel xyxy; they are converted to the official xywh (w = x2 - x1) and its arithmetic is
redone (x2 = x + w, areas w * h), so overlaps agree bit for bit. Heights are y2 - y1 (in
``val_gt.json`` ``height`` is the box height); visibility is the GT's ``visibility`` (default 1),
``vis_ratio`` there. Visibility is compared with the bounds in float32, the precision datasets
store it in: as float32(0.65) < 0.65 and float32(0.9) < 0.9, the val set would otherwise count 1577
Reasonable and 765 Bare people instead of the official 1579 and 769 (the price: a float64 visibility
within float32 rounding, ~3e-8, of a bound is taken as at it).

Symbols: S setups, I images, D detections per image, G GT per image (both padded).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .miss_rate import FPPI_POINTS  # the same 9 Caltech references as the official fppiThrs
from .voc import _array

__all__ = ["SETUPS", "OFFICIAL_NAMES", "evaluate", "match_setups", "log_average_miss_rate"]

_OPEN = 1e5 ** 2  # the official's upper bound for "no upper bound"
SETUPS = {  # name -> ((min height, max height), (min visibility, max visibility)), inclusive
    "Reasonable": ((50, _OPEN), (0.65, _OPEN)),
    "Reasonable_small": ((50, 75), (0.65, _OPEN)),
    "Heavy": ((50, _OPEN), (0.2, 0.65)),
    "All": ((20, _OPEN), (0.2, _OPEN)),
    "Partial": ((50, _OPEN), (0.65, 0.9)),  # Repulsion Loss paper's subsets (Wang et al., CVPR 2018)
    "Bare": ((50, _OPEN), (0.9, _OPEN)),
}
OFFICIAL_NAMES = {"Reasonable": "Reasonable", "Reasonable_small": "Reasonable_small",
                  "Heavy": "Reasonable_occ=heavy", "All": "All"}  # Partial and Bare are not in the script
EXP_FILTER = 1.25  # detections are kept down to 1/1.25 of a setup's least height, below 1.25x its most


def _pad(items: list[np.ndarray], fill, dtype, tail: tuple = ()) -> np.ndarray:
    """``[len(items), longest (at least 1), *tail]``, ``fill`` where an item is shorter."""
    out = np.full((len(items), max([len(x) for x in items] + [1]), *tail), fill, dtype)
    for i, item in enumerate(items):
        out[i, :len(item)] = item
    return out


def _xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes_xyxy[:, :2], boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]], axis=1)


def _ground_truth(ground_truth: Sequence[Mapping], label: int):
    """GT of class ``label`` and ignored GT, padded: ``xywh [I, G, 4]``, ``real``, ``ignore`` (bool
    ``[I, G]``) and ``visibility [I, G]``."""
    boxes, flags, visibility = [], [], []
    for gt in ground_truth:
        labels = _array(gt["labels"], np.int64, (-1,))
        ignore = _array(gt.get("ignore", np.zeros(len(labels), bool)), bool, (-1,))
        mine = (labels == label) | ignore
        boxes.append(_xywh(_array(gt["boxes"], np.float64, (-1, 4))[mine]))
        flags.append(ignore[mine])
        visibility.append(_array(gt.get("visibility", np.ones(len(labels))), np.float64, (-1,))[mine])
    real = [np.ones(len(b), bool) for b in boxes]
    return (_pad(boxes, 0.0, np.float64, (4,)), _pad(real, False, bool), _pad(flags, False, bool),
            _pad(visibility, 1.0, np.float64))


def _detections(detections: Sequence[Mapping], label: int, max_dets: int):
    """Detections of class ``label``, each image's in score order (stable) and capped at
    ``max_dets``, padded: ``xywh [I, D, 4]``, ``scores [I, D]``, ``real [I, D]``."""
    boxes, scores = [], []
    for det in detections:
        mine = _array(det["labels"], np.int64, (-1,)) == label
        score = _array(det["scores"], np.float64, (-1,))[mine]
        order = np.argsort(-score, kind="stable")[:max_dets]  # the cap comes before the height filter
        boxes.append(_xywh(_array(det["boxes"], np.float64, (-1, 4))[mine][order]))
        scores.append(score[order])
    real = [np.ones(len(s), bool) for s in scores]
    return _pad(boxes, 0.0, np.float64, (4,)), _pad(scores, 0.0, np.float64), _pad(real, False, bool)


def _overlaps(det: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and intersection over the detection's area of ``det [I, 4]`` with ``gt [I, G, 4]`` (xywh),
    in the official script's arithmetic; 0 where the boxes do not overlap."""
    d, g = det[:, None, :], gt
    iw = np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0])  # [I, G]
    ih = np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter, det_area = iw * ih, d[..., 2] * d[..., 3]
    overlap = (iw > 0) & (ih > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(overlap, inter / (det_area + g[..., 2] * g[..., 3] - inter), 0.0)
        return iou, np.where(overlap, inter / det_area, 0.0)


def match_setups(det_xywh: np.ndarray, det_valid: np.ndarray, gt_xywh: np.ndarray, gt_real: np.ndarray,
                 gt_ignore: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """The official greedy matching, for every setup and image at once, one detection rank at a time.

    Args:
        det_xywh: ``[I, D, 4]``, each image's detections in score order.
        det_valid: bool ``[S, I, D]``, the detections each setup evaluates (not padding, not filtered).
        gt_xywh: ``[I, G, 4]``; gt_real: bool ``[I, G]`` (not padding).
        gt_ignore: bool ``[S, I, G]``, the GT each setup ignores.

    Returns:
        int8 ``[S, I, D]``: 1 true positive, 0 false positive, -1 on an ignored GT, -2 not evaluated.
    """
    threshold = min(iou_threshold, 1 - 1e-10)
    regular, crowd = gt_real & ~gt_ignore, gt_real & gt_ignore  # [S, I, G]
    matched = np.zeros_like(regular)
    outcome = np.full(det_valid.shape, -2, np.int8)
    last = gt_xywh.shape[1] - 1
    for k in range(det_xywh.shape[1]):  # rank k of every image and setup at once
        iou, ioa = _overlaps(det_xywh[:, k], gt_xywh)  # [I, G]
        free = regular & ~matched & (iou >= threshold)  # [S, I, G]
        best = last - np.where(free, iou, -np.inf)[..., ::-1].argmax(-1)  # ties: the later GT  [S, I]
        valid = det_valid[:, :, k]
        hit = free.any(-1) & valid
        s, i = np.nonzero(hit)
        matched[s, i, best[s, i]] = True
        # ignored GT are scanned after all regular ones, so they only count when none matched
        covered = (crowd & (ioa >= threshold)).any(-1)
        outcome[:, :, k] = np.where(valid, np.where(hit, 1, np.where(covered, -1, 0)), -2)
    return outcome


def log_average_miss_rate(outcome: np.ndarray, scores: np.ndarray, npos: int,
                          num_images: int) -> tuple[float, np.ndarray]:
    """MR^-2 and the miss rates at ``FPPI_POINTS [9]`` from one setup's ``outcome [I, D]`` (as
    ``match_setups``) and ``scores [I, D]``; ``nan`` and an empty array when ``npos`` is 0."""
    if npos == 0:
        return float("nan"), np.zeros(0)
    counted = outcome >= 0
    hits = outcome[counted][np.argsort(-scores[counted], kind="stable")] == 1  # image-major, as concatenated
    recall, fppi = np.cumsum(hits) / npos, np.cumsum(~hits) / num_images
    if len(recall) == 0:
        miss = np.ones(len(FPPI_POINTS))  # the official's IndexError leaves every recall at 0
    else:
        miss = 1.0 - recall[np.searchsorted(fppi, FPPI_POINTS, side="right") - 1]  # -1: final recall (quirk)
    with np.errstate(divide="ignore"):
        return float(np.exp(np.mean(np.log(miss)))), miss


def _chosen(setups) -> dict[str, tuple]:
    if setups is None:
        return dict(SETUPS)
    if isinstance(setups, Mapping):
        return dict(setups)
    unknown = [name for name in setups if name not in SETUPS]
    if unknown:
        raise ValueError(f"unknown CityPersons setup(s) {unknown}; known: {', '.join(SETUPS)}")
    return {name: SETUPS[name] for name in setups}


def evaluate(detections: Sequence[Mapping], ground_truth: Sequence[Mapping], label: int = 1,
             setups: Sequence[str] | Mapping[str, tuple] | None = None, iou_threshold: float = 0.5,
             max_dets: int = 1000) -> dict:
    """CityPersons MR^-2 of class ``label`` per setup (module docstring).

    Args:
        detections: per image ``{"boxes": [D, 4] xyxy, "scores": [D], "labels": [D]}``.
        ground_truth: per image ``{"boxes": [G, 4] xyxy, "labels": [G], "ignore": bool [G]
            (optional), "visibility": [G] visible fraction (optional, default 1)}``.
        setups: names from ``SETUPS`` (default: all six), or a mapping name ->
            ((min height, max height), (min visibility, max visibility)).

    Returns:
        ``{"mr": {setup: MR^-2 as a fraction, nan without GT}, "npos": {setup: non-ignored GT},
        "num_images": I, "miss_at_fppi": {setup: 9 miss rates, [] without GT},
        "fppi_points": the 9 references, "setups": {setup: [height range, visibility range]}}``.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection entries for {len(ground_truth)} images")
    chosen = _chosen(setups)
    gt_xywh, gt_real, gt_flag, gt_vis = _ground_truth(ground_truth, label)
    det_xywh, det_scores, det_real = _detections(detections, label, max_dets)
    ranges = np.array([[*heights, *visible] for heights, visible in chosen.values()], np.float64).reshape(-1, 4)
    low_h, high_h, low_v, high_v = (ranges[:, j, None, None] for j in range(4))  # [S, 1, 1]
    height, visibility = gt_xywh[..., 3], gt_vis.astype(np.float32)
    out_of_range = ((height < low_h) | (height > high_h) | (visibility < low_v.astype(np.float32))
                    | (visibility > high_v.astype(np.float32)))  # [S, I, G]
    gt_ignore = gt_real & (gt_flag | out_of_range)
    det_height = det_xywh[..., 3]
    det_valid = det_real & (det_height >= low_h / EXP_FILTER) & (det_height < high_h * EXP_FILTER)  # [S, I, D]
    outcome = match_setups(det_xywh, det_valid, gt_xywh, gt_real, gt_ignore, iou_threshold)
    npos = (gt_real & ~gt_ignore).sum(axis=(1, 2))
    result = {"mr": {}, "npos": {}, "num_images": len(ground_truth), "miss_at_fppi": {},
              "fppi_points": FPPI_POINTS.tolist(),
              "setups": {name: [list(heights), list(visible)] for name, (heights, visible) in chosen.items()}}
    occluded = set()  # setups that select by occlusion, which ground truth without visibility cannot tell
    if not any("visibility" in gt for gt in ground_truth):
        occluded = {name for name, (_, (low, high)) in chosen.items() if low > 0.65 or high < _OPEN}
        result["note"] = ("the annotations carry no visibility: every person counts as fully visible, so the "
                          "occlusion subsets (" + (", ".join(sorted(occluded)) or "none chosen") + ") are not "
                          "applicable and Reasonable selects by height alone")
    for s, name in enumerate(chosen):
        if name in occluded:
            result["mr"][name], result["npos"][name], result["miss_at_fppi"][name] = float("nan"), 0, []
            continue
        mr, miss = log_average_miss_rate(outcome[s], det_scores, int(npos[s]), len(ground_truth))
        result["mr"][name], result["npos"][name], result["miss_at_fppi"][name] = mr, int(npos[s]), miss.tolist()
    return result
