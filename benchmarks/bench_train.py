"""Training step speed: repssd SSD300 vs torchvision ssd300_vgg16 on the same batch.

    python benchmarks/bench_train.py [--batch 8] [--repeats 3] [--loss multibox]

One step = forward, matching + loss, backward, SGD update, on the same uint8 images and
targets (random boxes, 1-10 per image). Prints images/s of both, the ratio, and the share of
repssd's step spent in matching + loss (forward and backward of the criterion alone).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torchvision.models.detection import ssd300_vgg16

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from repssd.convert import from_torchvision  # noqa: E402
from repssd.losses import build_criterion  # noqa: E402


def make_batch(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, 300, 300), dtype=torch.uint8, generator=g)
    counts = torch.randint(1, 11, (batch,), generator=g)
    wh = 0.1 + 0.4 * torch.rand(batch, 10, 2, generator=g)
    xy = (1 - wh) * torch.rand(batch, 10, 2, generator=g)
    boxes = torch.cat((xy, xy + wh), -1)
    labels = torch.randint(1, 21, (batch, 10), generator=g)
    valid = torch.arange(10) < counts[:, None]
    return images, boxes, labels, valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loss", default="multibox")
    opts = parser.parse_args()
    torch.manual_seed(0)
    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).train()
    ours = from_torchvision(tv.state_dict()).train()
    criterion = build_criterion(opts.loss)
    images, boxes, labels, valid = make_batch(opts.batch)
    floats = [im.float() / 255 for im in images]
    targets = [{"boxes": boxes[b, valid[b]] * 300, "labels": labels[b, valid[b]]} for b in range(opts.batch)]
    opt_tv = torch.optim.SGD(tv.parameters(), lr=1e-4, momentum=0.9)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=1e-4, momentum=0.9)

    def step_tv():
        losses = tv(floats, targets)
        opt_tv.zero_grad()
        sum(losses.values()).backward()
        opt_tv.step()

    def step_ours():
        loc, conf = ours(ours.preprocess(images))
        out = criterion(loc, conf, ours.priors, boxes, labels, valid)
        opt_ours.zero_grad()
        out["loss"].backward()
        opt_ours.step()

    with torch.no_grad():
        loc, conf = ours(ours.preprocess(images))

    def criterion_only():
        l, c = loc.detach().requires_grad_(), conf.detach().requires_grad_()
        criterion(l, c, ours.priors, boxes, labels, valid)["loss"].backward()

    paths = {"torchvision ssd300_vgg16": step_tv, "repssd ssd300_vgg16": step_ours, "repssd matching + loss": criterion_only}
    times = {name: [] for name in paths}
    for round_ in range(opts.repeats + 1):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {opts.batch}, loss {opts.loss}\n")
    print(f"{'path':28s} {'s/step':>8s} {'img/s':>7s} {'vs torchvision':>15s}")
    for name in ("torchvision ssd300_vgg16", "repssd ssd300_vgg16"):
        print(f"{name:28s} {med[name]:8.2f} {opts.batch / med[name]:7.2f} "
              f"{med['torchvision ssd300_vgg16'] / med[name]:14.2f}x")
    share = med["repssd matching + loss"] / med["repssd ssd300_vgg16"]
    print(f"\nmatching + loss (forward + backward): {med['repssd matching + loss'] * 1e3:.1f} ms = "
          f"{share:.1%} of repssd's step")


if __name__ == "__main__":
    main()
