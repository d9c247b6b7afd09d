"""Example images of crowd errors fixed or introduced by repulsion, for the crowd study's notebook.

    python -m experiments.crowd_error_figures --config experiments/crowd_finetune.yaml \\
           --cells multibox repgt --seed 0 --split crowd_test [--frames 3]

Reads the per-image error records the runner saved for two final runs of the same seed
(``OUTPUT/final/<cell>/seed<k>/errors_<split>.json``), picks the frames where the two differ most in
crowd errors plus people suppressed by NMS under a neighbour, and draws both side by side at score
>= 0.5: ground truth (green), true positives (blue), crowd-error false positives (red), other false
positives (yellow), people suppressed under a neighbour's box (orange, dashed). Written to
``<output_dir>/figures/`` (the runner's folder, not committed: the drawings contain the dataset's
frames, which the repository does not repost; MOTChallenge's credit is drawn on each figure). The
crowd-study notebook shows them where they exist locally.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from repssd.data.factory import open_dataset, parse_data_options

from .ablation import load_ablation, run_dir

COLOURS = {"gt": (60, 200, 60), "tp": (230, 120, 30), "crowd": (40, 40, 230), "fp": (40, 200, 230),
           "suppressed": (0, 140, 255)}  # BGR
CREDIT = "MOT17 (motchallenge.net, CC BY-NC-SA 3.0)"


def _records(out: Path, cell: str, seed: int, split: str) -> dict[str, dict]:
    errors = json.loads((run_dir(out / "final", cell, seed) / f"errors_{split}.json").read_text())
    return {str(r["id"]): r for r in errors["records"]}


def _count(record: dict, threshold: str = "score>=0.5") -> int:
    crowd = sum(d["category"] == "crowd" and d["score"] >= 0.5 for d in record["detections"])
    suppressed = sum(g["outcome"].get(threshold) == "suppressed_neighbour" for g in record["ground_truth"])
    return crowd + suppressed


def _draw(image: np.ndarray, record: dict, title: str, threshold: str = "score>=0.5") -> np.ndarray:
    canvas = image.copy()
    for g in record["ground_truth"]:
        if g["ignore"]:
            continue
        x1, y1, x2, y2 = map(int, g["box"])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), COLOURS["gt"], 2)
        if g["outcome"].get(threshold) == "suppressed_neighbour":
            for k in range(x1, x2, 12):  # dashed: a person NMS removed under a neighbour's box
                cv2.line(canvas, (k, y1), (min(k + 6, x2), y1), COLOURS["suppressed"], 4)
                cv2.line(canvas, (k, y2), (min(k + 6, x2), y2), COLOURS["suppressed"], 4)
    for d in record["detections"]:
        if d["score"] < 0.5 or d["category"] == "ignored":
            continue
        colour = COLOURS["tp"] if d["category"] == "tp" else COLOURS["crowd" if d["category"] == "crowd" else "fp"]
        x1, y1, x2, y2 = map(int, d["box"])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 3 if d["category"] == "crowd" else 2)
    cv2.rectangle(canvas, (0, 0), (canvas.shape[1], 44), (0, 0, 0), -1)
    cv2.putText(canvas, title, (10, 32), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.crowd_error_figures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--cells", nargs=2, default=["multibox", "repgt"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="crowd_test")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--out", type=Path, help="default: <the config's output_dir>/figures")
    opts = parser.parse_args(argv)
    config = load_ablation(opts.config)
    out = Path(config["output_dir"])
    spec = config["evaluations"][opts.split]
    dataset = open_dataset(spec["dataset"], spec["data_root"], spec["split"],
                           **parse_data_options(spec["dataset"], spec.get("data_options"), training=False))
    files = {r.id: r.file for r in dataset.records}
    left, right = (_records(out, cell, opts.seed, opts.split) for cell in opts.cells)
    shown = sorted(left, key=lambda i: -abs(_count(left[i]) - _count(right[i])))[:opts.frames]
    target = opts.out or out / "figures"
    target.mkdir(parents=True, exist_ok=True)
    for image_id in shown:
        image = cv2.imread(str(files[image_id]))
        panels = [_draw(image, records[image_id], f"{cell} (seed {opts.seed}): {_count(records[image_id])} crowd "
                        "errors + suppressed") for cell, records in zip(opts.cells, (left, right))]
        figure = np.concatenate(panels, axis=1)
        figure = cv2.resize(figure, (1800, int(1800 * figure.shape[0] / figure.shape[1])), interpolation=cv2.INTER_AREA)
        cv2.putText(figure, f"{image_id}  {CREDIT}", (10, figure.shape[0] - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 1)
        name = target / f"{image_id.replace('/', '_')}_{'_vs_'.join(opts.cells)}.jpg"
        cv2.imwrite(str(name), figure, [cv2.IMWRITE_JPEG_QUALITY, 85])
        print(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
