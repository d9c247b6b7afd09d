"""MultiBox loss, SSD paper Eq. 1-3, as ssd.pytorch's ``MultiBoxLoss`` with its two bugs fixed.

    L = (L_conf + L_loc) / N,  N = positives in the batch

L_loc is the Smooth-L1 (beta 1) of the encoded offsets of positive priors, summed. L_conf is the
softmax cross-entropy of the positives and of the hardest negatives: per image, negatives are
ranked by their cross-entropy against background (positives excluded) and the top
``neg_pos_ratio`` x positives (at most P - 1) are kept. Fixed: the positives are zeroed after
the reshape to [B, P] (ssd.pytorch zeroes them before it); N = 0 gives 0, not NaN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LossContext, LossTerm, register

__all__ = ["MultiBoxLoss", "hard_negatives"]


def hard_negatives(ce: Tensor, positive: Tensor, neg_pos_ratio: float) -> Tensor:
    """Hard-negative mining (SSD Sec. 2.2), per image, loop-free.

    Args:
        ce (Tensor[B, P]): each prior's cross-entropy against its target (background for negatives).
        positive (Tensor[B, P] bool): matched priors.
        neg_pos_ratio: negatives kept per positive.

    Returns:
        Tensor[B, P] bool: the ``min(ratio * positives, P - 1)`` negatives of highest loss.
    """
    score = ce.detach().masked_fill(positive, 0.0)  # [B,P]
    rank = score.argsort(dim=1, descending=True).argsort(dim=1)  # [B,P], 0 = hardest
    num_neg = (neg_pos_ratio * positive.sum(dim=1, keepdim=True)).clamp(max=positive.shape[1] - 1)  # [B,1]
    return rank < num_neg


@register("multibox")
class MultiBoxLoss(LossTerm):
    """Outputs ``loc`` (Smooth-L1 of positives / N) and ``conf`` (mined cross-entropy / N).

    Options: ``neg_pos_ratio`` (3, the paper's 3:1).
    """

    outputs = ("loc", "conf")
    default_weights = {"loc": 1.0, "conf": 1.0}

    def __init__(self, neg_pos_ratio: float = 3.0) -> None:
        super().__init__()
        if neg_pos_ratio < 0:
            raise ValueError(f"neg_pos_ratio must be >= 0, got {neg_pos_ratio}")
        self.neg_pos_ratio = neg_pos_ratio

    def forward(self, ctx: LossContext) -> dict[str, Tensor]:
        positive = ctx.match.positive  # [B,P]
        targets = ctx.match.loc_targets(ctx.gt_boxes, ctx.priors, ctx.variances)  # [B,P,4]
        loc = (F.smooth_l1_loss(ctx.loc, targets, reduction="none", beta=1.0).sum(-1) * positive).sum()
        ce = torch.logsumexp(ctx.conf, dim=-1) - ctx.conf.gather(-1, ctx.match.labels.unsqueeze(-1)).squeeze(-1)  # [B,P]
        selected = positive | hard_negatives(ce, positive, self.neg_pos_ratio)  # [B,P]
        conf = (ce * selected).sum()
        return {"loc": loc / ctx.num_pos, "conf": conf / ctx.num_pos}
