"""CPU execution helper: group the images of a batch into cache-sized chunks by their length.

On an accelerator one set of kernels over the whole padded batch is fastest. On CPU a whole
``[B, ...]`` tensor of a few tens of MB is memory-bound, so the same tensor code runs on chunks
of images instead, each trimmed to its longest member. Reading lengths back is free on CPU.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["cpu_chunks", "cpu_strategy"]


def cpu_strategy(device: torch.device) -> bool:
    """Whether code on ``device`` takes its CPU strategy (chunks, gathers after host reads).

    Every hot path has two strategies with equal results: the whole-batch, sync-free one that
    accelerators (and ``meta``) take, and the CPU one. Tests patch this to run both on CPU.
    """
    return device.type == "cpu"


def cpu_chunks(lengths: Tensor, budget: int, cost: Callable[[int], int]) -> list[tuple[Tensor, int]]:
    """Chunks of images in order of length, each within ``budget``.

    Args:
        lengths (Tensor[B] int, CPU): the used length of each image (e.g. its last real GT slot).
        budget: the most work one chunk may hold, in ``cost`` units.
        cost: work of one image at a given width (a chunk of n images at width w costs n * cost(w)).

    Returns:
        (image indices, width) per chunk: widths ascend, every image appears once, and each
        chunk's width is its longest image's length.
    """
    order = lengths.argsort(stable=True)
    ordered = lengths[order].tolist()
    chunks: list[tuple[Tensor, int]] = []
    start = 0
    for i, width in enumerate(ordered):  # ascending, so image i is the widest so far
        if i > start and (i + 1 - start) * cost(width) > budget:
            chunks.append((order[start:i], ordered[i - 1]))
            start = i
    chunks.append((order[start:], ordered[-1] if ordered else 0))
    return chunks
