"""MultiBox loss, SSD paper Eq. 1-3, as ssd.pytorch's ``MultiBoxLoss`` with its two bugs fixed.

    L = (L_conf + L_loc) / N,  N = positives in the batch

L_loc is the Smooth-L1 (beta 1) of the encoded offsets of positive priors, summed. L_conf is the
softmax cross-entropy of the positives and of the hardest negatives: per image, negatives are
ranked by their cross-entropy against background (positives excluded) and the top
``neg_pos_ratio`` x positives (at most P - 1) are kept. Priors inside ignore regions
(``Match.ignored``) are neither: they never enter L_conf and are never mined. Fixed: the positives are zeroed after
the reshape to [B, P] (ssd.pytorch zeroes them before it); N = 0 gives 0, not NaN.

Two execution strategies give the same values. On accelerators (and ``meta``) everything is
dense masked tensor code with static shapes and no host sync. On CPU, where reading a count back
costs nothing, the loss gathers the few selected priors (about 5% of them) before the
differentiable cross-entropy and Smooth-L1, and mines with ``topk`` instead of a full sort.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import batching
from ..coder import encode
from .base import LossContext, LossTerm, register

__all__ = ["MultiBoxLoss", "hard_negatives"]


def hard_negatives(score: Tensor, positive: Tensor, neg_pos_ratio: float, ignored: Tensor | None = None) -> Tensor:
    """Hard-negative mining (SSD Sec. 2.2), per image, loop-free.

    Args:
        score (Tensor[B, P]): each prior's cross-entropy against background (no gradient needed).
        positive (Tensor[B, P] bool): matched priors, never mined.
        neg_pos_ratio: negatives kept per positive.
        ignored (Tensor[B, P] bool, optional): priors that are not negatives either (inside
            ignore regions), never mined.

    Returns:
        Tensor[B, P] bool: the ``min(ratio * positives, P - 1)`` negatives of highest loss
        (fewer where not enough priors are left once ignored ones are out).
    """
    score = score.detach().masked_fill(positive, 0.0)  # [B,P]
    if ignored is not None:  # ranked below every real negative, and dropped if still reached
        mined = hard_negatives(score.masked_fill(ignored, -1.0), positive, neg_pos_ratio)
        return mined & ~ignored
    num_neg = (neg_pos_ratio * positive.sum(dim=1, keepdim=True)).clamp(max=positive.shape[1] - 1)  # [B,1]
    if batching.cpu_strategy(score.device):  # only the largest few are needed: a top-k, not a sort
        k = int(num_neg.max())
        index = score.topk(k, dim=1).indices  # [B,k]
        chosen = torch.arange(k, device=score.device) < num_neg  # [B,k]
        return torch.zeros_like(positive).scatter_(1, index, chosen)
    order = score.argsort(dim=1, descending=True)  # [B,P]
    positions = torch.arange(score.shape[1], device=score.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)  # [B,P], 0 = hardest
    return rank < num_neg


@register("multibox")
class MultiBoxLoss(LossTerm):
    """Outputs ``loc`` (Smooth-L1 of positives / N) and ``conf`` (mined cross-entropy / N).

    Options: ``neg_pos_ratio`` (3, the paper's 3:1).
    """

    outputs = ("loc", "conf")
    default_weights = {"loc": 1.0, "conf": 1.0}
    ramped = False

    def __init__(self, neg_pos_ratio: float = 3.0) -> None:
        super().__init__()
        if neg_pos_ratio < 0:
            raise ValueError(f"neg_pos_ratio must be >= 0, got {neg_pos_ratio}")
        self.neg_pos_ratio = neg_pos_ratio

    def forward(self, ctx: LossContext) -> dict[str, Tensor]:
        loc, conf = (self._compact if batching.cpu_strategy(ctx.loc.device) else self._dense)(ctx)
        return {"loc": loc / ctx.num_pos, "conf": conf / ctx.num_pos}

    def _dense(self, ctx: LossContext) -> tuple[Tensor, Tensor]:
        positive = ctx.match.positive  # [B,P]
        targets = ctx.match.loc_targets(ctx.gt_boxes, ctx.priors, ctx.variances)  # [B,P,4]
        loc = (F.smooth_l1_loss(ctx.loc, targets, reduction="none", beta=1.0).sum(-1) * positive).sum()
        ce = F.cross_entropy(ctx.conf.flatten(0, 1), ctx.match.labels.flatten(),
                             reduction="none").view_as(positive)  # [B,P]
        selected = positive | hard_negatives(ce, positive, self.neg_pos_ratio, ctx.match.ignored)  # [B,P]
        return loc, (ce * selected).sum()

    def _compact(self, ctx: LossContext) -> tuple[Tensor, Tensor]:
        positive, labels = ctx.match.positive, ctx.match.labels  # [B,P]
        with torch.no_grad():  # for the ranking only: CE against background
            background_ce = torch.logsumexp(ctx.conf, dim=-1) - ctx.conf[..., 0]  # [B,P]
        mined = hard_negatives(background_ce, positive, self.neg_pos_ratio, ctx.match.ignored)  # [B,P]
        image, prior = torch.nonzero(positive | mined, as_tuple=True)
        conf = F.cross_entropy(ctx.conf[image, prior], labels[image, prior], reduction="sum")
        image, prior = torch.nonzero(positive, as_tuple=True)
        matched = ctx.gt_boxes[image, ctx.match.gt_index[image, prior]]  # [N,4]
        targets = encode(matched, ctx.priors[prior], ctx.variances)
        return F.smooth_l1_loss(ctx.loc[image, prior], targets, reduction="sum", beta=1.0), conf
