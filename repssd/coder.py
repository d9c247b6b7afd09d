"""Box encoding against priors, SSD paper Eq. 2 (the localisation targets).

``encode`` and ``decode`` are exact inverses up to rounding: ``decode(encode(g, p), p) == g``.
Both reproduce ssd.pytorch's ``layers/box_utils.py`` arithmetic operation for operation.
Priors are ``Tensor[P, 4]`` cxcywh (or any shape that broadcasts against the boxes, e.g. the
``[B, K, 4]`` priors of gathered positives); box and offset tensors are ``Tensor[..., P, 4]``.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["VARIANCES", "encode", "decode"]

VARIANCES = (0.1, 0.2)


def encode(matched_xyxy: Tensor, priors_cxcywh: Tensor,
           variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Offsets that take each prior to its matched box.

    Args:
        matched_xyxy (Tensor[..., P, 4]): the box each prior should regress to, xyxy.
        priors_cxcywh (Tensor[P, 4]): priors.
        variances: (centre, size) scaling of the offsets.

    Returns:
        Tensor[..., P, 4]: ``((gcx - pcx) / (v0 pw), (gcy - pcy) / (v0 ph), log(gw / pw) / v1,
        log(gh / ph) / v1)``.
    """
    centre = (matched_xyxy[..., :2] + matched_xyxy[..., 2:]) / 2 - priors_cxcywh[..., :2]
    centre = centre / (variances[0] * priors_cxcywh[..., 2:])
    size = (matched_xyxy[..., 2:] - matched_xyxy[..., :2]) / priors_cxcywh[..., 2:]
    return torch.cat((centre, torch.log(size) / variances[1]), dim=-1)


def decode(loc: Tensor, priors_cxcywh: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Boxes predicted by offsets ``loc (Tensor[..., P, 4])`` from ``priors_cxcywh (Tensor[P, 4])``.

    Returns:
        Tensor[..., P, 4]: xyxy boxes in the priors' (normalised) coordinates.
    """
    centre = priors_cxcywh[..., :2] + loc[..., :2] * variances[0] * priors_cxcywh[..., 2:]
    size = priors_cxcywh[..., 2:] * torch.exp(loc[..., 2:] * variances[1])
    top_left = centre - size / 2
    return torch.cat((top_left, size + top_left), dim=-1)
