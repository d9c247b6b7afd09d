"""COCO AP through pycocotools (AP, AP50, AP75, small / medium / large), any number of detections."""
from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .voc import _array

__all__ = ["evaluate", "to_coco", "STAT_NAMES"]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "ARmax", "ARs", "ARm", "ARl")


def to_coco(detections: Sequence[Mapping], ground_truth: Sequence[Mapping]) -> tuple[dict, list[dict]]:
    """Per-image lists -> (COCO ground-truth dataset, COCO result list); images are numbered from
    1, categories are the labels, ignore (and difficult) GT become ``iscrowd`` regions."""
    images, annotations, results, labels = [], [], [], set()
    for i, (det, gt) in enumerate(zip(detections, ground_truth), start=1):
        images.append({"id": i})
        boxes, gt_labels = _array(gt["boxes"], np.float64, (-1, 4)), _array(gt["labels"], np.int64, (-1,))
        crowd = np.zeros(len(gt_labels), bool)
        for key in ("ignore", "difficult"):
            if key in gt:
                crowd |= _array(gt[key], bool, (-1,))
        for box, label, is_crowd in zip(boxes, gt_labels, crowd):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(label),
                                "bbox": [float(box[0]), float(box[1]), float(w), float(h)], "area": float(w * h),
                                "iscrowd": int(is_crowd)})
            labels.add(int(label))
        for box, score, label in zip(_array(det["boxes"], np.float64, (-1, 4)), _array(det["scores"], np.float64, (-1,)),
                                     _array(det["labels"], np.int64, (-1,))):
            results.append({"image_id": i, "category_id": int(label), "score": float(score),
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
    categories = [{"id": label} for label in sorted(labels | {r["category_id"] for r in results})]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def evaluate(detections: Sequence[Mapping], ground_truth: Sequence[Mapping], max_dets: int = 100) -> dict:
    """COCO box AP with ``max_dets`` detections per image (crowded scenes need more than 100).

    Returns ``{name: value}`` for :data:`STAT_NAMES` (``ARmax`` is the recall at ``max_dets``).
    """
    dataset, results = to_coco(detections, ground_truth)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        if not results:
            return {name: 0.0 for name in STAT_NAMES}
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.params.maxDets = [1, 10, max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
