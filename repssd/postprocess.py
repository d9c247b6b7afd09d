"""Post-processing: SSD outputs -> per-image detections (SSD paper Sec. 3 "Inference").

softmax -> decode -> per image and class the ``candidates`` best priors above ``conf_thresh``
-> NMS over all images and classes in one torchvision ``batched_nms`` call (boxes of
different (image, class) groups never suppress each other) -> the ``top_k`` best per image.
Soft-NMS (Bodla et al., ICCV 2017; linear and Gaussian) runs every group at once on padded
tensors. There is no Python loop over images or classes.

Symbols: B images, P priors, C classes including background, K candidates per group.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from .boxes import box_iou
from .coder import VARIANCES, decode

__all__ = ["Detections", "detect", "METHODS"]

METHODS = ("nms", "soft-linear", "soft-gaussian")


@dataclass
class Detections:
    """Detections of one image, best first.

    Attributes:
        boxes (Tensor[N, 4]): xyxy, normalised (from :func:`detect`) or pixels (``Detector``).
        scores (Tensor[N]): class confidence.
        labels (Tensor[N] int64): class in 1..C-1.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.scores.shape[0]

    def to(self, device: torch.device | str) -> "Detections":
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))


def detect(loc: Tensor, conf: Tensor, priors_cxcywh: Tensor, conf_thresh: float = 0.01,
           nms_thresh: float = 0.45, top_k: int = 200, method: str = "nms", candidates: int = 400,
           sigma: float = 0.5, clip: bool = True, variances: tuple[float, float] = VARIANCES) -> list[Detections]:
    """Turn network outputs into detections.

    Args:
        loc (Tensor[B, P, 4]): predicted offsets.
        conf (Tensor[B, P, C]): class logits, 0 = background.
        priors_cxcywh (Tensor[P, 4]): the priors the outputs are laid out on.
        conf_thresh: minimum class probability (after Soft-NMS decay too).
        nms_thresh: IoU above which NMS suppresses (linear Soft-NMS: starts to decay).
        top_k: detections kept per image.
        method: ``"nms"``, ``"soft-linear"`` or ``"soft-gaussian"``.
        candidates: K, best priors per image and class entering NMS (torchvision keeps 400).
        sigma: Gaussian Soft-NMS width, ``score *= exp(-iou^2 / sigma)``.
        clip: clip decoded boxes to the image before NMS (torchvision does; ssd.pytorch not).

    Returns:
        One :class:`Detections` per image with normalised xyxy boxes, sorted by score.
    """
    if method not in METHODS:
        raise ValueError(f"unknown NMS method {method!r}; known: {', '.join(METHODS)}")
    batch, num_priors, num_classes = conf.shape
    boxes = decode(loc, priors_cxcywh, variances)  # [B,P,4]
    if clip:
        boxes = boxes.clamp(0.0, 1.0)
    probs = conf.softmax(dim=-1)[..., 1:].transpose(1, 2)  # [B,C-1,P]
    scores, prior_index = probs.topk(min(candidates, num_priors), dim=2)  # [B,C-1,K], sorted
    groups = batch * (num_classes - 1)
    group_boxes = boxes.gather(1, prior_index.reshape(batch, -1, 1).expand(-1, -1, 4)).view(groups, -1, 4)  # [G,K,4]
    scores = scores.reshape(groups, -1)  # [G,K]
    if method == "nms":
        keep = _nms(group_boxes, scores, conf_thresh, nms_thresh)
    else:
        scores, keep = _soft_nms(group_boxes, scores, conf_thresh, nms_thresh, sigma, gaussian=method == "soft-gaussian")
    return _per_image(group_boxes, scores, keep, batch, num_classes, top_k)


def _nms(boxes: Tensor, scores: Tensor, conf_thresh: float, nms_thresh: float) -> Tensor:
    """Hard NMS over all groups at once -> kept flat indices into ``[G*K]``, best first."""
    flat_scores = scores.reshape(-1)  # [G*K]
    above = torch.nonzero(flat_scores > conf_thresh).squeeze(1)  # output sizes depend on data anyway
    group = torch.div(above, scores.shape[1], rounding_mode="floor")
    kept = batched_nms(boxes.reshape(-1, 4)[above], flat_scores[above], group, nms_thresh)
    return above[kept]


def _soft_nms(boxes: Tensor, scores: Tensor, conf_thresh: float, nms_thresh: float, sigma: float,
              gaussian: bool) -> tuple[Tensor, Tensor]:
    """Soft-NMS of every group in parallel: K steps, each picks the best live box of every
    group and decays the rest by their IoU with it. Returns (decayed scores [G,K], kept flat
    indices best first)."""
    scores = scores.clone()
    live = scores > conf_thresh  # [G,K]
    rows = torch.arange(boxes.shape[0], device=boxes.device)
    for step in range(scores.shape[1]):
        if step % 16 == 0 and not live.any():
            break
        best = scores.masked_fill(~live, -1.0).argmax(dim=1)  # [G]
        has_live = live[rows, best]  # [G]
        live[rows, best] = False
        iou = box_iou(boxes[rows, best].unsqueeze(1), boxes).squeeze(1)  # [G,K]
        if gaussian:
            decay = torch.exp(-iou.square() / sigma)  # [G,K]
        else:
            decay = torch.where(iou > nms_thresh, 1.0 - iou, 1.0)  # [G,K]
        scores = scores * torch.where(has_live.unsqueeze(1) & live, decay, 1.0)  # [G,K]
        live &= scores > conf_thresh
    flat = scores.reshape(-1)
    kept = torch.nonzero(flat > conf_thresh).squeeze(1)
    return scores, kept[flat[kept].argsort(descending=True, stable=True)]


def _per_image(boxes: Tensor, scores: Tensor, keep: Tensor, batch: int, num_classes: int,
               top_k: int) -> list[Detections]:
    """Split kept flat indices (best first) by image and cap each image at ``top_k``."""
    per_group = scores.shape[1]
    group = torch.div(keep, per_group, rounding_mode="floor")
    image = torch.div(group, num_classes - 1, rounding_mode="floor")
    order = image.argsort(stable=True)  # by image, best first within each
    keep, group, image = keep[order], group[order], image[order]
    counts = torch.bincount(image, minlength=batch)
    rank = torch.arange(keep.shape[0], device=keep.device) - (counts.cumsum(0) - counts)[image]
    capped = rank < top_k
    keep, group = keep[capped], group[capped]
    sizes = counts.clamp(max=top_k).tolist()
    parts = zip(boxes.reshape(-1, 4)[keep].split(sizes), scores.reshape(-1)[keep].split(sizes),
                (group % (num_classes - 1) + 1).split(sizes))
    return [Detections(b, s, l) for b, s, l in parts]
