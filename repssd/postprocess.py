"""Post-processing: SSD outputs -> per-image detections (SSD paper Sec. 3 "Inference").

softmax -> decode -> per image and class the ``candidates`` best priors above ``conf_thresh``
-> greedy NMS per image and class, all groups in one torchvision ``batched_nms`` call -> the
``top_k`` best per image (torchvision's ``postprocess_detections`` semantics). Only the best
candidates of each image that can still reach its ``top_k`` go through NMS; see
:func:`_hard_nms` for why that is exact. Soft-NMS (Bodla et al., ICCV 2017; linear and
Gaussian) runs every (image, class) group at once on padded tensors. There is no Python loop
over images or classes.

Symbols: B images, P priors, C classes including background, K candidates per group.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from .boxes import box_iou
from .coder import VARIANCES, decode

__all__ = ["Detections", "detect", "METHODS", "SCORES", "DEFAULTS", "NO_LIMIT", "postprocess_options", "candidate_options",
           "rank_in_group"]

METHODS = ("nms", "soft-linear", "soft-gaussian")
# detect()'s keyword defaults for repssd's own models; a model imported from another framework
# saves its own in its config (``"postprocess"``), e.g. sigmoid scores, NMS 0.6, 100 per image
DEFAULTS = {"score": "softmax", "conf_thresh": 0.01, "nms_thresh": 0.45, "top_k": 200, "candidates": 400, "clip": True}
NO_LIMIT = 1 << 40  # top_k for candidates: no per-image cap


def postprocess_options(config: dict | None = None, **flags) -> dict:
    """:func:`detect` keywords: :data:`DEFAULTS`, over them a checkpoint config's
    ``"postprocess"``, over that every flag that is not None."""
    options = dict(DEFAULTS)
    saved = (config or {}).get("postprocess") or {}
    options.update({k: v for k, v in saved.items() if k in DEFAULTS or k == "method"})
    options.update({k: v for k, v in flags.items() if v is not None})
    return options


def candidate_options(detect_options: dict) -> dict:
    """:func:`detect` keywords for the *candidates* of ``detect_options``' output: the same
    post-processing (score function, conf_thresh, candidates per class, clipping) with NMS disabled
    (torchvision's NMS suppresses IoU > threshold, so 1.0 suppresses nothing) and no ``top_k`` cap.
    Every kept detection is then a candidate with an identical box and score. Soft-NMS changes the
    scores it keeps, so it has no such candidates (ValueError). The crowd error analysis and the
    sliced merge both use them."""
    if detect_options.get("method", "nms") != "nms":
        raise ValueError(f"candidates need hard NMS; {detect_options['method']} changes the scores it keeps")
    return {**detect_options, "nms_thresh": 1.0, "top_k": NO_LIMIT}


@dataclass
class Detections:
    """Detections of one image, best first.

    Attributes:
        boxes (Tensor[N, 4]): xyxy, normalised (from :func:`detect`) or pixels (``Detector``).
        scores (Tensor[N]): class confidence (float64 from :func:`detect`, so that confident detections
            stay distinct: float32 rounds a probability of a logit margin above ~17 to 1.0).
        labels (Tensor[N] int64): class in 1..C-1.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.scores.shape[0]

    def to(self, device: torch.device | str) -> "Detections":
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))


SCORES = ("softmax", "sigmoid")


def detect(loc: Tensor, conf: Tensor, priors_cxcywh: Tensor, conf_thresh: float = 0.01,
           nms_thresh: float = 0.45, top_k: int = 200, method: str = "nms", candidates: int | None = 400,
           sigma: float = 0.5, clip: bool | str = True, variances: tuple[float, float] = VARIANCES,
           score: str = "softmax", score_dtype: torch.dtype | None = None) -> list[Detections]:
    """Turn network outputs into detections.

    Args:
        loc (Tensor[B, P, 4]): predicted offsets.
        conf (Tensor[B, P, C]): class logits, 0 = background.
        priors_cxcywh (Tensor[P, 4]): the priors the outputs are laid out on.
        conf_thresh: minimum class probability (after Soft-NMS decay too).
        nms_thresh: IoU above which NMS suppresses (linear Soft-NMS: starts to decay).
        top_k: detections kept per image.
        method: ``"nms"``, ``"soft-linear"`` or ``"soft-gaussian"``.
        candidates: best priors per image and class that may enter NMS (torchvision keeps 400;
            None: all, as the TF Object Detection API's NMS).
        sigma: Gaussian Soft-NMS width, ``score *= exp(-iou^2 / sigma)``.
        clip: ``True`` / ``"before"``: clip decoded boxes to the image before NMS (torchvision);
            ``"after"``: NMS on the decoded boxes, then clip (the TF Object Detection API's
            ``ClipToWindow``, which also drops boxes left with no area; Soft-NMS clips before);
            ``False``: never (ssd.pytorch).
        score: ``"softmax"`` over the C columns (SSD) or ``"sigmoid"`` of each column (models
            imported from the TF Object Detection API); the background column is dropped.
        score_dtype: compute the scores in this dtype (default: ``conf``'s). Evaluation asks for
            ``torch.float64``: float32 rounds every probability of a logit margin above ~17 to
            exactly 1.0, so a fine-tuned model's most confident detections would tie and AP or
            MR^-2 at low FPPI would be decided by their order of arrival.

    Returns:
        One :class:`Detections` per image with normalised xyxy boxes, sorted by score.
    """
    if method not in METHODS:
        raise ValueError(f"unknown NMS method {method!r}; known: {', '.join(METHODS)}")
    if score not in SCORES:
        raise ValueError(f"unknown score function {score!r}; known: {', '.join(SCORES)}")
    mode = {True: "before", False: "none"}.get(clip, clip)
    if mode not in ("before", "after", "none"):
        raise ValueError(f"clip must be True, False, 'before' or 'after', got {clip!r}")
    boxes = decode(loc, priors_cxcywh, variances)  # [B,P,4]
    logits = conf if score_dtype is None else conf.to(score_dtype)
    probs = (logits.softmax(dim=-1) if score == "softmax" else logits.sigmoid())[..., 1:]  # [B,P,C-1]
    clipped = boxes.clamp(0.0, 1.0) if mode != "none" else boxes
    candidates = probs.shape[1] if candidates is None else candidates
    if method == "nms" and mode == "after":  # empty boxes still suppress, as in TF; dropped after NMS
        empty = (clipped[..., 2] <= clipped[..., 0]) | (clipped[..., 3] <= clipped[..., 1])  # [B,P]
        return _hard_nms(boxes, clipped, probs, conf_thresh, nms_thresh, top_k, candidates, empty)
    if method == "nms":
        return _hard_nms(clipped, clipped, probs, conf_thresh, nms_thresh, top_k, candidates)
    return _soft_nms(clipped, probs, conf_thresh, nms_thresh, top_k, candidates, sigma, method == "soft-gaussian")


def _hard_nms(boxes: Tensor, out_boxes: Tensor, probs: Tensor, conf_thresh: float, nms_thresh: float, top_k: int,
              candidates: int, dropped: Tensor | None = None) -> list[Detections]:
    """Greedy NMS per image and class on ``boxes``, exact, on the few candidates that can reach
    the output; survivors are reported with ``out_boxes`` (their clipped form). With ``dropped``
    (``Tensor[B, P]`` bool), TF's order: NMS keeps at most ``top_k`` per class, then the dropped
    boxes go, then ``top_k`` per image.

    Greedy NMS decides a box by the boxes that score higher only, so running it on the M best
    candidates of an image decides those M exactly; once top_k of them survive, no lower one
    can enter the output. M starts at 5 top_k and grows to all candidates for any image where
    that was not enough. On CPU this makes NMS, the dominant cost, several times cheaper.
    """
    batch, num_priors, num_labels = probs.shape
    flat = probs.reshape(batch, -1)  # [B,P*(C-1)], index = prior * (C-1) + class
    size = min(flat.shape[1], 5 * top_k)
    while True:
        scores, index = flat.topk(size, dim=1)  # [B,M], best first
        cls = index % num_labels  # [B,M]
        eligible = (scores > conf_thresh) & (_rank_in_class(cls, num_labels) < candidates)  # [B,M]
        image, slot = torch.nonzero(eligible, as_tuple=True)
        group = image * num_labels + cls[image, slot]
        prior = torch.div(index[image, slot], num_labels, rounding_mode="floor")
        # NMS ranks by position in the float64 order (its kernel wants the boxes' dtype)
        order = -torch.arange(image.shape[0], device=boxes.device, dtype=boxes.dtype)
        keep = batched_nms(boxes[image, prior], order, group, nms_thresh)  # best first
        if dropped is not None:
            keep = keep[rank_in_group(group[keep], batch * num_labels) < top_k]
            keep = keep[~dropped[image[keep], prior[keep]]]
        kept = torch.bincount(image[keep], minlength=batch)
        # An image is settled when top_k survived or its M-th candidate is below the threshold.
        if size == flat.shape[1] or bool(((kept >= top_k) | (scores[:, -1] <= conf_thresh)).all()):
            break
        size = flat.shape[1]
    return _split(out_boxes[image, prior][keep], scores[image, slot][keep], cls[image, slot][keep] + 1,
                  image[keep], batch, top_k)


def rank_in_group(group: Tensor, num_groups: int) -> Tensor:
    """``group (Tensor[N])`` of entries in score order -> each entry's rank within its group."""
    order = group.argsort(stable=True)  # by group, score order within each
    counts = torch.bincount(group, minlength=num_groups)
    rank = torch.empty_like(group)
    rank[order] = torch.arange(group.shape[0], device=group.device) - (counts.cumsum(0) - counts)[group[order]]
    return rank


def _rank_in_class(cls: Tensor, num_labels: int) -> Tensor:
    """``cls (Tensor[B, M])`` in score order -> how many better entries of the same image share its class."""
    one_hot = torch.nn.functional.one_hot(cls, num_labels)  # [B,M,C-1]
    return (one_hot.cumsum(dim=1) - one_hot).gather(2, cls.unsqueeze(-1)).squeeze(-1)


def _soft_nms(boxes: Tensor, probs: Tensor, conf_thresh: float, nms_thresh: float, top_k: int,
              candidates: int, sigma: float, gaussian: bool) -> list[Detections]:
    """Soft-NMS of every (image, class) group in parallel on its ``candidates`` best priors.

    K steps, each picks the best live box of every group and decays the rest by their IoU
    with it; picked boxes keep the score they had when picked.
    """
    batch, num_priors, num_labels = probs.shape
    scores, prior = probs.transpose(1, 2).topk(min(candidates, num_priors), dim=2)  # [B,C-1,K]
    groups = batch * num_labels
    boxes = boxes.gather(1, prior.reshape(batch, -1, 1).expand(-1, -1, 4)).view(groups, -1, 4)  # [G,K,4]
    scores = scores.reshape(groups, -1).clone()  # [G,K]
    live = scores > conf_thresh  # [G,K]
    rows = torch.arange(groups, device=boxes.device)
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
    kept = kept[flat[kept].argsort(descending=True, stable=True)]
    group = torch.div(kept, scores.shape[1], rounding_mode="floor")
    return _split(boxes.reshape(-1, 4)[kept], flat[kept], group % num_labels + 1,
                  torch.div(group, num_labels, rounding_mode="floor"), batch, top_k)


def _split(boxes: Tensor, scores: Tensor, labels: Tensor, image: Tensor, batch: int, top_k: int) -> list[Detections]:
    """Detections sorted best first over the batch -> per image, each capped at ``top_k``."""
    order = image.argsort(stable=True)  # by image, best first within each
    boxes, scores, labels, image = boxes[order], scores[order], labels[order], image[order]
    capped = rank_in_group(image, batch) < top_k
    sizes = torch.bincount(image, minlength=batch).clamp(max=top_k).tolist()
    return [Detections(*parts) for parts in zip(boxes[capped].split(sizes), scores[capped].split(sizes),
                                                labels[capped].split(sizes))]
