"""Paired bootstrap over test images for differences of VOC mAP and crowd mAP between two models.

Resampling images with replacement changes which detections and GT are counted, not whether a
detection is a true or false positive: the VOC devkit matches within an image. So every
detection's outcome is computed once (:func:`detection_outcomes`) and a resample is a vector of
image multiplicities ``w [N]``: a detection of image i counts ``w[i]`` times in the cumulative
TP/FP sums and image i's GT ``w[i]`` times in npos. :func:`resampled_map` evaluates R resamples at
once from these weights; at ``w = 1`` it equals :func:`repssd.eval.voc.evaluate`'s mAP.

Symbols: N images, D detections, R resamples, L labels (1..L-1 used).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .inference import scored_images
from .crowd import crowd_ground_truth
from .miss_rate import FPPI_POINTS
from .voc import match_all

__all__ = ["Outcomes", "detection_outcomes", "resampled_map", "resampled_miss_rate", "paired_bootstrap",
           "paired_count_bootstrap"]

_CELLS = 1 << 22  # resample x detection cells per step


@dataclass(frozen=True)
class Outcomes:
    """What AP needs of one model on one image set, sorted by class, then score (best first).

    Attributes:
        labels, image (int64 [D]), tp, fp (bool [D]): the detections that count (matched to a
            difficult / ignored GT ones are dropped: they change neither sum).
        npos (int64 [N, L]): counted GT per image and label.
    """

    labels: np.ndarray
    image: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    npos: np.ndarray


def detection_outcomes(detections: Sequence[Mapping], ground_truth: Sequence[Mapping], iou_threshold: float = 0.5,
                       plus_one: bool = True, crowd_iou: float | None = None) -> Outcomes:
    """Match once (VOC devkit rules). ``crowd_iou``: score the crowd subset instead (GT that is
    not crowd is ignored like difficult, as :func:`repssd.eval.crowd.evaluate`)."""
    detections, ground_truth, _ = scored_images(detections, ground_truth)  # unreadable images: in neither
    if crowd_iou is not None:
        ground_truth = crowd_ground_truth(ground_truth, crowd_iou)
    det, gt, tp, fp = match_all(detections, ground_truth, iou_threshold, plus_one)
    counts = tp | fp
    num_labels = int(max(gt["labels"].max(initial=0), det["labels"].max(initial=0))) + 1
    npos = np.zeros((len(ground_truth), num_labels), np.int64)
    np.add.at(npos, (gt["image"][~gt["difficult"]], gt["labels"][~gt["difficult"]]), 1)
    return Outcomes(det["labels"][counts], det["image"][counts], tp[counts], fp[counts], npos)


def _ap(tp_c: np.ndarray, fp_c: np.ndarray, npos: np.ndarray, use_07_metric: bool) -> np.ndarray:
    """AP of R curves: cumulative weighted ``tp_c``, ``fp_c`` [R, D], ``npos`` [R] (> 0)."""
    rec = tp_c / npos[:, None]  # [R,D]
    prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)  # [R,D]
    if use_07_metric:
        points = [np.where(rec >= t, prec, 0.0).max(axis=1, initial=0.0) for t in np.arange(0.0, 1.1, 0.1)]
        return np.sum(points, axis=0) / 11.0
    # area under the monotone curve: sum over steps of recall of the best precision to the right
    best = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]  # [R,D]
    step = np.diff(rec, axis=1, prepend=0.0)  # [R,D]
    return (step * best).sum(axis=1)


def resampled_map(outcomes: Outcomes, weights: np.ndarray, use_07_metric: bool = True) -> np.ndarray:
    """mAP for each resample: ``weights (float [R, N])`` image multiplicities -> ``float [R]``.

    A label without counted GT in a resample is left out of its mean (as in ``voc.evaluate``).
    """
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    npos = weights @ outcomes.npos  # [R,L]
    aps = np.full(npos.shape, np.nan)
    rows = max(1, _CELLS // max(len(outcomes.labels), 1))
    for label in np.nonzero(outcomes.npos.sum(axis=0))[0]:
        mine = outcomes.labels == label
        image, tp, fp = outcomes.image[mine], outcomes.tp[mine], outcomes.fp[mine]
        for lo in range(0, len(weights), rows):
            w = weights[lo:lo + rows, image]  # [r,Dc]
            counted = npos[lo:lo + rows, label] > 0
            ap = _ap(np.cumsum(w * tp, axis=1), np.cumsum(w * fp, axis=1),
                     np.maximum(npos[lo:lo + rows, label], 1e-12), use_07_metric)
            aps[lo:lo + rows, label] = np.where(counted, ap, np.nan)
    counted = (~np.isnan(aps)).sum(axis=1)
    return np.where(counted > 0, np.nansum(aps, axis=1) / np.maximum(counted, 1), 0.0)


def resampled_miss_rate(outcomes: Outcomes, weights: np.ndarray, label: int = 1) -> np.ndarray:
    """MR^-2 of class ``label`` for each resample: ``weights (float [R, N])`` -> ``float [R]``.

    The CrowdHuman toolkit's log-average miss rate (:func:`repssd.eval.miss_rate.log_average_miss_rate`:
    the miss rate at the first point where false positives per image reach each of its 9
    references) computed from these VOC-matched outcomes, so it can differ slightly from the
    toolkit-matched MR^-2 of ``eval.py`` (ignored GT and boundary conventions); 1.0 without
    detections or GT.
    """
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    mine = outcomes.labels == label
    if not mine.any() or label >= outcomes.npos.shape[1]:
        return np.ones(len(weights))
    w = weights[:, outcomes.image[mine]]  # [R,D]
    tp, fp = np.cumsum(w * outcomes.tp[mine], axis=1), np.cumsum(w * outcomes.fp[mine], axis=1)
    npos = weights @ outcomes.npos[:, label]  # [R]
    fppi = fp / np.maximum(weights.sum(axis=1), 1e-12)[:, None]
    miss = 1.0 - tp / np.maximum(npos, 1e-12)[:, None]
    below = (fppi[:, :, None] < FPPI_POINTS).sum(axis=1)  # [R,9]: fppi is non-decreasing, so the first index reaching it
    index = np.minimum(below, fppi.shape[1] - 1)  # none reaches it: the last point
    with np.errstate(divide="ignore"):
        mr = np.exp(np.log(np.take_along_axis(miss, index, axis=1)).mean(axis=1))
    return np.where(npos > 0, mr, 1.0)


def paired_bootstrap(a: Sequence[Outcomes], b: Sequence[Outcomes], num_samples: int = 1000, seed: int = 0,
                     use_07_metric: bool = True, level: float = 0.95, metric: str = "map") -> dict:
    """Bootstrap over images of ``mean_s mAP(a_s) - mean_s mAP(b_s)``, seeds paired (``metric="mr"``:
    of the person MR^-2, :func:`resampled_miss_rate`, where lower is better).

    Args:
        a, b: one :class:`Outcomes` per seed, on the same images in the same order, ``a[s]``
            paired with ``b[s]`` (the same seed).
        num_samples: resamples; every resample uses the same images for all models and seeds.

    Returns:
        ``{"diff": observed difference, "low", "high": percentile interval at ``level``,
        "p_le_0": fraction of resamples with difference <= 0, "num_samples", "num_images"}``.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired bootstrap needs the same number of seeds on both sides, got {len(a)} and {len(b)}")
    n = len(a[0].npos)
    if any(len(o.npos) != n for o in (*a, *b)):
        raise ValueError("paired bootstrap: every model must be scored on the same images")
    if metric not in ("map", "mr"):
        raise ValueError(f"paired bootstrap: metric must be 'map' or 'mr', got {metric!r}")
    weights = _resamples(n, num_samples, seed)  # [R,N]

    def statistic(outcomes: Outcomes, w: np.ndarray) -> np.ndarray:
        return resampled_map(outcomes, w, use_07_metric) if metric == "map" else resampled_miss_rate(outcomes, w)

    diff = np.mean([statistic(x, weights) - statistic(y, weights) for x, y in zip(a, b)], axis=0)  # [R]
    ones = np.ones((1, n))
    observed = float(np.mean([statistic(x, ones)[0] - statistic(y, ones)[0] for x, y in zip(a, b)]))
    tail = (1 - level) / 2
    return {"diff": observed, "low": float(np.quantile(diff, tail)), "high": float(np.quantile(diff, 1 - tail)),
            "p_le_0": float((diff <= 0).mean()), "num_samples": num_samples, "num_images": n}


def _resamples(n: int, num_samples: int, seed: int) -> np.ndarray:
    """Image multiplicities of ``num_samples`` bootstrap resamples of ``n`` images -> int64 [R, N]
    (the same resamples for the same ``n`` and ``seed``, whichever statistic they serve)."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(num_samples)])


def paired_count_bootstrap(a: Sequence[np.ndarray], b: Sequence[np.ndarray], num_samples: int = 1000, seed: int = 0,
                           level: float = 0.95) -> dict:
    """Bootstrap over images of ``mean_s sum(a_s) - mean_s sum(b_s)``: per-image counts (e.g. crowd
    errors at a score threshold, from :func:`repssd.eval.errors.image_counts`), seeds paired.

    Args:
        a, b: one int array [N] per seed, counts on the same images in the same order.

    Returns:
        As :func:`paired_bootstrap`, plus ``"a"`` and ``"b"``: the observed totals (mean over seeds).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or a.shape != b.shape or not a.size:
        raise ValueError(f"paired count bootstrap needs [seeds, images] counts of equal shape, got {a.shape} and "
                         f"{b.shape}")
    n = a.shape[1]
    diff = _resamples(n, num_samples, seed) @ (a - b).mean(axis=0)  # [R]
    tail = (1 - level) / 2
    return {"diff": float((a - b).sum(axis=1).mean()), "low": float(np.quantile(diff, tail)),
            "high": float(np.quantile(diff, 1 - tail)), "p_le_0": float((diff <= 0).mean()),
            "num_samples": num_samples, "num_images": n, "a": float(a.sum(axis=1).mean()),
            "b": float(b.sum(axis=1).mean())}
