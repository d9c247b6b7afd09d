"""Shared by the benchmarks: interleaved timing, operator counting, ssd.pytorch's match()."""
from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.ops import box_iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from repssd.boxes import cxcywh_to_xyxy  # noqa: E402
from repssd.coder import encode  # noqa: E402


def median_times(paths: dict[str, Callable], args: tuple = (), repeats: int = 5,
                 sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Median seconds of ``fn(*args)`` per path; the paths take turns in every round so machine
    noise hits them alike; round 0 warms up."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for round_ in range(repeats + 1):
        for name, fn in paths.items():
            sync()
            start = time.perf_counter()
            fn(*args)
            sync()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


class OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched inside it (on a GPU, each is a kernel launch)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def ssd_pytorch_match(threshold, truths, priors, labels):
    """ssd.pytorch layers/box_utils.py match() + encode() for one image (labels in 1..C-1)
    -> (conf [P], loc targets [P, 4])."""
    overlaps = box_iou(truths, cxcywh_to_xyxy(priors))
    best_prior_overlap, best_prior_idx = overlaps.max(1, keepdim=True)
    best_truth_overlap, best_truth_idx = overlaps.max(0, keepdim=True)
    best_truth_idx.squeeze_(0)
    best_truth_overlap.squeeze_(0)
    best_prior_idx.squeeze_(1)
    best_truth_overlap.index_fill_(0, best_prior_idx, 2)
    for j in range(best_prior_idx.size(0)):
        best_truth_idx[best_prior_idx[j]] = j
    conf = labels[best_truth_idx]
    conf[best_truth_overlap < threshold] = 0
    return conf, encode(truths[best_truth_idx], priors)
