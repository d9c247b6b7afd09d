"""Crowd error analysis (Repulsion Loss paper, Wang et al. CVPR 2018, Sec. 3) of one class.

    python -m repssd.eval.errors --weights runs/x/checkpoints/last.pth --output-dir runs/x/errors
    python eval.py --weights runs/x/checkpoints/last.pth --errors

At a score threshold t the kept detections scoring >= t are matched in score order to the
non-ignored GT (each takes the free GT of highest IoU >= 0.5). One that matches none is a
DUPLICATE (a GT with IoU >= 0.5 is taken), else not an error when it lies on an ignore region
(intersection over its own area >= 0.5), else a false positive: a CROWD error when two or more GT
overlap it with IoU >= 0.1 (between people), POOR LOCALISATION when one does, BACKGROUND when none.
A GT missed at t is, first cause first: SUPPRESSED (NEIGHBOUR), a candidate >= t on it (IoU >= 0.5)
was removed by NMS under a kept box that is another GT's true positive; SUPPRESSED (OTHER), the
kept box above it is not one, or none is (top_k cut); CLAIMED, a kept box >= t on it matched
another GT; LOW SCORE, candidates on it all score < t; NO CANDIDATE. Candidates are the same
network output post-processed without NMS (``repssd.postprocess.candidate_options``). With sliced inference
(``repssd.slicing``) they are every tile's output without NMS, each linked to the detection it
ended in (``final``, ``merged``). A miss with a candidate >= t that survived its tile's NMS was
REMOVED BY THE MERGE (the last stage it went through), into another GT's true positive (MERGED
(NEIGHBOUR): a person merged away) or not (MERGED (OTHER)); these come first, before the two
suppressed causes, which then mean that every candidate >= t was removed by its tile's NMS.

GT of the class flagged ignore or difficult, and ignore regions of any class, are ignore regions;
GT of other classes are left out. Thresholds compare with >=; "false positives" are the duplicates
and the three kinds together (as AP and MR count them), per image for FPPI.

Greedy matching decides a detection by better-scoring ones only, so the detections >= t match as
in one pass over all of them: a detection's category is the same at every t, and each GT's cause
at any t follows from four scores and a flag computed once. The pass loops over detection rank,
all images at once. Symbols: I images, D kept detections, C candidates, G GT per image (padded).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..miss_rate import _pairwise
from ..voc import _array

__all__ = ["analyse", "image_counts", "CATEGORIES", "CAUSES", "FP_CATEGORIES", "MISS_CAUSES"]

CATEGORIES = ("tp", "duplicate", "crowd", "localisation", "background", "ignored")
FP_CATEGORIES = CATEGORIES[1:5]
CAUSES = ("tp", "merged_neighbour", "merged_other", "suppressed_neighbour", "suppressed_other", "claimed", "low_score",
          "no_candidate")
MISS_CAUSES = CAUSES[1:]
_CELLS = 1 << 22  # candidate x kept cells per suppressor step


def _pad(arrays: list[np.ndarray], fill, dtype, tail: tuple = ()) -> np.ndarray:
    """Per-image arrays [n_i, *tail] -> [I, max(n_i, 1), *tail] (width >= 1: argmax needs an entry)."""
    out = np.full((len(arrays), max([len(a) for a in arrays] + [1]), *tail), fill, dtype)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return out


def _detections(items: Sequence[Mapping], label: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections of ``label``, best first (stable) -> boxes [I, D, 4], scores [I, D] (-inf pad),
    index in the image's own list [I, D] (-1 pad)."""
    boxes, scores, index = [], [], []
    for det in items:
        mine = np.nonzero(_array(det["labels"], np.int64, (-1,)) == label)[0]
        score = _array(det["scores"], np.float64, (-1,))[mine]
        order = mine[np.argsort(-score, kind="stable")]
        boxes.append(_array(det["boxes"], np.float64, (-1, 4))[order])
        scores.append(_array(det["scores"], np.float64, (-1,))[order])
        index.append(order)
    return _pad(boxes, 0.0, np.float64, (4,)), _pad(scores, -np.inf, np.float64), _pad(index, -1, np.int64)


def _links(items: Sequence[Mapping], index: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Sliced candidates' ``final`` / ``merged`` in the padded order of ``index`` [I, C] (None for
    candidates without them)."""
    if not items or any(c.get("final") is None for c in items):
        return None
    final, merged = np.full(index.shape, -1), np.zeros(index.shape, bool)
    for i, c in enumerate(items):
        mine = index[i] >= 0
        final[i, mine] = _array(c["final"], np.int64, (-1,))[index[i, mine]]
        merged[i, mine] = _array(c["merged"], bool, (-1,))[index[i, mine]]
    return final, merged


def _ground_truth(items: Sequence[Mapping], label: int) -> tuple[np.ndarray, ...]:
    """GT -> boxes [I, G, 4], objects [I, G] (``label``, not ignore / difficult), regions [I, G]
    (ignore flags of any label and difficult ``label`` boxes), index in the image's list [I, G]."""
    boxes, objects, regions, index = [], [], [], []
    for gt in items:
        labels = _array(gt["labels"], np.int64, (-1,))
        flag = {k: _array(gt[k], bool, (-1,)) if gt.get(k) is not None else np.zeros(len(labels), bool)
                for k in ("ignore", "difficult")}
        region = flag["ignore"] | ((labels == label) & flag["difficult"])
        keep = np.nonzero((labels == label) | region)[0]
        boxes.append(_array(gt["boxes"], np.float64, (-1, 4))[keep])
        objects.append(~region[keep])
        regions.append(region[keep])
        index.append(keep)
    return (_pad(boxes, 0.0, np.float64, (4,)), _pad(objects, False, bool), _pad(regions, False, bool),
            _pad(index, -1, np.int64))


def _match(iou: np.ndarray, objects: np.ndarray, valid: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of every image at once, rank by rank -> GT of each detection [I, D] and
    detection of each GT [I, G] (-1: none)."""
    images, num_det, _ = iou.shape
    rows = np.arange(images)
    det_gt, gt_det = np.full((images, num_det), -1), np.full(objects.shape, -1)
    for k in range(num_det):
        free = np.where(objects & (gt_det < 0) & (iou[:, k] >= threshold) & valid[:, k, None], iou[:, k], -1.0)  # [I,G]
        best = free.argmax(1)
        hit = free[rows, best] >= 0
        det_gt[hit, k], gt_det[rows[hit], best[hit]] = best[hit], k
    return det_gt, gt_det


def _kept_candidates(kept: tuple, cand: tuple) -> np.ndarray:
    """Which candidates [I, C] are kept detections: same image, score and box (ValueError if a kept
    detection is no candidate: the two lists come from different post-processing)."""
    def rows(boxes, scores, index):
        valid = index >= 0
        return np.column_stack([np.nonzero(valid)[0], scores[valid], boxes[valid]]), valid
    (k_rows, _), (c_rows, c_valid) = rows(*kept), rows(*cand)
    _, ids = np.unique(np.concatenate([k_rows, c_rows]), axis=0, return_inverse=True)
    k_ids, c_ids = ids.reshape(-1)[:len(k_rows)], ids.reshape(-1)[len(k_rows):]
    if not np.isin(k_ids, c_ids).all():
        raise ValueError("a kept detection is not among the candidates: post-process both the same way, "
                         "the candidates with NMS disabled (repssd.postprocess.candidate_options)")
    out = np.zeros(c_valid.shape, bool)
    out[c_valid] = np.isin(c_ids, k_ids)
    return out


def _suppressors(cand: tuple, kept: tuple, need: np.ndarray, nms_thresh: float) -> np.ndarray:
    """For candidates ``need`` [I, C]: the kept detection that removed it [I, C] (-1: none), the
    best-scoring one at least as good with IoU > nms_thresh, as greedy NMS decides."""
    # only the few candidates on a GT need one: move them to the front, then chunk the [i, C', D] IoU
    pick = np.argsort(~need, axis=1, kind="stable")[:, :max(int(need.sum(1).max(initial=0)), 1)]  # [I,C']
    boxes, scores = np.take_along_axis(cand[0], pick[..., None], 1), np.take_along_axis(cand[1], pick, 1)
    found = np.full(pick.shape, -1)
    step = max(1, _CELLS // (pick.shape[1] * kept[1].shape[1]))
    for lo in range(0, len(pick), step):
        part = slice(lo, lo + step)
        iou, _ = _pairwise(boxes[part], kept[0][part])  # [i,C',D]
        hit = (iou > nms_thresh) & (kept[1][part, None, :] >= scores[part, :, None]) & (kept[2][part, None, :] >= 0)
        found[part] = np.where(hit.any(2), hit.argmax(2), -1)  # kept are best first: argmax = the best
    out = np.full(need.shape, -1)
    np.put_along_axis(out, pick, np.where(np.take_along_axis(need, pick, 1), found, -1), 1)
    return out


def _best_score(mask: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Best score over axis 1 where ``mask`` [I, X, G] holds, of ``scores`` [I, X] -> [I, G] (-inf: none)."""
    return np.where(mask, scores[..., None], -np.inf).max(1)


def _linked(kept: tuple, links: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From sliced candidates' links: which candidates are kept detections, which the merge removed,
    and the kept row [I, C] (in ``kept``'s padded order) each merged one went into (-1: none)."""
    final, merged = links
    row_of = np.full((kept[2].shape[0], max(int(kept[2].max(initial=-1)) + 1, 1)), -1)
    images, rows = np.nonzero(kept[2] >= 0)
    row_of[images, kept[2][images, rows]] = rows
    into = np.where(final >= 0, np.take_along_axis(row_of, final.clip(0, row_of.shape[1] - 1), 1), -1)
    return (final >= 0) & ~merged & (into >= 0), merged & (into >= 0), np.where(merged, into, -1)


def _outcomes(kept: tuple, cand: tuple, gt: tuple, nms_thresh: float, iou_threshold: float,
              crowd_iou: float, ignore_threshold: float, links: tuple | None = None) -> dict:
    """The threshold-free pass: category and GT of each detection [I, D], and per GT [I, G] the
    best scores of its matching detection, neighbour-suppressed / suppressed candidates and claiming
    detections (-inf: none), and whether any candidate lies on it."""
    gt_boxes, objects, regions, _ = gt
    valid = kept[2] >= 0
    iou, ioa = _pairwise(kept[0], gt_boxes)  # [I,D,G]
    det_gt, gt_det = _match(iou, objects, valid, iou_threshold)
    on_object = np.where(objects[:, None], iou, 0.0)  # [I,D,G]
    overlaps = (objects[:, None] & (iou >= crowd_iou)).sum(2)  # [I,D]
    covered = (regions[:, None] & (ioa >= ignore_threshold)).any(2)  # [I,D]
    category = np.select([det_gt >= 0, on_object.max(2) >= iou_threshold, covered, overlaps >= 2, overlaps == 1],
                         [0, 1, 5, 2, 3], 4)
    category[~valid] = -1
    c_iou, _ = _pairwise(cand[0], gt_boxes)  # [I,C,G]
    on_gt = objects[:, None] & (c_iou >= iou_threshold) & (cand[2] >= 0)[..., None]  # [I,C,G]
    if links is None:
        is_kept, merged, into = _kept_candidates(kept, cand), np.zeros(on_gt.shape[:2], bool), None
    else:
        is_kept, merged, into = _linked(kept, links)
    removed = ~is_kept & ~merged & on_gt.any(2)  # [I,C]: the only candidates a miss can blame
    by = _suppressors(cand, kept, removed, nms_thresh)
    by_neighbour = (by >= 0) & (np.take_along_axis(det_gt, by.clip(0), 1) >= 0)  # [I,C]
    into_neighbour = merged & (np.take_along_axis(det_gt, into.clip(0), 1) >= 0) if into is not None else merged
    other_gt = (det_gt[..., None] >= 0) & (det_gt[..., None] != np.arange(objects.shape[1]))  # [I,D,G]
    det_gt = np.where(det_gt >= 0, det_gt, on_object.argmax(2))  # for the records: matched, else best GT
    return {"category": category, "gt": det_gt, "iou": np.take_along_axis(on_object, det_gt[..., None], 2)[..., 0],
            "gt_det": gt_det,
            "matched": np.where(gt_det >= 0, np.take_along_axis(kept[1], gt_det.clip(0), 1), -np.inf),
            "neighbour": _best_score(on_gt & (removed & by_neighbour)[..., None], cand[1]),
            "suppressed": _best_score(on_gt & removed[..., None], cand[1]),
            "merged_neighbour": _best_score(on_gt & into_neighbour[..., None], cand[1]),
            "merged": _best_score(on_gt & merged[..., None], cand[1]),
            "claimed": _best_score((on_object >= iou_threshold) & other_gt & objects[:, None], kept[1]),
            "candidate": on_gt.any(1)}


def _causes(out: dict, thresholds: np.ndarray) -> np.ndarray:
    """Cause code (index into :data:`CAUSES`) of every GT at each threshold -> [T, I, G]."""
    t = np.asarray(thresholds, np.float64)[:, None, None]
    found = [out[key] >= t for key in ("matched", "merged_neighbour", "merged", "neighbour", "suppressed", "claimed")]
    return np.select(found + [np.broadcast_to(out["candidate"], found[0].shape)], list(range(7)), 7)


def _counts(out: dict, scores: np.ndarray, objects: np.ndarray, thresholds: Sequence[float]) -> list[dict]:
    """Per threshold: tp, fp (and by category), ignored detections, misses (and by cause), npos."""
    cat, score = out["category"][out["category"] >= 0], scores[out["category"] >= 0]
    per_cat = [(score[cat == code] >= np.asarray(thresholds)[:, None]).sum(1) for code in range(len(CATEGORIES))]
    causes = _causes(out, thresholds)[:, objects]  # [T,N]
    per_cause = [(causes == code).sum(1) for code in range(len(CAUSES))]
    return [{"tp": int(per_cat[0][k]), "fp": int(sum(per_cat[c][k] for c in range(1, 5))),
             "fp_by_category": {name: int(per_cat[c + 1][k]) for c, name in enumerate(FP_CATEGORIES)},
             "ignored": int(per_cat[5][k]), "misses": int(causes.shape[1] - per_cause[0][k]),
             "misses_by_cause": {name: int(per_cause[c + 1][k]) for c, name in enumerate(MISS_CAUSES)},
             "npos": int(objects.sum())} for k in range(len(thresholds))]


def _fppi_threshold(out: dict, scores: np.ndarray, images: int, reference: float) -> tuple[float, bool]:
    """The score at which false positives per image first reach ``reference`` (else the lowest score)."""
    counted = out["category"] >= 0
    fp = np.sort(scores[(out["category"] >= 1) & (out["category"] <= 4)])[::-1]
    reached = np.arange(1, len(fp) + 1) / max(images, 1) >= reference
    if reached.any():
        return float(fp[reached.argmax()]), True
    return float(scores[counted].min(initial=np.inf)) if counted.any() else 0.0, False


def _records(kept: tuple, gt: tuple, out: dict, causes: np.ndarray, names: list[str], images: list[int],
             ids: Sequence | None) -> list[dict]:
    """Per image plain lists: kept detections (own-list index, score, box, category, GT index: the
    matched one, else the best-IoU one, None when it overlaps none) and GT (outcome per threshold)."""
    # whole arrays to lists once: element-wise numpy access would dominate the analysis
    boxes, scores, det_index = (a.tolist() for a in kept)
    category, det_gt, iou = (out[key].tolist() for key in ("category", "gt", "iou"))
    gt_boxes, objects, gt_index, gt_det = (a.tolist() for a in (gt[0], gt[1], gt[3], out["gt_det"]))
    outcome = np.array(CAUSES)[causes.transpose(1, 2, 0)].tolist()  # [I,G,T]
    records = []
    for i, image in enumerate(images):
        n, g = det_index[i].count(-1), gt_index[i].count(-1)
        dets = [{"index": det_index[i][d], "score": scores[i][d], "box": boxes[i][d],
                 "category": CATEGORIES[category[i][d]], "gt": gt_index[i][det_gt[i][d]] if iou[i][d] > 0 else None,
                 "iou": iou[i][d]}
                for d in range(len(det_index[i]) - n)]
        truth = [{"index": gt_index[i][j], "box": gt_boxes[i][j], "ignore": not objects[i][j],
                  "matched_by": det_index[i][gt_det[i][j]] if gt_det[i][j] >= 0 else None,
                  "outcome": dict(zip(names, outcome[i][j])) if objects[i][j] else {}}
                 for j in range(len(gt_index[i]) - g)]
        records.append({"image": image, "id": str(ids[image]) if ids is not None else str(image),
                        "detections": dets, "ground_truth": truth})
    return records


def analyse(detections: Sequence[Mapping | None], candidates: Sequence[Mapping | None], ground_truth: Sequence[Mapping],
            nms_thresh: float, score_thresholds: Sequence[float] = (0.5,), fppi: Sequence[float] = (0.1, 1.0),
            label: int = 1, iou_threshold: float = 0.5, crowd_iou: float = 0.1, ignore_threshold: float = 0.5,
            ids: Sequence | None = None, curve_points: int = 101) -> dict:
    """Crowd error analysis of class ``label`` (module docstring); JSON-serialisable result.

    Args:
        detections, candidates: per image ``{"boxes": [N, 4] pixel xyxy, "scores", "labels"}``, the
            kept detections and the same output without NMS (``inference.predict_with_candidates``);
            None for an unreadable image (left out, with its GT). Sliced candidates also carry
            ``final`` (index of the detection each ended in, -1: removed by its tile's NMS) and
            ``merged`` (removed by the merge); see :func:`repssd.slicing.sliced_predict`.
        ground_truth: per image ``{"boxes", "labels", "ignore", "difficult"}``.
        nms_thresh: the IoU threshold the kept detections were made with.
        score_thresholds, fppi: the thresholds reported: given scores, and the scores at which false
            positives per image first reach each reference.

    Returns:
        ``{"label", "images", "npos", "settings", "thresholds": [{"name", "kind", "target",
        "score_threshold", "fppi", "reached", "tp", "fp", "fp_by_category", "ignored", "misses",
        "misses_by_cause", "npos"}], "curves": {"score_thresholds", "fp": {category: counts},
        "misses": {cause: counts}}, "records": [per image]}``.
    """
    if not len(detections) == len(candidates) == len(ground_truth):
        raise ValueError(f"{len(detections)} detection, {len(candidates)} candidate and {len(ground_truth)} GT entries")
    images = [i for i, (d, c) in enumerate(zip(detections, candidates)) if d is not None and c is not None]
    kept = _detections([detections[i] for i in images], label)
    cand = _detections([candidates[i] for i in images], label)
    links = _links([candidates[i] for i in images], cand[2])
    gt = _ground_truth([ground_truth[i] for i in images], label)
    out = _outcomes(kept, cand, gt, nms_thresh, iou_threshold, crowd_iou, ignore_threshold, links)
    rows = [{"name": f"score>={t:g}", "kind": "score", "target": float(t), "score_threshold": float(t), "reached": True}
            for t in score_thresholds]
    for ref in fppi:
        t, reached = _fppi_threshold(out, kept[1], len(images), ref)
        rows.append({"name": f"fppi={ref:g}", "kind": "fppi", "target": float(ref), "score_threshold": t,
                     "reached": reached})
    thresholds = [row["score_threshold"] for row in rows]
    for row, counts in zip(rows, _counts(out, kept[1], gt[1], thresholds)):
        row.update(fppi=counts["fp"] / max(len(images), 1), **counts)
    grid = np.linspace(0.0, 1.0, curve_points).round(6)  # 0.7, not 0.7000000000000001
    curve = _counts(out, kept[1], gt[1], grid)
    return {"label": label, "images": len(images), "npos": int(gt[1].sum()),
            "unreadable": [str(ids[i]) if ids is not None else str(i)
                           for i in sorted(set(range(len(detections))) - set(images))],
            "settings": {"nms_thresh": nms_thresh, "iou_threshold": iou_threshold, "crowd_iou": crowd_iou,
                         "ignore_threshold": ignore_threshold},
            "thresholds": rows,
            "curves": {"score_thresholds": grid.tolist(),
                       "fp": {name: [c["fp_by_category"][name] for c in curve] for name in FP_CATEGORIES},
                       "misses": {name: [c["misses_by_cause"][name] for c in curve] for name in MISS_CAUSES},
                       "tp": [c["tp"] for c in curve]},
            "records": _records(kept, gt, out, _causes(out, thresholds), [r["name"] for r in rows], images, ids)}


def image_counts(records: Sequence[Mapping], score_threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per-image error counts at ``score_threshold`` (one of :func:`analyse`'s ``score_thresholds``)
    from its per-image ``records``, in their order: every FP category and miss cause, ``"fp"`` and
    ``"missed"`` their sums -> ``{name: int64 [N]}``; the columns sum to the thresholds' counts."""
    name = f"score>={score_threshold:g}"
    counts = {key: np.zeros(len(records), np.int64) for key in (*FP_CATEGORIES, "fp", *MISS_CAUSES, "missed")}
    for i, record in enumerate(records):
        for d in record["detections"]:
            if d["score"] >= score_threshold and d["category"] in FP_CATEGORIES:
                counts[d["category"]][i] += 1
                counts["fp"][i] += 1
        for g in record["ground_truth"]:
            cause = g["outcome"].get(name)
            if cause is None and not g["ignore"]:
                raise ValueError(f"image {record['id']}: no outcome at {name}; analyse() was run without that threshold")
            if cause in MISS_CAUSES:
                counts[cause][i] += 1
                counts["missed"][i] += 1
    return counts
