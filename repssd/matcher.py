"""Batched MultiBox matching, SSD paper Sec. 2.2 "Matching strategy".

Reproduces ssd.pytorch's ``match()`` on a whole padded batch at once:

1. every prior takes the ground truth it overlaps most (ties: the lower GT index);
2. every GT forces its best prior (ties: the lower prior index) onto itself, overlap set to 2;
   when two GTs share a best prior the higher GT index keeps it (ssd.pytorch's loop order);
3. priors whose overlap is below ``iou_threshold`` are background (label 0).

Padded GT (``gt_valid`` false) and GT with no area are never matched; an image with no GT is
all background. Ignore regions (CrowdHuman's "mask" boxes, COCO ``iscrowd``), given as
``gt_ignore``, are never matched either; a prior that is not positive and lies at least
``ignore_iof`` inside one (intersection over the prior's area) is *ignored*: neither positive nor
negative (``Match.ignored``), as CrowdHuman detectors treat their anchors. There is no per-image or per-box Python logic and no host sync, so the number
of operators dispatched does not depend on B (each one is a kernel launch on a GPU). On CPU a
[B, G, P] IoU tensor is memory-bound, so there the batch is walked in cache-sized chunks of
images through the same code.

Symbols: B images, G ground-truth boxes per image (padded), P priors.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from . import batching
from .boxes import box_area, box_iou, cxcywh_to_xyxy, pairwise_iog
from .coder import VARIANCES, encode

__all__ = ["Match", "match", "ignored_priors"]

# Elements of one [chunk, G, P] plane on CPU: 2**15 float32 = 128 KiB, so the handful of
# planes the IoU needs stay in a core's L2. Swept in benchmarks/bench_matcher.py --sweep-chunk.
CPU_CHUNK_ELEMENTS = 2**15


@dataclass(frozen=True)
class Match:
    """Result of :func:`match`.

    Attributes:
        labels (Tensor[B, P] int64): class of each prior's GT, 0 = background.
        gt_index (Tensor[B, P] int64): index into G of each prior's GT (meaningful where
            ``labels > 0``).
        iou (Tensor[B, P]): IoU of each prior with its best GT, before forcing.
        ignored (Tensor[B, P] bool or None): priors that are neither positive nor negative
            (inside an ignore region); None when no ignore regions were given.
    """

    labels: Tensor
    gt_index: Tensor
    iou: Tensor
    ignored: Tensor | None = None

    @property
    def positive(self) -> Tensor:
        """``Tensor[B, P] bool``: priors matched to an object."""
        return self.labels > 0

    @property
    def negative(self) -> Tensor:
        """``Tensor[B, P] bool``: background priors that may be trained as background (not ignored)."""
        return self.labels == 0 if self.ignored is None else (self.labels == 0) & ~self.ignored

    def matched_boxes(self, gt_boxes: Tensor) -> Tensor:
        """Each prior's GT box, gathered from ``gt_boxes (Tensor[B, G, 4])`` -> ``Tensor[B, P, 4]``."""
        return gt_boxes.gather(1, self.gt_index.unsqueeze(-1).expand(-1, -1, 4))

    def loc_targets(self, gt_boxes: Tensor, priors_cxcywh: Tensor,
                    variances: tuple[float, float] = VARIANCES) -> Tensor:
        """Encoded regression targets ``Tensor[B, P, 4]`` (SSD Eq. 2); exactly 0 on background.

        Background priors may point at padding, whose encoding is ``log(0)``; zeroing them
        keeps every target finite, so a masked loss never computes ``0 * inf``.
        """
        targets = encode(self.matched_boxes(gt_boxes), priors_cxcywh.to(gt_boxes), variances)  # [B,P,4]
        return torch.where(self.positive.unsqueeze(-1), targets, 0.0)


def match(priors_cxcywh: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor,
          iou_threshold: float = 0.5, gt_ignore: Tensor | None = None, ignore_iof: float = 0.5) -> Match:
    """Assign ground truth to priors for a padded batch.

    Args:
        priors_cxcywh (Tensor[P, 4]): priors, normalised cxcywh.
        gt_boxes (Tensor[B, G, 4]): GT boxes, normalised xyxy (padding may hold anything).
        gt_labels (Tensor[B, G] int64): GT classes in 1..C-1.
        gt_valid (Tensor[B, G] bool): which GT slots are real objects.
        iou_threshold: minimum IoU for a positive, in (0, 1].
        gt_ignore (Tensor[B, G] bool, optional): which slots are ignore regions (never matched,
            whatever ``gt_valid`` says).
        ignore_iof: a prior that is not positive and whose intersection with an ignore region
            covers at least this fraction of its own area is ignored, in (0, 1].

    Returns:
        Match: labels, GT index and best IoU per prior, ``Tensor[B, P]`` each, and the ignored
        priors when ``gt_ignore`` is given.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if not 0.0 < ignore_iof <= 1.0:
        raise ValueError(f"ignore_iof must be in (0, 1], got {ignore_iof}")
    priors_xyxy = cxcywh_to_xyxy(priors_cxcywh.to(gt_boxes))
    if gt_ignore is None:
        return _match_batch(priors_xyxy, gt_boxes, gt_labels, gt_valid, iou_threshold)
    result = _match_batch(priors_xyxy, gt_boxes, gt_labels, gt_valid & ~gt_ignore, iou_threshold)
    covered = ignored_priors(priors_xyxy, gt_boxes, gt_ignore, ignore_iof)  # [B,P]
    return replace(result, ignored=covered & ~result.positive)


def _match_batch(priors_xyxy: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor,
                 iou_threshold: float) -> Match:
    """:func:`match` without ignore regions: the whole batch on accelerators, chunks on CPU."""
    if not batching.cpu_strategy(gt_boxes.device):
        return _match(priors_xyxy, gt_boxes, gt_labels, gt_valid, iou_threshold)
    num_gt, num_priors = gt_valid.shape[1], priors_xyxy.shape[0]
    # on CPU: chunks of images whose [chunk, G', P] planes fit in cache, G' = last real GT slot
    if num_gt:
        last_slot = (gt_valid * torch.arange(1, num_gt + 1)).amax(dim=1)  # [B]
    else:
        last_slot = torch.zeros(len(gt_valid), dtype=torch.long)
    chunks = batching.cpu_chunks(last_slot, CPU_CHUNK_ELEMENTS, lambda width: max(width, 1) * num_priors)
    parts = [_match(priors_xyxy, gt_boxes[images, :width], gt_labels[images, :width],
                    gt_valid[images, :width], iou_threshold) for images, width in chunks]
    restore = torch.cat([images for images, _ in chunks]).argsort()  # back to batch order
    return Match(*(torch.cat(field)[restore] for field in zip(*((m.labels, m.gt_index, m.iou) for m in parts))))


def ignored_priors(priors_xyxy: Tensor, gt_boxes: Tensor, gt_ignore: Tensor, iof_threshold: float) -> Tensor:
    """``Tensor[B, P] bool``: priors whose intersection with some ignore region covers at least
    ``iof_threshold`` of the prior's own area (IoF, as CrowdDet and mmdetection's ``ignore_iof_thr``).

    Args:
        priors_xyxy (Tensor[P, 4]); gt_boxes (Tensor[B, G, 4]); gt_ignore (Tensor[B, G] bool).

    Whole-batch on accelerators; on CPU the ignore slots are moved to the front and chunks of
    images are cut to their largest ignore count (most images have none: no work for them).
    """
    if not batching.cpu_strategy(gt_boxes.device):
        return _covered(priors_xyxy, gt_boxes, gt_ignore, iof_threshold)
    batch, num_priors = gt_ignore.shape[0], priors_xyxy.shape[0]
    out = torch.zeros(batch, num_priors, dtype=torch.bool)
    counts = gt_ignore.sum(dim=1)  # [B]
    if not bool(counts.any()):
        return out
    first = (~gt_ignore).to(torch.uint8).argsort(dim=1, stable=True)  # [B,G], ignore slots first
    boxes = gt_boxes.gather(1, first.unsqueeze(-1).expand(-1, -1, 4))  # [B,G,4]
    flags = gt_ignore.gather(1, first)  # [B,G]
    for images, width in batching.cpu_chunks(counts, CPU_CHUNK_ELEMENTS, lambda w: max(w, 1) * num_priors):
        if width:
            out[images] = _covered(priors_xyxy, boxes[images, :width], flags[images, :width], iof_threshold)
    return out


def _covered(priors_xyxy: Tensor, gt_boxes: Tensor, gt_ignore: Tensor, iof_threshold: float) -> Tensor:
    """:func:`ignored_priors` on one chunk of images, whole-tensor code only."""
    if gt_boxes.shape[1] == 0:
        return torch.zeros(gt_boxes.shape[0], priors_xyxy.shape[0], dtype=torch.bool, device=gt_boxes.device)
    # other slots become empty boxes, which cover nothing (iof_threshold > 0)
    regions = torch.where(gt_ignore.unsqueeze(-1), gt_boxes, torch.zeros_like(gt_boxes))  # [B,G,4]
    iof = pairwise_iog(regions, priors_xyxy)  # [B,G,P]: |region ∩ prior| / |prior|
    return iof.amax(dim=1) >= iof_threshold


def _match(priors_xyxy: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor,
           iou_threshold: float) -> Match:
    """:func:`match` on one chunk of images, whole-tensor code only."""
    batch, num_gt = gt_labels.shape
    if num_gt == 0:
        zeros = torch.zeros(batch, priors_xyxy.shape[0], dtype=torch.int64, device=gt_boxes.device)
        return Match(zeros, zeros.clone(), zeros.to(gt_boxes.dtype))
    valid = gt_valid & (box_area(gt_boxes) > 0)  # [B,G]
    # A zero box overlaps no prior: padded GT get IoU 0 and can never reach a positive
    # threshold, without a masked pass over the [B,G,P] tensor.
    boxes = torch.where(valid.unsqueeze(-1), gt_boxes, torch.zeros_like(gt_boxes))  # [B,G,4]
    iou = box_iou(boxes, priors_xyxy)  # [B,G,P]
    best_iou, best_gt = iou.max(dim=1)  # [B,P], first maximum on ties like ssd.pytorch
    best_prior = iou.argmax(dim=2)  # [B,G]
    # Force each valid GT onto its best prior; a shared prior goes to the highest GT index,
    # as ssd.pytorch's `for j in range(G): best_truth_idx[best_prior_idx[j]] = j` leaves it.
    gt_ids = torch.arange(num_gt, device=gt_boxes.device).expand(batch, num_gt)  # [B,G]
    candidates = torch.where(valid, gt_ids, -1)  # [B,G]
    forced = torch.full_like(best_gt, -1).scatter_reduce_(1, best_prior, candidates, "amax")  # [B,P]
    is_forced = forced >= 0  # [B,P]
    gt_index = torch.where(is_forced, forced, best_gt)  # [B,P]
    overlap = best_iou.masked_fill(is_forced, 2.0)  # [B,P]
    labels = gt_labels.gather(1, gt_index).masked_fill(overlap < iou_threshold, 0)  # [B,P]
    return Match(labels, gt_index, best_iou)
