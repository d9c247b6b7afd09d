"""The loss-term plug-in interface: :class:`LossTerm`, :class:`LossContext`, the registry.

A criterion matches priors to ground truth once per step and hands every term the same
:class:`LossContext` (DETR's ``SetCriterion`` pattern); each term returns named scalars. A new
term is a subclass decorated with ``@register("name")`` in its own file, plus one import line
in ``repssd/losses/__init__.py``.

Symbols: B images, P priors, C classes (0 = background), G padded GT per image, K positives
kept per image by :meth:`LossContext.positives`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .. import batching
from ..boxes import cxcywh_to_xyxy
from ..coder import VARIANCES, decode
from ..matcher import Match

__all__ = ["LossContext", "LossTerm", "Positives", "TERMS", "register", "smooth_ln"]


def smooth_ln(x: Tensor, sigma: float) -> Tensor:
    """Repulsion Loss Eq. 5, for overlaps ``x`` in [0, 1]:

        -ln(1 - x)                          if x <= sigma
        (x - sigma) / (1 - sigma) - ln(1 - sigma)   otherwise

    Continuous with a continuous first derivative at ``x = sigma``. ``sigma = 0`` gives ``x``
    itself; ``sigma = 1`` gives ``-ln(1 - x)`` with ``x`` clamped just below 1, so the value and
    gradient stay finite at ``x = 1``. Both branches are evaluated on safe inputs, so
    ``torch.where`` never multiplies a zero gradient by an infinite one.
    """
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"smooth_ln: sigma must be in [0, 1], got {sigma}")
    log_branch = -torch.log1p(-x.clamp(max=min(sigma, 1.0 - 1e-6)))
    if sigma >= 1.0:
        return log_branch
    linear_branch = (x - sigma) / (1.0 - sigma) - math.log1p(-sigma)
    # x == sigma takes the linear side: same value, and its slope survives (the clamp's would not)
    return torch.where(x < sigma, log_branch, linear_branch)


@dataclass(frozen=True)
class Positives:
    """Up to K positive priors per image, the best-matched first (static shapes).

    Attributes:
        index (Tensor[B, K] int64): prior indices.
        valid (Tensor[B, K] bool): which slots hold a positive (an image with fewer than K
            positives pads with background priors).
        pred_boxes (Tensor[B, K, 4]): their predicted boxes, decoded to xyxy (with gradient);
            only these K are decoded, not all P.
    """

    index: Tensor
    valid: Tensor
    pred_boxes: Tensor

    def gather(self, values: Tensor) -> Tensor:
        """``values (Tensor[B, P, ...])`` -> ``Tensor[B, K, ...]`` at the kept priors."""
        index = self.index.view(*self.index.shape, *([1] * (values.dim() - 2)))
        return values.gather(1, index.expand(-1, -1, *values.shape[2:]))


@dataclass(frozen=True)
class LossContext:
    """Everything a loss term may use in one step, built once by the criterion.

    Attributes:
        loc (Tensor[B, P, 4]): predicted offsets. conf (Tensor[B, P, C]): class logits.
        priors (Tensor[P, 4]): cxcywh priors.
        gt_boxes (Tensor[B, G, 4]) normalised xyxy, gt_labels (Tensor[B, G]) in 1..C-1,
        gt_valid (Tensor[B, G] bool): real objects (ignore regions and padding are False).
        match: the :class:`~repssd.matcher.Match` of priors to GT (``match.ignored``: priors
            inside ignore regions, neither positive nor negative).
        num_pos (Tensor[] float): positives in the batch, summed over processes under
            torch.distributed and divided by their number (DETR's ``num_boxes``), at least 1.
        variances: the box coder's.
        diagnose: terms may add ``"diag/..."`` outputs (statistics, never weighted) this step.
    """

    loc: Tensor
    conf: Tensor
    priors: Tensor
    gt_boxes: Tensor
    gt_labels: Tensor
    gt_valid: Tensor
    match: Match
    num_pos: Tensor
    variances: tuple[float, float] = VARIANCES
    diagnose: bool = False
    _positives: dict = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def pred_boxes(self) -> Tensor:
        """``Tensor[B, P, 4]``: the predicted boxes, decoded to normalised xyxy (with gradient)."""
        return decode(self.loc, self.priors, self.variances)

    @cached_property
    def priors_xyxy(self) -> Tensor:
        """``Tensor[P, 4]``: the priors as xyxy."""
        return cxcywh_to_xyxy(self.priors)

    def positives(self, k: int) -> Positives:
        """The at most ``k`` best-matched positives of each image (cached per ``k``).

        Exact for images with at most ``k`` positives; beyond that the positives whose prior
        overlaps its GT least are left out. Found with ``topk``, not ``nonzero``: no host sync.
        On CPU, where reading a count back is free, K shrinks to the batch's largest count.
        """
        if k not in self._positives:
            priority = torch.where(self.match.positive, 1.0 + self.match.iou, 0.0)  # [B,P]
            width = min(k, priority.shape[1])
            if batching.cpu_strategy(priority.device):
                width = max(1, min(width, int(self.match.positive.sum(dim=1).max())))
            value, index = priority.topk(width, dim=1)  # [B,K]
            loc = self.loc.gather(1, index.unsqueeze(-1).expand(-1, -1, 4))  # [B,K,4]
            priors = self.priors.index_select(0, index.flatten()).view(*index.shape, 4)  # [B,K,4]
            self._positives[k] = Positives(index, value > 0, decode(loc, priors, self.variances))
        return self._positives[k]

    @staticmethod
    def count_positives(match: Match) -> Tensor:
        """``num_pos`` for :class:`LossContext`: batch positives, averaged over processes, >= 1."""
        return LossContext.mean_over_processes(match.positive.sum()).clamp(min=1.0)

    @staticmethod
    def mean_over_processes(count: Tensor) -> Tensor:
        """A per-process count as float32, summed over processes under torch.distributed and
        divided by their number (itself otherwise): a loss normalised by it, averaged over
        processes by DDP, equals the loss of one process on the whole batch."""
        count = count.to(torch.float32)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)
            count = count / dist.get_world_size()
        return count


class LossTerm(nn.Module):
    """A plug-in loss term: ``forward(ctx) -> {output name: scalar tensor}``.

    Class attributes:
        outputs: the names of the scalars it returns (unique across terms).
        default_weights: weight of each output in the total; an output without a weight is
            logged only.
        ramped: whether ``Criterion``'s loss warm-up ramps this term's weights (the auxiliary
            terms); the detection loss itself is never ramped.
    Constructor keyword arguments are the term's options (``build_criterion`` routes them).
    """

    outputs: ClassVar[tuple[str, ...]] = ()
    default_weights: ClassVar[dict[str, float]] = {}
    ramped: ClassVar[bool] = True

    def forward(self, ctx: LossContext) -> dict[str, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


TERMS: dict[str, type[LossTerm]] = {}


def register(name: str):
    """Class decorator: make a :class:`LossTerm` available to loss specs as ``name``."""
    def add(cls: type[LossTerm]) -> type[LossTerm]:
        if name in TERMS:
            raise ValueError(f"loss term {name!r} is registered twice")
        TERMS[name] = cls
        return cls
    return add
