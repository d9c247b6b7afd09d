"""``Detector(model).predict(images)``: images of any size in, pixel boxes out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .data.transforms import resize
from .models.fuse import for_inference
from .postprocess import Detections, detect
from .slicing import Slicing, sliced_predict, smallest_anchor

__all__ = ["Detector"]


class Detector:
    """Run an SSD on RGB images and return detections in each image's own pixel coordinates.

    Args:
        model: a repssd :class:`~repssd.models.SSD`; put in eval mode on ``device``.
        device: where to run (default: the model's device).
        batch_size: images per forward pass.
        fast: run a :func:`~repssd.models.fuse.for_inference` copy (BatchNorm folded into the
            convolutions, channels_last; the same outputs to about 1e-5, 2-3x faster on CPU for
            MobileNets); ``model`` itself is left as it is.
        slicing: run on overlapping tiles of each image (and the whole image) and merge
            (:class:`~repssd.slicing.Slicing`); None: the whole image only.
        detect_options: passed to :func:`repssd.postprocess.detect` (``conf_thresh``,
            ``nms_thresh``, ``top_k``, ``method``, ...), for each tile when slicing.
    """

    def __init__(self, model: nn.Module, device: torch.device | str | None = None, batch_size: int = 8,
                 fast: bool = True, slicing: Slicing | None = None, **detect_options) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        if fast:
            self.model = for_inference(self.model)
        self.batch_size = batch_size
        self.slicing = slicing
        self.detect_options = detect_options

    def _batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """HxWx3 uint8 RGB arrays -> ``Tensor[B, 3, H, W]`` uint8, resized to the model input the
        way the training and test transforms resize."""
        size = self.model.input_size
        self._check(images)
        return torch.from_numpy(np.stack([resize(image, size) for image in images])).permute(0, 3, 1, 2).to(self.device)

    @staticmethod
    def _check(images: Sequence[np.ndarray]) -> None:
        for i, image in enumerate(images):
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
                raise ValueError(f"image {i}: expected an HxWx3 RGB array, got "
                                 f"{getattr(image, 'shape', type(image).__name__)}")

    @torch.no_grad()
    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect objects in ``images`` (HxWx3 uint8 RGB arrays of any sizes).

        Returns:
            One :class:`Detections` per image: xyxy boxes in that image's pixels, scores,
            labels in 1..C-1, best first.
        """
        if self.slicing is not None:
            return self.predict_sliced(images)
        results: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            loc, conf = self.model(self.model.preprocess(self._batch(chunk)))
            for image, det in zip(chunk, detect(loc, conf, self.model.priors, **self.detect_options)):
                height, width = image.shape[:2]
                scale = det.boxes.new_tensor([width, height, width, height])
                results.append(Detections(det.boxes * scale, det.scores, det.labels).to("cpu"))
        return results

    @torch.no_grad()
    def predict_sliced(self, images: Sequence[np.ndarray], with_candidates: bool = False):
        """:meth:`predict` on tiles (``self.slicing``, default: its own ``Slicing()``): the tiles of
        all ``images`` go through the network ``batch_size`` at a time and are merged together;
        with ``with_candidates``, also the error analysis' candidates (:func:`repssd.slicing.sliced_predict`)."""
        self._check(images)
        if not images:  # e.g. every image of a batch unreadable
            return ([], []) if with_candidates else []
        return sliced_predict(self.model, list(images), self.slicing or Slicing(), self.batch_size, self.device,
                              with_candidates=with_candidates, **self.detect_options)

    def tiles(self, image: np.ndarray):
        """The tiles (``int64 [T, 4]`` pixel xyxy) :meth:`predict` cuts ``image`` into; None without
        slicing. ValueError, naming the flags, when the slicing would cut it into more than
        :data:`~repssd.slicing.geometry.MAX_TILES` tiles."""
        if self.slicing is None:
            return None
        height, width = image.shape[:2]
        return self.slicing.tiles(height, width, self.model.input_size, smallest_anchor(self.model))
