"""The SSD meta-architecture: backbone sources + extra layers + per-source heads.

SSD paper Sec. 2.1: a base network yields the first feature maps, extra layers shrink them
further, and a 3x3 convolution per source predicts, for each prior at each cell, 4 box offsets
and C class scores. Outputs are laid out (source, y, x, anchor), which is the order of the
priors of the model's :class:`~repssd.priors.PriorSpec`.

Symbols: B batch, P priors, C classes including background (label 0).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..priors import PriorSpec, generate_priors

__all__ = ["SSD", "SSDHead", "Normalize", "L2Norm"]


class Normalize(nn.Module):
    """Input normalisation a model owns: ``(x - mean) / std`` on 0-255 RGB, channel-wise."""

    def __init__(self, mean: Sequence[float], std: Sequence[float] | float = 1.0) -> None:
        super().__init__()
        std = [float(std)] * 3 if isinstance(std, (int, float)) else list(std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """``images (Tensor[B, 3, H, W])`` uint8 or float RGB in 0..255 -> float network input."""
        return (images.to(self.mean.dtype) - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale (ParseNet; SSD Sec. 3.1),
    as ssd.pytorch applies it to conv4_3: ``weight * x / (||x||_2 + 1e-10)``, weight initialised
    to ``scale``."""

    def __init__(self, channels: int, scale: float = 20.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True) + self.eps  # one fused pass
        return self.weight.view(1, -1, 1, 1) * (x / norm)


class SSDHead(nn.Module):
    """One localisation and one classification layer per source.

    Args:
        loc, conf: per-source modules mapping a source to ``A_k * 4`` and ``A_k * C`` channels.
        num_classes: C, including background.
    """

    def __init__(self, loc: Sequence[nn.Module], conf: Sequence[nn.Module], num_classes: int) -> None:
        super().__init__()
        if len(loc) != len(conf):
            raise ValueError(f"SSDHead: {len(loc)} loc layers but {len(conf)} conf layers")
        self.loc = nn.ModuleList(loc)
        self.conf = nn.ModuleList(conf)
        self.num_classes = num_classes

    @staticmethod
    def _flatten(outputs: list[Tensor], width: int) -> Tensor:
        """Per-source ``[B, A*width, H, W]`` -> ``[B, sum(H*W*A), width]`` in (source, y, x, anchor) order."""
        batch = outputs[0].shape[0]
        return torch.cat([o.permute(0, 2, 3, 1).reshape(batch, -1, width) for o in outputs], dim=1)

    def forward(self, sources: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        if len(sources) != len(self.loc):
            raise ValueError(f"SSDHead: got {len(sources)} sources for {len(self.loc)} head layers")
        loc = self._flatten([layer(x) for layer, x in zip(self.loc, sources)], 4)
        conf = self._flatten([layer(x) for layer, x in zip(self.conf, sources)], self.num_classes)
        return loc, conf


class SSD(nn.Module):
    """Single Shot MultiBox Detector.

    Args:
        backbone: image -> list of its source feature maps (e.g. conv4_3 and fc7 for VGG16).
        extras: each module maps the previous source to the next one.
        head: :class:`SSDHead` over all sources.
        spec: the prior layout the head's outputs line up with.
        normalize: the input normalisation this model expects (see :meth:`preprocess`).

    ``model(x)`` takes ``x (Tensor[B, 3, H, W])`` already normalised (``(W, H) = spec.input_size``)
    and returns ``loc (Tensor[B, P, 4])`` offsets (SSD Eq. 2) and ``conf (Tensor[B, P, C])``
    logits.
    """

    def __init__(self, backbone: nn.Module, extras: Sequence[nn.Module], head: SSDHead,
                 spec: PriorSpec, normalize: Normalize) -> None:
        super().__init__()
        self.backbone = backbone
        self.extras = nn.ModuleList(extras)
        self.head = head
        self.spec = spec
        self.normalize = normalize

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def image_size(self) -> int | tuple[int, int]:
        """The spec's input size: S for square specs, (width, height) for grid-anchor ones."""
        return self.spec.image_size

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the network input; transforms resize images to it."""
        return self.spec.input_size

    @property
    def priors(self) -> Tensor:
        """``Tensor[P, 4]`` cxcywh priors on the model's device (cached, read-only)."""
        weight = next(self.parameters())
        return generate_priors(self.spec, device=weight.device, dtype=weight.dtype)

    def preprocess(self, images: Tensor) -> Tensor:
        """``images (Tensor[B, 3, H, W])`` uint8 RGB -> the normalised input :meth:`forward` takes."""
        return self.normalize(images)

    def sources(self, x: Tensor) -> list[Tensor]:
        """All source feature maps, backbone first, then one per extra module."""
        sources = list(self.backbone(x))
        for extra in self.extras:
            sources.append(extra(sources[-1]))
        return sources

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.sources(x))
