"""Where a run's confident detections land: true positives, detections on ignore regions, and
false positives near an ignore region, near an object (a duplicate or a poorly placed box) or on
plain background (the evidence behind the README's ignore-region results).

    python -m experiments.false_positives --runs runs/ignore_regions_carmask --dataset crowdhuman \\
        --data-root data/synthetic_masked/crowdhuman --split test_full [--score 0.3]

For every ``RUNS/<cell>/seed<k>/checkpoints/last.pth``: detections scoring above ``--score`` are
matched as the CrowdHuman toolkit matches them (``repssd.eval.miss_rate.match_greedy``), and the
false positives are split by whether they overlap an ignore region (intersection over the
detection's area above 0.1), else an object (IoU above 0.1), else neither.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from repssd.convert import load_model
from repssd.data import SSDTestTransform
from repssd.data.factory import open_dataset
from repssd.eval.inference import ground_truth_of, predict_dataset
from repssd.eval.miss_rate import _pairwise, match_greedy

__all__ = ["confident_outcomes", "main"]


def confident_outcomes(detections: list[dict], ground_truth: list[dict], score: float, near: float = 0.1) -> dict:
    """Counts over all images: ``tp``, ``on_ignore`` (neither TP nor FP), ``fp_near_ignore``,
    ``fp_near_object``, ``fp_background``, and ``recall`` (true positives over non-ignore GT)."""
    counts = dict.fromkeys(("tp", "on_ignore", "fp_near_ignore", "fp_near_object", "fp_background"), 0)
    objects = 0
    for det, gt in zip(detections, ground_truth):
        if det is None:  # unreadable image: in neither
            continue
        scores = np.asarray(det["scores"], dtype=np.float64)
        keep = np.flatnonzero(scores > score)
        boxes = np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4)[keep[np.argsort(-scores[keep], kind="stable")]]
        gt_boxes = np.asarray(gt["boxes"], dtype=np.float64).reshape(-1, 4)
        ignore = np.asarray(gt.get("ignore", np.zeros(len(gt_boxes))), dtype=bool)
        objects += int((~ignore).sum())
        outcome = match_greedy([boxes], [gt_boxes], [ignore])[0]
        false = boxes[outcome == 0]
        on_region, on_object = np.zeros(len(false), bool), np.zeros(len(false), bool)
        if len(false) and ignore.any():
            on_region = _pairwise(false, gt_boxes[ignore])[1].max(axis=1) > near
        if len(false) and (~ignore).any():
            on_object = ~on_region & (_pairwise(false, gt_boxes[~ignore])[0].max(axis=1) > near)
        counts["tp"] += int((outcome == 1).sum())
        counts["on_ignore"] += int((outcome == -1).sum())
        counts["fp_near_ignore"] += int(on_region.sum())
        counts["fp_near_object"] += int(on_object.sum())
        counts["fp_background"] += int((~on_region & ~on_object).sum())
    return {**counts, "recall": counts["tp"] / max(objects, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.false_positives", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="an ablation output folder")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--score", type=float, default=0.3, help="detections scoring above this count")
    opts = parser.parse_args(argv)
    checkpoints = sorted(opts.runs.glob("*/seed*/checkpoints/last.pth"))
    if not checkpoints:
        parser.error(f"{opts.runs}: no <cell>/seed<k>/checkpoints/last.pth")
    print(f"{'run':20s} {'TP':>6s} {'on ignore':>10s} {'FP near ignore':>15s} {'FP near object':>15s} "
          f"{'FP background':>14s} {'recall':>7s}")
    for checkpoint in checkpoints:
        model, _ = load_model(checkpoint)
        dataset = open_dataset(opts.dataset, opts.data_root, opts.split, SSDTestTransform(model.input_size))
        detections = predict_dataset(model, dataset, batch_size=16, workers=0, progress=False)
        c = confident_outcomes(detections, ground_truth_of(dataset), opts.score)
        run = f"{checkpoint.parents[2].name}/{checkpoint.parents[1].name}"
        print(f"{run:20s} {c['tp']:6d} {c['on_ignore']:10d} {c['fp_near_ignore']:15d} {c['fp_near_object']:15d} "
              f"{c['fp_background']:14d} {c['recall']:7.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
