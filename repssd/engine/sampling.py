"""Deterministic training data: which image, with which augmentation seed, at every step.

The sample at global position p (p = iteration * batch * world + rank * batch + k) is image
``perm(epoch)[p % N]`` of a per-epoch permutation drawn from (seed, epoch), augmented with the
seed (seed, p). Batches therefore depend only on (seed, iteration, rank): the same whatever the
worker count, and a resumed run sees exactly the batches the uninterrupted one would have.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["StepSampler", "SeededDataset"]


class StepSampler(Sampler):
    """Infinite batch sampler from ``start_iteration``: yields ``[(index, sample_seed), ...]``."""

    def __init__(self, size: int, batch_size: int, seed: int, start_iteration: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.rank, self.world = start_iteration, rank, world_size
        self._epoch, self._perm = -1, None

    def _image(self, position: int) -> int:
        epoch = position // self.size
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.size, generator=generator).tolist()
        return self._perm[position % self.size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        iteration = self.start
        while True:
            first = (iteration * self.world + self.rank) * self.batch_size
            yield [(self._image(p), self.seed * 1_000_000_007 + p) for p in range(first, first + self.batch_size)]
            iteration += 1


class SeededDataset(Dataset):
    """``dataset[(index, seed)]``: seeds torch's generator (which the SSD transforms draw from)
    before loading, so augmentation depends only on the sample's seed."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        torch.manual_seed(seed % (2**63))
        return self.dataset[index]
