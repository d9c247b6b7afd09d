"""Plain per-image reference implementations of the loss terms (loops, float64), used by the
loss tests. Matching is ssd.pytorch's, one image at a time."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from repssd.boxes import box_iou, cxcywh_to_xyxy
from repssd.coder import decode, encode


def ssd_pytorch_match(threshold, truths, priors, labels):
    """ssd.pytorch's match() for one image with labels in 1..C-1 -> (conf [P], truth index [P])."""
    overlaps = box_iou(truths, cxcywh_to_xyxy(priors))
    _, best_prior_idx = overlaps.max(1)
    best_truth_overlap, best_truth_idx = overlaps.max(0)
    best_truth_overlap.index_fill_(0, best_prior_idx, 2)
    for j in range(best_prior_idx.size(0)):
        best_truth_idx[best_prior_idx[j]] = j
    conf = labels[best_truth_idx].clone()
    conf[best_truth_overlap < threshold] = 0
    return conf, best_truth_idx


def match_image(b, priors, gt_boxes, gt_labels, gt_valid, threshold=0.5):
    """(conf [P], assigned GT slot [P] in the padded numbering, real slots) of image b."""
    real = [g for g in range(gt_boxes.shape[1]) if gt_valid[b, g]]
    if not real:
        return torch.zeros(priors.shape[0], dtype=torch.long), torch.zeros(priors.shape[0], dtype=torch.long), real
    conf, idx = ssd_pytorch_match(threshold, gt_boxes[b, real], priors, gt_labels[b, real])
    return conf, torch.tensor(real)[idx], real


def smooth_ln(x: float, sigma: float) -> float:
    if x <= sigma:
        return -math.log(1 - min(x, 1 - 1e-6))
    return (x - sigma) / (1 - sigma) - math.log(1 - sigma)


def iog(a, g) -> float:
    w = max(0.0, min(a[2], g[2]) - max(a[0], g[0]))
    h = max(0.0, min(a[3], g[3]) - max(a[1], g[1]))
    return w * h / ((g[2] - g[0]) * (g[3] - g[1]))


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def iof(prior, region) -> float:
    """Intersection of ``prior`` and ``region`` over the prior's area."""
    w = max(0.0, min(prior[2], region[2]) - max(prior[0], region[0]))
    h = max(0.0, min(prior[3], region[3]) - max(prior[1], region[1]))
    return w * h / ((prior[2] - prior[0]) * (prior[3] - prior[1]))


def ignored_priors(b, priors, gt_boxes, gt_ignore, labels, threshold=0.5) -> set[int]:
    """Background priors of image b lying at least ``threshold`` inside one of its ignore regions."""
    regions = [gt_boxes[b, g].tolist() for g in range(gt_boxes.shape[1]) if gt_ignore[b, g]]
    corners = cxcywh_to_xyxy(priors).tolist()
    return {p for p, prior in enumerate(corners)
            if labels[p] == 0 and any(iof(prior, region) >= threshold for region in regions)}


def multibox(loc, conf, priors, gt_boxes, gt_labels, gt_valid, ratio=3.0, gt_ignore=None, ignore_iof=0.5):
    """Per image: Smooth-L1 of positives, CE of positives + the hardest ratio x negatives; with
    ``gt_ignore``, background priors inside an ignore region are not negatives."""
    loc_sum, conf_sum, num_pos = 0.0, 0.0, 0
    for b in range(loc.shape[0]):
        labels, slot, real = match_image(b, priors, gt_boxes, gt_labels, gt_valid)
        pos = labels > 0
        if real:
            targets = encode(gt_boxes[b, slot], priors)
            loc_sum = loc_sum + F.smooth_l1_loss(loc[b][pos], targets[pos], reduction="sum")
        ce = F.cross_entropy(conf[b], labels, reduction="none")
        skip = ignored_priors(b, priors, gt_boxes, gt_ignore, labels, ignore_iof) if gt_ignore is not None else set()
        negatives = [p for p in torch.argsort(ce.detach(), descending=True).tolist() if not pos[p] and p not in skip]
        chosen = negatives[:int(min(ratio * int(pos.sum()), loc.shape[1] - 1))]
        conf_sum = conf_sum + ce[pos].sum() + ce[chosen].sum()
        num_pos += int(pos.sum())
    n = max(num_pos, 1)
    return loc_sum / n, conf_sum / n


def repgt(loc, priors, gt_boxes, gt_labels, gt_valid, target="prior", same_class=True, sigma=1.0, excess=False):
    pred = decode(loc, priors)
    priors_xyxy = cxcywh_to_xyxy(priors)
    total, num_pos = 0.0, 0
    for b in range(loc.shape[0]):
        labels, slot, real = match_image(b, priors, gt_boxes, gt_labels, gt_valid)
        for p in torch.nonzero(labels > 0).squeeze(1).tolist():
            num_pos += 1
            ref = (priors_xyxy[p] if target == "prior" else pred[b, p]).tolist()
            best, best_iou = None, 0.0
            for g in real:
                if g == slot[p] or (same_class and gt_labels[b, g] != labels[p]):
                    continue
                overlap = iou(ref, gt_boxes[b, g].tolist())
                if overlap > best_iou:
                    best, best_iou = g, overlap
            if best is not None:
                overlap = iog(pred[b, p].tolist(), gt_boxes[b, best].tolist())
                if excess:  # only what exceeds the assigned GT's own overlap with G_Rep
                    overlap = max(0.0, overlap - iog(gt_boxes[b, slot[p]].tolist(), gt_boxes[b, best].tolist()))
                total += smooth_ln(overlap, sigma)
    return total / max(num_pos, 1)


def repbox(loc, priors, gt_boxes, gt_labels, gt_valid, sigma=0.0, eps=1e-8):
    pred = decode(loc, priors)
    total, count = 0.0, 0
    for b in range(loc.shape[0]):
        labels, slot, _ = match_image(b, priors, gt_boxes, gt_labels, gt_valid)
        positives = torch.nonzero(labels > 0).squeeze(1).tolist()
        for i, p in enumerate(positives):
            for q in positives[i + 1:]:
                if slot[p] == slot[q]:
                    continue
                overlap = iou(pred[b, p].tolist(), pred[b, q].tolist())
                total += smooth_ln(overlap, sigma)
                count += overlap > 0
    return total / (count + eps)
