"""Batching transformed samples into the padded tensors the matcher and losses take."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["collate"]


def collate(samples: Sequence[tuple[Tensor, dict]]) -> dict[str, Tensor]:
    """``[(image Tensor[3, S, S], target), ...]`` -> one padded batch.

    Returns:
        ``images (Tensor[B, 3, S, S])`` as given (uint8 from the SSD transforms);
        ``gt_boxes (Tensor[B, G, 4])`` normalised xyxy, G = most boxes in an image (at least 1);
        ``gt_labels (Tensor[B, G] int64)``; ``gt_valid (Tensor[B, G] bool)``: real boxes that
        are not ignore regions, the ones matching may use; ``gt_difficult``, ``gt_ignore``
        (``Tensor[B, G] bool``); ``sizes (Tensor[B, 2])``: original (height, width).
    """
    if not samples:
        raise ValueError("collate: empty batch")
    images = [image for image, _ in samples]
    if not all(isinstance(image, Tensor) for image in images) or len({tuple(i.shape) for i in images}) != 1:
        raise ValueError("collate: samples need a transform that makes equal-sized image tensors "
                         "(e.g. repssd.data.transforms.SSDTrainTransform)")
    targets = [target for _, target in samples]
    batch, most = len(samples), max(1, max(len(t["boxes"]) for t in targets))
    boxes = torch.zeros(batch, most, 4)
    labels = torch.zeros(batch, most, dtype=torch.int64)
    real, difficult, ignore = (torch.zeros(batch, most, dtype=torch.bool) for _ in range(3))
    for b, target in enumerate(targets):  # per-image copies belong to data loading
        n = len(target["boxes"])
        boxes[b, :n] = target["boxes"]
        labels[b, :n] = target["labels"]
        real[b, :n] = True
        difficult[b, :n] = target.get("difficult", torch.zeros(n, dtype=torch.bool))
        ignore[b, :n] = target.get("ignore", torch.zeros(n, dtype=torch.bool))
    sizes = torch.stack([t["size"] if "size" in t else torch.tensor(image.shape[-2:])
                         for t, image in zip(targets, images)])
    return {"images": torch.stack(images), "gt_boxes": boxes, "gt_labels": labels, "gt_valid": real & ~ignore,
            "gt_difficult": difficult, "gt_ignore": ignore, "sizes": sizes}
