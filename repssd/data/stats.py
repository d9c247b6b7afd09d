"""Dataset statistics: ``python -m repssd.data.stats KIND PATH ...``.

    python -m repssd.data.stats voc VOCdevkit/VOC2007 --split test
    python -m repssd.data.stats voc data/synthetic --split train          # classes from classes.txt
    python -m repssd.data.stats coco annotations/instances_val2017.json --images val2017
    python -m repssd.data.stats crowdhuman annotation_val.odgt --images Images [--box vbox]

Prints the number of images, boxes per class (difficult and ignore counted apart), crowd boxes
(IoU > 0.1 with another box of the same class, the Repulsion Loss paper's subset) and images
containing one, the boxes-per-image histogram, and the problems the loader skipped.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ..eval.crowd import crowd_mask
from .base import DatasetError, DetectionDataset
from .coco import COCODetection
from .crowdhuman import CrowdHumanDetection
from .factory import open_dataset as factory_open

__all__ = ["dataset_stats", "format_stats", "open_dataset"]


def open_dataset(kind: str, path: Path, split: str = "trainval", images: Path | None = None,
                 box: str = "fbox") -> DetectionDataset:
    if kind == "voc":  # a VOC-layout folder, its classes from classes.txt when it has one
        return factory_open("voc", path, split)
    if images is None:
        raise DatasetError(f"{kind} needs --images, the folder of its image files")
    if kind == "coco":
        return COCODetection(path, images)
    return CrowdHumanDetection(path, images, box=box)


def dataset_stats(ds: DetectionDataset, crowd_iou: float = 0.1) -> dict:
    """Counts over the annotations (no image is decoded)."""
    per_class, difficult, ignore, crowd = Counter(), Counter(), Counter(), Counter()
    crowd_images, per_image = 0, []
    for record in ds.records:
        labels = np.array(record.labels, dtype=np.int64)
        flags_ignore = np.array(record.ignore, dtype=bool)
        in_crowd = crowd_mask(np.array(record.boxes).reshape(-1, 4), labels, crowd_iou).numpy() & ~flags_ignore
        crowd_images += bool(in_crowd.any())
        per_image.append(int((~flags_ignore).sum()))
        for label, is_difficult, is_ignore, is_crowd in zip(labels, record.difficult, flags_ignore, in_crowd):
            name = ds.classes[label - 1]
            if is_ignore:
                ignore[name] += 1
                continue
            per_class[name] += 1
            difficult[name] += is_difficult
            crowd[name] += bool(is_crowd)
    return {"images": len(ds.records), "boxes": per_class, "difficult": difficult, "ignore": ignore, "crowd": crowd,
            "crowd_images": crowd_images, "per_image": per_image, "problems": len(ds.problems)}


def format_stats(stats: dict, classes: tuple[str, ...]) -> str:
    lines = [f"images: {stats['images']}", "", f"{'class':16s} {'boxes':>8s} {'difficult':>10s} {'crowd':>8s} {'ignore':>8s}"]
    for name in classes:
        lines.append(f"{name:16s} {stats['boxes'][name]:8d} {stats['difficult'][name]:10d} "
                     f"{stats['crowd'][name]:8d} {stats['ignore'][name]:8d}")
    total, crowd = sum(stats["boxes"].values()), sum(stats["crowd"].values())
    lines.append(f"{'all':16s} {total:8d} {sum(stats['difficult'].values()):10d} {crowd:8d} "
                 f"{sum(stats['ignore'].values()):8d}")
    lines += ["", f"crowd boxes: {crowd} ({crowd / max(total, 1):.1%}) in {stats['crowd_images']} images", "",
              "boxes per image:"]
    counts = np.array(stats["per_image"] or [0])
    edges = [0, 1, 2, 3, 5, 10, 20, 50, 100, 10**9]
    for lo, hi in zip(edges[:-1], edges[1:]):
        n = int(((counts >= lo) & (counts < hi)).sum())
        label = f"{lo}" if hi == lo + 1 else (f"{lo}+" if hi == 10**9 else f"{lo}-{hi - 1}")
        lines.append(f"  {label:>7s} {n:7d} {'#' * round(40 * n / max(len(counts), 1))}")
    lines.append(f"  mean {counts.mean():.2f}, max {counts.max()}")
    if stats["problems"]:
        lines.append(f"\nskipped while loading: {stats['problems']} (see the warning above)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repssd.data.stats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["voc", "coco", "crowdhuman"])
    parser.add_argument("path", type=Path, help="VOC-layout folder, COCO json or .odgt file")
    parser.add_argument("--split", default="trainval", help="VOC image set")
    parser.add_argument("--images", type=Path, help="image folder (coco, crowdhuman)")
    parser.add_argument("--box", default="fbox", choices=["fbox", "vbox", "hbox"], help="CrowdHuman box kind")
    parser.add_argument("--crowd-iou", type=float, default=0.1)
    opts = parser.parse_args(argv)
    try:
        ds = open_dataset(opts.kind, opts.path, opts.split, opts.images, opts.box)
    except DatasetError as err:
        print(f"repssd.data.stats: {err}", file=sys.stderr)
        return 2
    print(format_stats(dataset_stats(ds, opts.crowd_iou), ds.classes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
