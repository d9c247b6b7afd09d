"""Merging the detections of overlapping tiles (and the whole-image pass) into one list per image.

All three merges are greedy in score order, like NMS: the best remaining box is kept and every
lower box of the same image and class that *matches* it (a metric at or above the threshold) is
removed; a removed box belongs to the first kept box that matches it.

* ``nms``: the kept box stays as it is (SAHI's ``NMSPostprocess``).
* ``greedy-nmm``: SAHI's ``GreedyNMMPostprocess``: the kept box absorbs its removed boxes best
  first, each time growing to their union when it still matches the grown box.
* ``crowd``: a box *cut* by an interior tile edge (one of its sides on an edge of its tile that is
  not the image border) sees only part of its person. Two boxes from different tiles are compared
  within the view they share: a box is clipped to the other's tile when the other box is cut, then
  IoU. A cut person and its counterpart from the neighbouring tile or the whole image agree there
  and merge: the kept box, where it is cut, takes the extent its best counterpart sees beyond the
  edge (a kept whole box stays as it is, so low-scoring matches never inflate it); whole boxes compare by plain IoU, so a person standing behind
  another (whose box lies inside the occluder's, the case intersection-over-smaller merges) stays
  a separate detection unless plain NMS would have removed it.

Matching pairs are searched only between boxes whose tiles overlap; tile boxes are clipped to
their tile, so no other pair can overlap. The greedy decision is taken on the sparse match graph
at once: a box is kept iff no kept better box matches it; iterating that rule from "all kept"
settles the boxes in order of their longest chain of matches, so a few sweeps decide all
(exactly greedy NMS, equal to ``torchvision.ops.batched_nms`` for IoU; tested).

Symbols: N detections of a batch of images, S sources (tiles and whole-image passes), E matches.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..boxes import box_area
from ..postprocess import rank_in_group

__all__ = ["Sources", "MergeResult", "merge", "pair_metric"]

_PAIR_CELLS = 1 << 19  # detection pairs examined per chunk of tile pairs (~100 MB of temporaries)


@dataclass
class Sources:
    """Where detections came from: one row per tile (or whole-image pass) of a batch of images.

    Attributes:
        regions (Tensor[S, 4]): the tile in image pixels, xyxy.
        image (Tensor[S] int64): the image it belongs to.
        interior (Tensor[S, 4] bool): per side (x1, y1, x2, y2), whether it is an interior edge
            (not on the image border); all False for a whole-image pass.
    """

    regions: Tensor
    image: Tensor
    interior: Tensor


@dataclass
class MergeResult:
    """Outcome of :func:`merge` for N input detections.

    Attributes:
        boxes (Tensor[N, 4]): the box each kept detection ends as (its merged box); removed rows
            keep their own box.
        keep (Tensor[N] bool): survives the merge.
        owner (Tensor[N] int64): for a removed detection the kept one that removed it, else -1.
    """

    boxes: Tensor
    keep: Tensor
    owner: Tensor


def _score_order(boxes: Tensor, scores: Tensor) -> Tensor:
    """Indices best first; ties by x1, y1, x2, y2 ascending (SAHI's ``np.lexsort`` order)."""
    order = torch.arange(scores.shape[0], device=scores.device)
    for key in (boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -scores):
        order = order[key[order].argsort(stable=True)]
    return order


def _cut_sides(boxes: Tensor, sources: Sources, source: Tensor, margin: float) -> Tensor:
    """Which sides (x1, y1, x2, y2) of each box [N, 4] lie within ``margin`` (fraction of its
    tile's size) of an interior edge of its tile."""
    region = sources.regions[source]  # [N,4]
    size = (region[:, 2:] - region[:, :2]).repeat(1, 2)  # [N,4]: w, h, w, h
    return ((boxes - region).abs() <= margin * size) & sources.interior[source]


def _clip(boxes: Tensor, regions: Tensor) -> Tensor:
    """``boxes [..., 4]`` clipped to ``regions [..., 4]`` (an empty box where they do not meet)."""
    low = torch.maximum(boxes[..., :2], regions[..., :2])
    high = torch.maximum(torch.minimum(boxes[..., 2:], regions[..., 2:]), low)
    return torch.cat([low, high], -1)


def pair_metric(a: Tensor, b: Tensor, metric: str) -> Tensor:
    """Elementwise overlap of boxes ``a`` and ``b`` ([..., 4] xyxy): ``"iou"`` or ``"ios"``
    (intersection over the smaller area); 0 where the denominator is 0."""
    low = torch.maximum(a[..., :2], b[..., :2])
    high = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (high - low).clamp(min=0).prod(-1)
    area_a, area_b = box_area(a), box_area(b)
    denominator = area_a + area_b - inter if metric == "iou" else torch.minimum(area_a, area_b)
    return torch.where(denominator > 0, inter / denominator.clamp(min=torch.finfo(a.dtype).tiny), 0.0)


def _source_pairs(sources: Sources) -> Tensor:
    """Pairs (s, u), s <= u, of sources of one image whose regions overlap -> ``[M, 2]``."""
    r = sources.regions
    low = torch.maximum(r[:, None, :2], r[None, :, :2])  # [S,S,2]
    high = torch.minimum(r[:, None, 2:], r[None, :, 2:])  # [S,S,2]
    meet = ((high - low) > 0).all(-1) & (sources.image[:, None] == sources.image[None, :])  # [S,S]
    return torch.nonzero(torch.triu(meet)).reshape(-1, 2)


def _matches(boxes: Tensor, labels: Tensor, rank: Tensor, source: Tensor, sources: Sources, cut: Tensor | None,
             method: str, metric: str, thresh: float) -> tuple[Tensor, Tensor]:
    """All matches (better, worse) -> two ``[E]`` index tensors: same image and class, tiles
    overlapping, the better one ranked first, the merge's metric >= ``thresh``."""
    counts = torch.bincount(source, minlength=sources.image.shape[0])
    width = int(counts.max()) if counts.numel() else 0
    by_source = torch.full((sources.image.shape[0], max(width, 1)), -1, dtype=torch.int64, device=boxes.device)
    order = source.argsort(stable=True)
    slot = torch.arange(source.shape[0], device=boxes.device) - (counts.cumsum(0) - counts)[source[order]]
    by_source[source[order], slot] = order  # [S,K]
    pairs = _source_pairs(sources)
    better, worse = [], []
    step = max(1, _PAIR_CELLS // max(width * width, 1))
    for lo in range(0, pairs.shape[0], step):
        s, u = pairs[lo:lo + step, 0], pairs[lo:lo + step, 1]
        i = by_source[s][:, :, None].expand(-1, -1, width)  # [M,K,K]: rows from s
        j = by_source[u][:, None, :].expand(-1, width, -1)  # [M,K,K]: columns from u
        valid = (i >= 0) & (j >= 0) & (i != j)
        i, j = i[valid], j[valid]
        if method == "crowd":
            value = _crowd_metric(boxes, source, sources, cut.any(1), i, j)
        else:
            value = pair_metric(boxes[i], boxes[j], metric)
        hit = (value >= thresh) & (labels[i] == labels[j])
        i, j = i[hit], j[hit]
        first = rank[i] < rank[j]
        better.append(torch.where(first, i, j))
        worse.append(torch.where(first, j, i))
    if not better:
        empty = torch.zeros(0, dtype=torch.int64, device=boxes.device)
        return empty, empty
    return torch.cat(better), torch.cat(worse)


def _crowd_metric(boxes: Tensor, source: Tensor, sources: Sources, cut: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """IoU of pairs (i, j) within their shared view: each box clipped to the other's tile when
    the other is cut by an interior edge of its tile; plain IoU within one tile."""
    other = source[i] != source[j]
    a = torch.where((other & cut[j])[:, None], _clip(boxes[i], sources.regions[source[j]]), boxes[i])
    b = torch.where((other & cut[i])[:, None], _clip(boxes[j], sources.regions[source[i]]), boxes[j])
    return pair_metric(a, b, "iou")


def _greedy(num: int, better: Tensor, worse: Tensor, rank: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy suppression on the match graph -> (keep [N] bool, owner [N]: the best kept match)."""
    keep = torch.ones(num, dtype=torch.bool, device=rank.device)
    while True:
        hit = torch.zeros(num, dtype=torch.int64, device=rank.device).index_add_(0, worse, keep[better].long())
        settled = hit == 0
        if torch.equal(settled, keep):
            break
        keep = settled
    alive = keep[better]
    best = torch.full((num,), num, dtype=torch.int64, device=rank.device)
    best.scatter_reduce_(0, worse[alive], rank[better[alive]], reduce="amin")
    by_rank = rank.argsort()
    owner = torch.where(keep | (best == num), -1, by_rank[best.clamp(max=num - 1)])
    return keep, owner


def _rank_in_owner(owner: Tensor, rank: Tensor) -> Tensor:
    """Each removed detection's position among those of its owner, best first ([N]; -1 kept)."""
    removed = torch.nonzero(owner >= 0).squeeze(1)
    removed = removed[rank[removed].argsort()]  # score order
    position = torch.full_like(owner, -1)
    position[removed] = rank_in_group(owner[removed], owner.shape[0])
    return position


def _nmm_boxes(boxes: Tensor, owner: Tensor, rank: Tensor, metric: str, thresh: float) -> Tensor:
    """SAHI's merge: each kept box absorbs its removed ones best first, growing to their union
    whenever it still matches (metric >= thresh) the box grown so far."""
    out = boxes.clone()
    position = _rank_in_owner(owner, rank)
    for step in range(int(position.max()) + 1 if position.numel() else 0):
        member = torch.nonzero(position == step).squeeze(1)
        kept = owner[member]
        grow = pair_metric(out[kept], boxes[member], metric) >= thresh
        kept, member = kept[grow], member[grow]
        out[kept] = torch.cat([torch.minimum(out[kept, :2], boxes[member, :2]),
                               torch.maximum(out[kept, 2:], boxes[member, 2:])], 1)
    return out


def _complete_cut_boxes(boxes: Tensor, owner: Tensor, rank: Tensor, source: Tensor, cut: Tensor) -> Tensor:
    """Each kept box that is cut by its tile takes, on its cut sides only, the extent of its best
    removed match from another tile (which sees past that edge) where that reaches further."""
    num = rank.shape[0]
    member = torch.nonzero((owner >= 0) & (source != source[owner.clamp(min=0)])).squeeze(1)
    best = torch.full((num,), num, dtype=torch.int64, device=rank.device)
    best.scatter_reduce_(0, owner[member], rank[member], reduce="amin")
    kept = torch.nonzero((best < num) & cut.any(1)).squeeze(1)
    partner = rank.argsort()[best[kept]]
    out = boxes.clone()
    further = torch.cat([torch.minimum(boxes[kept, :2], boxes[partner, :2]),
                         torch.maximum(boxes[kept, 2:], boxes[partner, 2:])], 1)
    out[kept] = torch.where(cut[kept], further, boxes[kept])
    return out


def merge(boxes: Tensor, scores: Tensor, labels: Tensor, source: Tensor, sources: Sources, method: str = "crowd",
          metric: str = "iou", thresh: float = 0.5, edge_margin: float = 0.02) -> MergeResult:
    """Merge the detections of a batch of images' tiles (module docstring).

    Args:
        boxes (Tensor[N, 4]): xyxy in image pixels, each within its tile.
        scores (Tensor[N]), labels (Tensor[N] int64): as post-processing gives them.
        source (Tensor[N] int64): row of ``sources`` each detection came from.
        sources: the tiles (:class:`Sources`); their ``image`` says which detections may merge.
        method: ``"nms"``, ``"greedy-nmm"`` or ``"crowd"``.
        metric: ``"iou"`` or ``"ios"`` (nms and greedy-nmm; the crowd merge uses its own).
        thresh: match at metric >= thresh.
        edge_margin: crowd: a side within this fraction of the tile size of an interior edge is cut.
    """
    num = scores.shape[0]
    if num == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=scores.device)
        return MergeResult(boxes, torch.zeros(0, dtype=torch.bool, device=scores.device), empty)
    rank = torch.empty_like(source)
    rank[_score_order(boxes, scores)] = torch.arange(num, device=scores.device)
    cut = _cut_sides(boxes, sources, source, edge_margin) if method == "crowd" else None
    better, worse = _matches(boxes, labels, rank, source, sources, cut, method, metric, thresh)
    keep, owner = _greedy(num, better, worse, rank)
    if method == "greedy-nmm":
        out = _nmm_boxes(boxes, owner, rank, metric, thresh)
    elif method == "crowd":
        out = _complete_cut_boxes(boxes, owner, rank, source, cut)
    else:
        out = boxes
    return MergeResult(out, keep, owner)
