"""The main job behind ``make demo``.

Training, evaluation and the synthetic crowd dataset are not in repssd yet (issues 5-8), so
for now the demo says so plainly and exercises what exists: it lays out the priors of every
spec and matches a crowded random scene, printing how many priors each person gets.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from .matcher import match
from .priors import SPECS, generate_priors

MISSING = ("synthetic crowd dataset (issue 5)", "evaluation / crowd mAP (issue 6)",
           "training with --loss multibox+repgt (issue 7)", "end-to-end report (issue 8)")


def crowd_scene(num_people: int, seed: int) -> torch.Tensor:
    """``Tensor[1, num_people, 4]`` normalised xyxy boxes of people standing shoulder to shoulder."""
    g = torch.Generator().manual_seed(seed)
    width = 0.08 + 0.04 * torch.rand(num_people, generator=g)
    x1 = torch.linspace(0.02, 0.85, num_people) + 0.02 * torch.rand(num_people, generator=g)
    y1 = 0.3 + 0.1 * torch.rand(num_people, generator=g)
    return torch.stack((x1, y1, (x1 + width).clamp(max=1), (y1 + 2.5 * width).clamp(max=1)), -1)[None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repssd.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--people", type=int, default=12, help="people in the demo scene")
    opts = parser.parse_args(argv)
    print("repssd demo: the geometry core (priors + batched MultiBox matching).")
    print("Not in repssd yet, so not run here: " + "; ".join(MISSING) + ".\n")
    boxes = crowd_scene(opts.people, seed=0)
    labels = torch.ones(boxes.shape[:2], dtype=torch.long)
    valid = torch.ones(boxes.shape[:2], dtype=torch.bool)
    lines = [f"{'prior spec':18s} {'priors':>7s} {'positives':>9s} {'per person':>11s} {'match ms':>9s}"]
    for name in SPECS:
        priors = generate_priors(name)
        start = time.perf_counter()
        result = match(priors, boxes, labels, valid)
        elapsed = (time.perf_counter() - start) * 1e3
        per_person = torch.bincount(result.gt_index[result.positive], minlength=opts.people)
        lines.append(f"{name:18s} {priors.shape[0]:7d} {int(result.positive.sum()):9d} "
                     f"{int(per_person.min()):4d}..{int(per_person.max()):<5d} {elapsed:9.2f}")
    opts.out.mkdir(parents=True, exist_ok=True)
    report = opts.out / "report.txt"
    report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nreport: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
