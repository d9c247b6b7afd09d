"""Recall of a detector against the height a person has in its network input: the size at which
the model finds people (issue 34: the scene-reading ``auto`` tiles aim the smallest plausible
person of each band at it, measured per model instead of a constant 65 px).

    python -m experiments.recall_by_height --weights weights/oidv4_ssd_mbv2_person.pth \\
        --dataset mot --data-root data/MOT17-mini --split MOT17-02-FRCNN,MOT17-09-FRCNN,MOT17-13-FRCNN \\
        --out experiments/results/slicing_scene/recall_by_height_oidv4_mot17_val.json

Every image is cut into SAHI tiles of each size in ``--sizes`` (0: the whole image; overlap 0.2, no merge) and every tile runs through the network on its own. Each person wholly inside a tile
(not an ignore region; visibility >= ``--min-visibility`` where the dataset records it) counts once
per tile, at its height in the network input (pixel height x input height / tile height), and is
found when a detection of that tile scoring at least ``--score`` matches it at IoU >= 0.5 (greedy,
best first, one detection per person). The output lists, per log-spaced height bin, the pairs and
the recall, and ``h50`` / ``h80``: the lower edge of the first bin whose recall reaches 50% / 80% of
the best bin's (the largest bins, people nearly filling a tile, fall again). Validation images only.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from repssd.boxes import box_iou
from repssd.convert import load_model
from repssd.data.factory import open_dataset
from repssd.eval.inference import ground_truth_of, load_image
from repssd.models.fuse import for_inference
from repssd.postprocess import postprocess_options
from repssd.slicing import Slicing, image_tiles, smallest_anchor
from repssd.slicing.run import _run_tiles, _to_pixels

BINS = np.geomspace(4, 512, 22)  # input-pixel height bin edges


def found_in_tile(gt: np.ndarray, boxes: np.ndarray, scores: np.ndarray, score: float) -> np.ndarray:
    """Which of the ``gt`` boxes a detection (score >= ``score``) matches at IoU >= 0.5, greedily, best first."""
    keep = scores >= score
    boxes, scores = boxes[keep], scores[keep]
    found = np.zeros(len(gt), bool)
    if not len(gt) or not len(boxes):
        return found
    iou = box_iou(torch.as_tensor(boxes[np.argsort(-scores)], dtype=torch.float64),
                  torch.as_tensor(gt, dtype=torch.float64)).numpy()  # [D, G]
    for row in iou:
        row = np.where(found, -1.0, row)
        best = int(row.argmax())
        if row[best] >= 0.5:
            found[best] = True
    return found


def measure(weights: Path, dataset, sizes: list[int], score: float, min_visibility: float,
            batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(input heights, found flags) of every (person, tile) pair."""
    model, config = load_model(weights)
    post = postprocess_options(config)
    fast = for_inference(model)
    anchor, input_h = smallest_anchor(model), model.input_size[1]
    heights, found = [], []
    for index, gt in enumerate(ground_truth_of(dataset)):
        image = load_image(dataset, index)
        boxes = np.asarray(gt["boxes"], np.float64).reshape(-1, 4)
        usable = ~np.asarray(gt.get("ignore", np.zeros(len(boxes), bool)), bool)
        usable &= np.asarray(gt.get("visibility", np.ones(len(boxes))), np.float64) >= min_visibility
        boxes = boxes[usable]
        for size in sizes:  # 0: the whole image as one tile
            tile = (image.shape[1], image.shape[0]) if size == 0 else size
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "a tile covers the whole image": here on purpose
                tiles, sources = image_tiles([image], Slicing(size=tile, overlap=0.2, full_image=False),
                                             model.input_size, anchor)
            dets = _to_pixels(_run_tiles(fast, [image], tiles, batch_size, torch.device("cpu"), [post])[0], sources)
            for t, (x0, y0, x1, y1) in enumerate(tiles[0].tolist()):
                inside = (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x1) & (boxes[:, 3] <= y1)
                mine = dets.source == t
                hit = found_in_tile(boxes[inside], dets.boxes[mine].numpy(), dets.scores[mine].double().numpy(), score)
                heights.append((boxes[inside, 3] - boxes[inside, 1]) * input_h / (y1 - y0))
                found.append(hit)
    return np.concatenate(heights), np.concatenate(found)


def summarise(heights: np.ndarray, found: np.ndarray) -> dict:
    """Recall per height bin, and the least heights from which recall stays at 50% / 80% of the best bin's."""
    which = np.digitize(heights, BINS) - 1
    rows = []
    for b in range(len(BINS) - 1):
        mine = which == b
        rows.append({"low": float(BINS[b]), "high": float(BINS[b + 1]), "pairs": int(mine.sum()),
                     "recall": float(found[mine].mean()) if mine.sum() >= 20 else None})
    rated = [r for r in rows if r["recall"] is not None]
    best = max((r["recall"] for r in rated), default=0.0)
    result = {"bins": rows, "best_recall": best}
    for share in (0.5, 0.8):  # the first bin at share of the best (the largest bins, people nearly filling a tile, drop)
        result[f"h{int(share * 100)}"] = next((r["low"] for r in rated if r["recall"] >= share * best), None)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 128, 192, 256, 384, 540, 800],
                        help="tile sizes in image pixels; 0: the whole image")
    parser.add_argument("--score", type=float, default=0.3)
    parser.add_argument("--min-visibility", type=float, default=0.65)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, required=True)
    opts = parser.parse_args(argv)
    torch.set_num_threads(2)
    dataset = open_dataset(opts.dataset, opts.data_root, opts.split)
    heights, found = measure(opts.weights, dataset, opts.sizes, opts.score, opts.min_visibility, opts.batch_size)
    result = {"weights": str(opts.weights), "dataset": opts.dataset, "data_root": opts.data_root, "split": opts.split,
              "sizes": opts.sizes, "score": opts.score, "min_visibility": opts.min_visibility,
              "pairs": int(len(heights)), **summarise(heights, found)}
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{opts.weights.name} on {opts.dataset} {opts.split}: {len(heights)} (person, tile) pairs; best recall "
          f"{result['best_recall']:.3f}; h50 {result['h50']}, h80 {result['h80']} input px")
    for row in result["bins"]:
        if row["recall"] is not None:
            print(f"  {row['low']:6.1f}-{row['high']:6.1f} px  {row['pairs']:6d} pairs  recall {row['recall']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
