"""A SAHI ``DetectionModel`` for repssd checkpoints, so SAHI pipelines can run repssd models.

    from sahi.predict import get_sliced_prediction
    from repssd.integrations.sahi import RepssdDetectionModel

    model = RepssdDetectionModel(model_path="weights/ssdlite_mbv2_person.pth", device="cpu")
    result = get_sliced_prediction(image, model, slice_height=512, slice_width=512)

The model runs one slice at a time the way SAHI calls it: resized to the network input,
post-processed with the checkpoint config's options (score function, NMS, detections per
image), boxes in the slice's pixels. ``confidence_threshold`` defaults to the config's
``conf_thresh``. SAHI switches GREEDYNMM to NMS/IOU when that is below 0.1 unless
``get_sliced_prediction(..., force_postprocess_type=True)``. repssd's own sliced inference
(``Detector(model, slicing=Slicing(...))``) gives the same detections with the same tiles and
merge (tested), with all tiles batched.

sahi is an optional dependency (``pip install --no-deps sahi`` plus shapely, fire, click,
termcolor: its ``opencv-python`` requirement would install a second cv2 beside the headless one).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

try:
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("repssd.integrations.sahi needs sahi: pip install --no-deps sahi shapely fire click termcolor"
                      ) from err

from ..convert import load_model
from ..data.transforms import resize
from ..postprocess import detect, postprocess_options

__all__ = ["RepssdDetectionModel"]


class RepssdDetectionModel(DetectionModel):
    """SAHI detection model over a repssd SSD.

    Args (beyond SAHI's): ``model_path`` a repssd checkpoint or imported weights (with its
    config.json beside it), or ``model`` an SSD already built; ``postprocess`` overrides of
    :func:`repssd.postprocess.detect`'s options. ``category_mapping`` defaults to the config's
    class names (label k -> name of class k).
    """

    def __init__(self, *args: Any, postprocess: dict | None = None, **kwargs: Any) -> None:
        self._overrides = dict(postprocess or {})
        self._config: dict = {}
        kwargs.setdefault("confidence_threshold", None)
        super().__init__(*args, **kwargs)

    def load_model(self) -> None:
        model, self._config = load_model(self.model_path)
        self.set_model(model)

    def set_model(self, model: Any, **kwargs: Any) -> None:
        self.model = model.eval().to(self.device)
        self.postprocess = postprocess_options(self._config, **self._overrides)
        if self.confidence_threshold is None:
            self.confidence_threshold = float(self.postprocess["conf_thresh"])
        if self.category_mapping is None:
            names = self._config.get("class_names") or [str(k) for k in range(1, model.num_classes)]
            self.category_mapping = {str(k + 1): name for k, name in enumerate(names)}

    @torch.no_grad()
    def perform_inference(self, image: np.ndarray) -> None:
        """One slice (HxWx3 RGB) through the network -> ``self._original_predictions``: boxes in
        the slice's pixels, scores, labels."""
        height, width = image.shape[:2]
        x = torch.from_numpy(resize(np.ascontiguousarray(image), self.model.input_size))[None].permute(0, 3, 1, 2)
        loc, conf = self.model(self.model.preprocess(x.to(self.device)))
        det = detect(loc, conf, self.model.priors, **self.postprocess)[0].to("cpu")
        scale = det.boxes.new_tensor([width, height, width, height])
        self._original_predictions = [{"boxes": det.boxes * scale, "scores": det.scores, "labels": det.labels}]

    def _create_object_prediction_list_from_original_predictions(self, shift_amount_list=None, full_shape_list=None):
        shift_amount_list = shift_amount_list or [[0, 0]]
        if isinstance(shift_amount_list[0], (int, float)):
            shift_amount_list = [shift_amount_list]
        if full_shape_list is not None and isinstance(full_shape_list[0], (int, float)):
            full_shape_list = [full_shape_list]
        per_image = []
        for k, prediction in enumerate(self._original_predictions):
            shift = shift_amount_list[min(k, len(shift_amount_list) - 1)]
            shape = None if full_shape_list is None else full_shape_list[min(k, len(full_shape_list) - 1)]
            keep = prediction["scores"] > self.confidence_threshold
            per_image.append([
                ObjectPrediction(bbox=box, category_id=label, category_name=self.category_mapping.get(str(label), ""),
                                 score=score, shift_amount=shift, full_shape=shape)
                for box, score, label in zip(prediction["boxes"][keep].tolist(), prediction["scores"][keep].tolist(),
                                             prediction["labels"][keep].tolist())])
        self._object_prediction_list_per_image = per_image

    @property
    def num_categories(self) -> int:
        return self.model.num_classes - 1

    @property
    def category_names(self) -> list[str]:
        return list(self.category_mapping.values())
