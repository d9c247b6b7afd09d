"""Repulsion Loss terms (Wang et al., CVPR 2018, arXiv 1711.07752), on SSD's positive priors.

RepGT (Eq. 3-4) pushes each prediction away from the ground truth it is not assigned to:

    L_RepGT = sum_{P in P+} Smooth_ln(IoG(B^P, G_Rep^P)) / |P+|,
    G_Rep^P = argmax_{G != G_Attr^P} IoU(G, P)

RepBox (Eq. 6) pushes apart predictions assigned to different ground truth:

    L_RepBox = sum_{i != j} Smooth_ln(IoU(B^Pi, B^Pj)) / (sum_{i != j} 1[IoU(B^Pi, B^Pj) > 0] + eps)

B^P are the decoded predicted boxes of positive priors P. With ``repgt_excess`` (repssd's variant,
not in the paper) RepGT charges only the overlap beyond what a perfect box would have:

    Smooth_ln(max(0, IoG(B^P, G_Rep^P) - IoG(G_Attr^P, G_Rep^P)))

so the box on its own target pays nothing, however deep it lies inside its neighbour's box.

Both terms work on the K best-matched
positives of each image (``LossContext.positives``), so every shape is static; they are exact
for images with at most K positives.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import batching
from ..boxes import box_iog, box_iou
from .base import LossContext, LossTerm, register, smooth_ln

__all__ = ["RepGTLoss", "RepBoxLoss"]

# CPU only: pairs per chunk of images (2**16 [K, K] float32 planes = 256 KiB, cache-resident)
CPU_PAIR_BUDGET = 2**16


@register("repgt")
class RepGTLoss(LossTerm):
    """Outputs ``repgt``; default weight 2.0.

    Defaults: the setting that won the validated sweep (experiments/synthetic_sweep.yaml, README
    "Results"): ``repgt_sigma=0`` (Smooth_ln is the IoG itself, bounded), G_Rep chosen by IoU with
    the detached prediction (``repgt_target="pred"``), as bailvwangzi/repulsion_loss_ssd trains
    SSD; weight 2, chosen from both regimes (issue 26): of the weights no worse than multibox from
    scratch (1 and 2; 5 costs 0.063 mAP there), the best on crowd AP when fine-tuning the imported
    SSDLite person detector on real crowd frames, where weight 5 does better still
    (``--loss-weights repgt=5``); on the OpenImages SSD-MobileNetV2 no weight helps
    (docs/results_second_base.md). The paper's literal setting is ``repgt_sigma=1,
    repgt_target="prior"`` at weight alpha = 0.5 (``--loss-options repgt_sigma=1,repgt_target=prior
    --loss-weights repgt=0.5``): unbounded, it breaks from-scratch training (measured in the README).

    Options:
        repgt_target: ``"pred"``: G_Rep is the other GT of highest IoU with the detached
            decoded prediction (default); ``"prior"``: with the prior (the paper's Eq. 4 wording).
        repgt_same_class: only GT of the positive's own class can be G_Rep (default True).
        repgt_sigma: Smooth_ln's sigma (0.0, default: the IoG itself, as
            bailvwangzi/repulsion_loss_ssd; 1.0: the paper's ``-ln(1 - IoG)``, unbounded).
        repgt_excess: charge only the IoG beyond the assigned GT's own IoG with G_Rep (see the
            module docstring; default False).
        repgt_max_positives: K, positives per image considered (exact below it).

    A positive with no other candidate GT overlapping its prior (or prediction) contributes 0;
    it is never repelled from its own GT (unlike repulsion_loss_ssd). |P+| is the batch's
    positive count shared with MultiBox. Ignore regions are never G_Rep (only objects are
    candidates): a crowd region nobody labelled says nothing about where a person is not.
    """

    outputs = ("repgt",)
    default_weights = {"repgt": 2.0}

    def __init__(self, repgt_target: str = "pred", repgt_same_class: bool = True, repgt_sigma: float = 0.0,
                 repgt_excess: bool = False, repgt_max_positives: int = 1024) -> None:
        super().__init__()
        if repgt_target not in ("prior", "pred"):
            raise ValueError(f"repgt_target must be 'prior' or 'pred', got {repgt_target!r}")
        if not 0.0 <= repgt_sigma <= 1.0:
            raise ValueError(f"repgt_sigma must be in [0, 1], got {repgt_sigma}")
        self.target, self.same_class, self.sigma, self.excess, self.max_positives = (
            repgt_target, repgt_same_class, repgt_sigma, bool(repgt_excess), repgt_max_positives)

    def forward(self, ctx: LossContext) -> dict[str, Tensor]:
        pos = ctx.positives(self.max_positives)
        pred = pos.pred_boxes  # [B,K,4]
        assigned = pos.gather(ctx.match.gt_index)  # [B,K]
        if self.target == "prior":
            reference = ctx.priors_xyxy.index_select(0, pos.index.flatten()).view(*pos.index.shape, 4)  # [B,K,4]
        else:
            reference = pred.detach()
        overlap = box_iou(reference, ctx.gt_boxes)  # [B,K,G]
        slots = torch.arange(ctx.gt_boxes.shape[1], device=assigned.device)  # [G]
        candidate = ctx.gt_valid.unsqueeze(1) & (slots != assigned.unsqueeze(-1))  # [B,K,G]
        if self.same_class:
            label = pos.gather(ctx.match.labels)  # [B,K]
            candidate &= ctx.gt_labels.unsqueeze(1) == label.unsqueeze(-1)  # [B,K,G]
        rep_iou, rep_index = overlap.masked_fill(~candidate, -1.0).max(dim=-1)  # [B,K]
        has_rep = pos.valid & (rep_iou > 0)  # [B,K]
        rep_box = ctx.gt_boxes.gather(1, rep_index.unsqueeze(-1).expand(-1, -1, 4))  # [B,K,4]
        iog = box_iog(pred, rep_box)  # [B,K]
        own = None  # what a perfect box (its assigned GT) overlaps G_Rep by
        if self.excess or ctx.diagnose:
            own = box_iog(ctx.gt_boxes.gather(1, assigned.unsqueeze(-1).expand(-1, -1, 4)), rep_box)  # [B,K]
        charged = (iog - own).clamp(min=0.0) if self.excess else iog
        out = {"repgt": (smooth_ln(charged, self.sigma) * has_rep).sum() / ctx.num_pos}
        if ctx.diagnose:
            out.update(_iog_stats(iog.detach(), own, has_rep))
        return out


def _iog_stats(iog: Tensor, own: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Diagnostics of RepGT's positives with a G_Rep (no host sync): their IoG with it (mean,
    99th percentile, fraction >= 0.9) and the mean IoG a perfect box would have."""
    count = mask.sum().clamp(min=1).to(iog.dtype)
    values = iog.masked_fill(~mask, float("nan")).flatten()
    return {"diag/repgt_iog_mean": (iog * mask).sum() / count,
            "diag/repgt_iog_p99": torch.nan_to_num(values.nanquantile(0.99), nan=0.0),
            "diag/repgt_iog_ge90": ((iog >= 0.9) & mask).sum() / count,
            "diag/repgt_iog_gt_mean": (own * mask).sum() / count}


@register("repbox")
class RepBoxLoss(LossTerm):
    """Outputs ``repbox``; default weight beta = 0.5 (paper, Table 2).

    Options:
        repbox_sigma: Smooth_ln's sigma (0.0: the IoU itself).
        repbox_max_positives: K, positives per image paired (K x K pairs; exact below it).
        repbox_eps: the denominator's epsilon.

    Pairs are the positives of one image assigned to different GT; each unordered pair counts
    once in both sums (the ordered sums of Eq. 6 are twice both, the ratio is the same). The
    denominator counts pairs over the whole batch, and under torch.distributed over every
    process's batch (averaged like ``num_pos``), so the value does not depend on the GPU count.
    Ignore regions are never targets: positives are matched to objects only.
    """

    outputs = ("repbox",)
    default_weights = {"repbox": 0.5}

    def __init__(self, repbox_sigma: float = 0.0, repbox_max_positives: int = 256, repbox_eps: float = 1e-8) -> None:
        super().__init__()
        self.sigma, self.max_positives, self.eps = repbox_sigma, repbox_max_positives, repbox_eps

    def forward(self, ctx: LossContext) -> dict[str, Tensor]:
        pos = ctx.positives(self.max_positives)
        pred = pos.pred_boxes  # [B,K,4]
        assigned = pos.gather(ctx.match.gt_index)  # [B,K]
        if not batching.cpu_strategy(pred.device):
            loss, count = self._pairs(pred, assigned, pos.valid)
        else:  # kept positives come first, so a chunk of images can be cut to its largest count
            loss, count = pred.sum() * 0.0, pos.valid.new_zeros((), dtype=torch.long)  # in the graph
            for images, width in batching.cpu_chunks(pos.valid.sum(dim=1), CPU_PAIR_BUDGET, lambda w: w * w):
                if width > 1:
                    chunk = self._pairs(pred[images, :width], assigned[images, :width], pos.valid[images, :width])
                    loss, count = loss + chunk[0], count + chunk[1]
        return {"repbox": loss / (LossContext.mean_over_processes(count) + self.eps)}

    def _pairs(self, pred: Tensor, assigned: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """(sum of Smooth_ln(IoU), number of pairs with IoU > 0) over the pairs of positives
        with different targets, each unordered pair once."""
        k = assigned.shape[1]
        upper = torch.ones(k, k, dtype=torch.bool, device=assigned.device).triu(1)  # [K,K], i < j
        pairs = (upper & (assigned.unsqueeze(2) != assigned.unsqueeze(1))
                 & valid.unsqueeze(2) & valid.unsqueeze(1))  # [B,K,K]
        iou = box_iou(pred, pred)  # [B,K,K]
        return (smooth_ln(iou, self.sigma) * pairs).sum(), (pairs & (iou.detach() > 0)).sum()
