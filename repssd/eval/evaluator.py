"""The evaluator protocol (``reset`` / ``process`` / ``evaluate``) used by eval.py and training."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import citypersons, coco, crowd, miss_rate, voc
from .inference import scored_images
from .voc import _array

__all__ = ["DetectionEvaluator", "METRICS"]

METRICS = ("voc07", "voc", "coco", "crowdhuman", "citypersons")


def _as_numpy(item) -> dict[str, np.ndarray]:
    get = item.get if isinstance(item, Mapping) else (lambda key, default=None: getattr(item, key, default))
    out = {"boxes": _array(get("boxes"), np.float64, (-1, 4)), "labels": _array(get("labels"), np.int64, (-1,))}
    for key, dtype in (("scores", np.float64), ("difficult", bool), ("ignore", bool), ("visibility", np.float64)):
        if get(key) is not None:
            out[key] = _array(get(key), dtype, (-1,))
    return out


class DetectionEvaluator:
    """Accumulates per-image detections and ground truth (pixel xyxy), then scores them.

    Args:
        class_names: names of labels 1..C-1.
        metric: ``voc07`` (11-point VOC AP), ``voc`` (area AP), ``coco`` (VOC07 plus pycocotools
            AP), ``crowdhuman`` (VOC07 plus CrowdHuman AP / MR^-2 / JI of label 1) or
            ``citypersons`` (VOC07 plus CityPersons' official MR^-2 of label 1 per setup:
            Reasonable, Reasonable_small, Heavy, All, and the Repulsion Loss paper's Partial, Bare).
        crowd_subset: also report crowd-subset AP (Repulsion Loss paper, Table 5).
        crowd_iou: IoU above which two same-class objects form a crowd.
        max_dets: COCO detections per image.
    """

    def __init__(self, class_names: Sequence[str], metric: str = "voc07", crowd_subset: bool = True,
                 crowd_iou: float = 0.1, max_dets: int = 100) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        self.class_names, self.metric = tuple(class_names), metric
        self.crowd_subset, self.crowd_iou, self.max_dets = crowd_subset, crowd_iou, max_dets
        self.reset()

    def reset(self) -> None:
        self.detections: list[dict] = []
        self.ground_truth: list[dict] = []
        self.unreadable: list[str] = []
        self.seen = 0  # images given to process, read or not

    def process(self, detections: Sequence, ground_truth: Sequence, ids: Sequence[str] | None = None) -> None:
        """Add images: detections (dicts or ``Detections``) and GT dicts, in the same order. An
        image whose detections are None (unreadable, see ``predict_dataset``) is left out of
        both and named in the report (``ids``: the images' names)."""
        detections, ground_truth, missing = scored_images(detections, ground_truth)
        self.unreadable += [str(ids[i]) if ids is not None else f"image {self.seen + i}" for i in missing]
        self.seen += len(detections) + len(missing)
        self.detections += [_as_numpy(d) for d in detections]
        self.ground_truth += [_as_numpy(g) for g in ground_truth]

    def _named(self, per_label: Mapping[int, object]) -> dict[str, object]:
        return {self.class_names[label - 1] if 0 < label <= len(self.class_names) else str(label): value
                for label, value in sorted(per_label.items())}

    def evaluate(self) -> dict:
        """The report: ``map``, ``ap`` per class name, and per option ``crowd``, ``coco``, ``crowdhuman``,
        ``citypersons``."""
        options = {"use_07_metric": self.metric != "voc"}
        result = voc.evaluate(self.detections, self.ground_truth, **options)
        report = {"metric": "voc07" if self.metric != "voc" else "voc", "num_images": len(self.ground_truth),
                  "unreadable_images": list(self.unreadable),
                  "map": result["map"], "ap": self._named(result["ap"]), "npos": self._named(result["npos"]),
                  "curves": self._named(result["curves"])}
        if self.crowd_subset:
            subset = crowd.evaluate(self.detections, self.ground_truth, self.crowd_iou, **options)
            report["crowd"] = {"map": subset["map"], "ap": self._named(subset["ap"]), "npos": self._named(subset["npos"]),
                               "num_boxes": subset["num_boxes"], "num_images": subset["num_images"],
                               "crowd_iou": self.crowd_iou, "image_level": {
                                   "map": subset["image_level"]["map"], "ap": self._named(subset["image_level"]["ap"]),
                                   "num_images": subset["image_level"]["num_images"]},
                               "curves": self._named(subset["curves"])}
        if self.metric == "coco":
            report["coco"] = coco.evaluate(self.detections, self.ground_truth, self.max_dets)
        if self.metric == "crowdhuman":
            report["crowdhuman"] = miss_rate.evaluate(self.detections, self.ground_truth, label=1)
        if self.metric == "citypersons":
            result = citypersons.evaluate(self.detections, self.ground_truth, label=1)
            # a setup without GT has no miss rate (the official script prints -1): null in report.json
            result["mr"] = {name: None if value != value else value for name, value in result["mr"].items()}
            report["citypersons"] = result
        return report
