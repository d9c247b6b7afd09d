"""Drawing detections on images (OpenCV)."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .postprocess import Detections

__all__ = ["draw_detections", "label_name"]


def _colour(label: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per label (golden-angle hue steps)."""
    hue = int(label * 137.508) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 200, 230]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[2]), int(bgr[1]), int(bgr[0])


def label_name(label: int, class_names: Sequence[str] | None) -> str:
    """Name of ``label`` (1..C-1) in ``class_names`` (background excluded), else ``class <label>``."""
    if class_names and 1 <= label <= len(class_names):
        return class_names[label - 1]
    return f"class {label}"


def draw_detections(image_rgb: np.ndarray, detections: Detections, class_names: Sequence[str] | None = None,
                    min_score: float = 0.0) -> np.ndarray:
    """A copy of ``image_rgb`` (HxWx3 uint8) with labelled boxes of score >= ``min_score``;
    ``detections`` hold pixel xyxy boxes."""
    out = np.ascontiguousarray(image_rgb).copy()
    thickness = max(1, round(min(out.shape[:2]) / 300))
    for box, score, label in zip(detections.boxes.tolist(), detections.scores.tolist(), detections.labels.tolist()):
        if score < min_score:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = _colour(label)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        text = f"{label_name(label, class_names)} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        top = max(y1 - th - base, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), colour, -1)
        cv2.putText(out, text, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return out
