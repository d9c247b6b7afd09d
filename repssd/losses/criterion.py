"""``Criterion``: match once, run every loss term on the shared context, weight the total."""
from __future__ import annotations

import inspect
import math

from torch import Tensor, nn

from ..coder import VARIANCES
from ..matcher import match
from ..options import given_twice
from .base import TERMS, LossContext, LossTerm

__all__ = ["Criterion", "build_criterion", "parse_weights"]


class Criterion(nn.Module):
    """Weighted sum of loss terms over one matching of priors to ground truth.

    Args:
        terms: the terms, in spec order.
        weights: weight per output name; outputs without one are returned but not summed.
        iou_threshold: the matching threshold (SSD: 0.5).
        warmup: iterations over which the weights of the ramped terms (every term but
            MultiBox) grow linearly from 0 to their value; 0: no ramp. :meth:`set_iteration`
            tells the criterion where training is.
        ignore_iof: a prior that is not positive and lies at least this fraction of its area
            inside an ignore region is neither positive nor negative (0.5, as CrowdDet).
    """

    def __init__(self, terms: list[LossTerm], weights: dict[str, float], iou_threshold: float = 0.5,
                 variances: tuple[float, float] = VARIANCES, warmup: int = 0, ignore_iof: float = 0.5) -> None:
        super().__init__()
        if warmup < 0:
            raise ValueError(f"loss warm-up must be >= 0 iterations, got {warmup}")
        if not 0.0 < ignore_iof <= 1.0:
            raise ValueError(f"ignore_iof must be in (0, 1], got {ignore_iof}")
        self.terms = nn.ModuleList(terms)
        self.weights = dict(weights)
        self.iou_threshold = iou_threshold
        self.variances = variances
        self.warmup = warmup
        self.ignore_iof = ignore_iof
        self.ramped = {out for term in terms if term.ramped for out in term.outputs}
        self.ramp = 1.0 if warmup == 0 else 0.0

    def set_iteration(self, iteration: int) -> None:
        """The loss warm-up's position: ramped weights are scaled by ``min(1, iteration / warmup)``."""
        self.ramp = min(1.0, iteration / self.warmup) if self.warmup else 1.0

    @property
    def effective_weights(self) -> dict[str, float]:
        """The weights of this step: ``weights`` with the warm-up ramp applied."""
        return {name: w * self.ramp if name in self.ramped else w for name, w in self.weights.items()}

    def forward(self, loc: Tensor, conf: Tensor, priors_cxcywh: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                gt_valid: Tensor, gt_ignore: Tensor | None = None, diagnose: bool = False) -> dict[str, Tensor]:
        """Args as in :class:`~repssd.losses.base.LossContext`; returns every term's named
        scalars plus ``"loss"``, the weighted total (``effective_weights``).

        ``gt_ignore (Tensor[B, G] bool)``: the slots of ``gt_boxes`` that are ignore regions
        (collate's ``gt_ignore``). They are never matched, never G_Rep and never RepBox targets;
        priors they cover (``ignore_iof``) are neither positive nor negative: no confidence loss,
        never mined. None: no ignore regions. ``diagnose``: terms add their ``"diag/..."``
        statistics (logged, never weighted)."""
        if gt_boxes.shape[1] == 0:  # no GT slot at all: one padded slot keeps every gather valid
            gt_boxes, gt_labels = gt_boxes.new_zeros(len(gt_boxes), 1, 4), gt_labels.new_zeros(len(gt_labels), 1)
            gt_valid = gt_valid.new_zeros(len(gt_valid), 1)
            gt_ignore = None
        if gt_ignore is not None:
            gt_valid = gt_valid & ~gt_ignore  # an ignore region is never an object, whatever gt_valid says
        result = match(priors_cxcywh, gt_boxes, gt_labels, gt_valid, self.iou_threshold, gt_ignore, self.ignore_iof)
        ctx = LossContext(loc, conf, priors_cxcywh.to(loc), gt_boxes.to(loc), gt_labels, gt_valid, result,
                          LossContext.count_positives(result), self.variances, diagnose)
        outputs: dict[str, Tensor] = {}
        for term in self.terms:
            outputs.update(term(ctx))
        outputs["loss"] = sum(weight * outputs[name] for name, weight in self.effective_weights.items())
        return outputs

    def extra_repr(self) -> str:
        return (f"weights={self.weights}, iou_threshold={self.iou_threshold}, warmup={self.warmup}, "
                f"ignore_iof={self.ignore_iof}")


def _option_owners() -> dict[str, str]:
    """Option name -> the registered term whose constructor takes it."""
    owners = {}
    for name, cls in TERMS.items():
        for param in list(inspect.signature(cls.__init__).parameters)[1:]:
            owners[param] = name
    return owners


def parse_weights(text: str) -> dict[str, float]:
    """``"repgt=0.5,repbox=0.5"`` -> ``{"repgt": 0.5, "repbox": 0.5}`` (ValueError naming the bad part)."""
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if name.strip() in weights:
            raise ValueError(f"bad loss weights: {given_twice(name.strip())}")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"bad loss weight {part!r}: expected name=number, e.g. repgt=0.5") from None
        if not sep:
            raise ValueError(f"bad loss weight {part!r}: expected name=number, e.g. repgt=0.5")
        if not math.isfinite(weights[name.strip()]) or weights[name.strip()] < 0:
            raise ValueError(f"bad loss weight {part!r}: a weight must be a finite number >= 0 (a negative one "
                             "would reverse its term, e.g. pull boxes toward their neighbours)")
    return weights


def build_criterion(spec: str = "multibox", weights: dict[str, float] | None = None, iou_threshold: float = 0.5,
                    warmup: int = 0, ignore_iof: float = 0.5, **options) -> Criterion:
    """Build a :class:`Criterion` from a spec such as ``"multibox+repgt+repbox"``.

    Args:
        spec: registered term names joined by ``+``.
        weights: per-output weights overriding the terms' defaults (``loc``, ``conf``: 1;
            ``repgt``, ``repbox``: 0.5); 0 logs an output without training on it.
        iou_threshold: the matching threshold shared by all terms.
        warmup: iterations of linear warm-up of the auxiliary terms' weights (0: none).
        ignore_iof: how far inside an ignore region a prior must lie to be ignored (0.5).
        options: term options, each routed to the term that takes it (e.g. ``neg_pos_ratio``,
            ``repgt_target``, ``repbox_sigma``).

    Unknown or repeated term names, and weights or options for terms not in the spec, raise a
    ``ValueError`` that lists what is known.
    """
    names = [n.strip() for n in spec.split("+")]
    known = ", ".join(TERMS)
    for name in names:
        if name not in TERMS:
            raise ValueError(f"unknown loss term {name!r} in {spec!r}; known terms: {known}")
    if len(set(names)) != len(names):
        raise ValueError(f"loss spec {spec!r} names a term twice")
    owners = _option_owners()
    per_term: dict[str, dict] = {name: {} for name in names}
    for option, value in options.items():
        owner = owners.get(option)
        if owner is None:
            raise ValueError(f"unknown loss option {option!r}; known options: {', '.join(sorted(owners))}")
        if owner not in per_term:
            raise ValueError(f"option {option!r} is for loss term {owner!r}, which is not in {spec!r}")
        per_term[owner][option] = value
    terms = [TERMS[name](**per_term[name]) for name in names]
    outputs = {out: name for name, term in zip(names, terms) for out in term.outputs}
    merged = {out: w for term in terms for out, w in term.default_weights.items()}
    for out, w in (weights or {}).items():
        if out not in outputs:
            all_outputs = {o: n for n, cls in TERMS.items() for o in cls.outputs}
            hint = f" (an output of {all_outputs[out]!r}, not in {spec!r})" if out in all_outputs else ""
            raise ValueError(f"loss weight for unknown output {out!r}{hint}; outputs of {spec!r}: {', '.join(outputs)}")
        merged[out] = float(w)
    return Criterion(terms, merged, iou_threshold=iou_threshold, warmup=warmup, ignore_iof=ignore_iof)
