"""Batched inference over a dataset, detections in each image's own pixels (eval.py, training)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data import collate
from ..postprocess import detect

__all__ = ["predict_dataset", "ground_truth_of"]


@torch.no_grad()
def predict_dataset(model: nn.Module, dataset: Dataset, batch_size: int = 16, workers: int = 0,
                    device: torch.device | str | None = None, progress: bool = True, **detect_options) -> list[dict]:
    """Run ``model`` over ``dataset`` (whose transform resizes to the model input, e.g.
    ``SSDTestTransform``) -> per image ``{"boxes": [N, 4] pixel xyxy, "scores", "labels"}``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate)
    results = []
    for batch in tqdm(loader, desc="inference", unit="batch", disable=not progress, leave=False):
        loc, conf = model(model.preprocess(batch["images"].to(device, non_blocking=True)))
        sizes = batch["sizes"].to(device)
        for det, (height, width) in zip(detect(loc, conf, model.priors, **detect_options), sizes):
            scale = torch.stack([width, height, width, height]).to(det.boxes.dtype)
            results.append({"boxes": (det.boxes * scale).cpu(), "scores": det.scores.cpu(), "labels": det.labels.cpu()})
    model.train(was_training)
    return results


def ground_truth_of(dataset: Dataset) -> list[dict]:
    """Per image GT in original pixels (``boxes``, ``labels``, ``difficult``, ``ignore``), read from
    the annotations (no image is decoded); works on concatenations."""
    parts = getattr(dataset, "datasets", [dataset])
    return [record.target() for part in parts for record in part.records]
