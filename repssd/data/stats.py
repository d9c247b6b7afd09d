"""Dataset statistics: ``python -m repssd.data.stats KIND PATH ...``.

    python -m repssd.data.stats voc VOCdevkit/VOC2007 --split test
    python -m repssd.data.stats voc data/synthetic --split train          # classes from classes.txt
    python -m repssd.data.stats coco annotations/instances_val2017.json --images val2017
    python -m repssd.data.stats crowdhuman annotation_val.odgt --images Images [--box vbox]

Prints the number of images, boxes per class (difficult and ignore counted apart), crowd boxes
(IoU > 0.1 with another box of the same class, the Repulsion Loss paper's subset) and images
containing one, the boxes-per-image histogram, and the problems the loader skipped. Then the
crowd statistics the literature compares datasets by (CrowdHuman paper, Shao et al. 2018,
Tables 2 and 4 and Sec. 3.3), next to its published figures: persons per image, same-class pairs
per image with IoU > 0.3 / 0.5, and (CrowdHuman files, which have visible boxes) the share of
persons that are bare (occlusion <= 30%), partial (30-70%) and heavy (> 70%).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..boxes import box_iou
from ..eval.crowd import crowd_mask
from .base import DatasetError, DetectionDataset
from .coco import COCODetection
from .crowdhuman import CrowdHumanDetection
from .factory import open_dataset as factory_open

__all__ = ["dataset_stats", "format_stats", "open_dataset", "visible_fractions", "PUBLISHED"]

# CrowdHuman paper (arXiv 1805.00123), training subsets: persons/image (Table 2), pairs/image with
# IoU > 0.3 and > 0.5 (Table 4), bare / partial occlusion shares (Sec. 3.3; heavy = the rest).
PUBLISHED = {
    "CityPersons": {"persons": 6.47, "pairs_03": 0.96, "pairs_05": 0.32, "bare": 0.4679, "partial": 0.2419},
    "COCOPersons": {"persons": 4.01, "pairs_03": 0.13, "pairs_05": 0.02},
    "CrowdHuman": {"persons": 22.64, "pairs_03": 9.02, "pairs_05": 2.40, "bare": 0.2989, "partial": 0.3213},
}


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
    crowd_images, per_image, persons, pairs = 0, [], [], {0.3: 0, 0.5: 0}
    person = ds.classes.index("person") + 1 if "person" in ds.classes else 1
    for record in ds.records:
        labels = np.array(record.labels, dtype=np.int64)
        flags_ignore = np.array(record.ignore, dtype=bool)
        boxes = torch.as_tensor(np.array(record.boxes, dtype=np.float64).reshape(-1, 4))
        in_crowd = crowd_mask(boxes, labels, crowd_iou).numpy() & ~flags_ignore
        crowd_images += bool(in_crowd.any())
        per_image.append(int((~flags_ignore).sum()))
        mine = torch.as_tensor((labels == person) & ~flags_ignore)
        persons.append(int(mine.sum()))
        iou = box_iou(boxes[mine], boxes[mine]).triu(1)  # [n,n], each unordered pair once
        for threshold in pairs:
            pairs[threshold] += int((iou > threshold).sum())
        for label, is_difficult, is_ignore, is_crowd in zip(labels, record.difficult, flags_ignore, in_crowd):
            name = ds.classes[label - 1]
            if is_ignore:
                ignore[name] += 1
                continue
            per_class[name] += 1
            difficult[name] += is_difficult
            crowd[name] += bool(is_crowd)
    images = max(len(ds.records), 1)
    return {"images": len(ds.records), "boxes": per_class, "difficult": difficult, "ignore": ignore, "crowd": crowd,
            "crowd_images": crowd_images, "per_image": per_image, "problems": len(ds.problems),
            "persons_per_image": sum(persons) / images, "pairs_03": pairs[0.3] / images, "pairs_05": pairs[0.5] / images}


def visible_fractions(odgt_file: Path) -> np.ndarray:
    """Visible fraction ``|vbox ∩ fbox| / |fbox|`` of every person in a CrowdHuman ``.odgt`` file
    that has both boxes (lines or boxes the loader would skip are left out here too)."""
    fractions = []
    for line in Path(odgt_file).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            boxes = json.loads(line).get("gtboxes", [])
        except (json.JSONDecodeError, AttributeError):
            continue
        for obj in boxes if isinstance(boxes, list) else []:
            if not isinstance(obj, dict) or obj.get("tag") != "person" or (obj.get("extra") or {}).get("ignore"):
                continue
            f, v = obj.get("fbox"), obj.get("vbox")
            if not all(isinstance(b, list) and len(b) == 4 and all(isinstance(x, (int, float)) for x in b) for b in (f, v)):
                continue
            if f[2] <= 0 or f[3] <= 0:
                continue
            w = max(0.0, min(f[0] + f[2], v[0] + v[2]) - max(f[0], v[0]))
            h = max(0.0, min(f[1] + f[3], v[1] + v[3]) - max(f[1], v[1]))
            fractions.append(w * h / (f[2] * f[3]))
    return np.array(fractions)


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
    lines += ["", "crowd statistics (CrowdHuman paper's definitions; published figures are training sets):",
              f"  {'':14s} {'persons/img':>11s} {'pairs>0.3':>10s} {'pairs>0.5':>10s} {'bare':>7s} {'partial':>8s} "
              f"{'heavy':>7s}"]
    occlusion = stats.get("occlusion")
    rows = [("this set", {"persons": stats["persons_per_image"], "pairs_03": stats["pairs_03"],
                          "pairs_05": stats["pairs_05"], **(occlusion or {})})] + list(PUBLISHED.items())
    for name, row in rows:
        shares = [f"{row[k]:7.1%}" if k in row else f"{'-':>7s}" for k in ("bare", "partial")]
        heavy = f"{1 - row['bare'] - row['partial']:7.1%}" if "bare" in row else f"{'-':>7s}"
        lines.append(f"  {name:14s} {row['persons']:11.2f} {row['pairs_03']:10.2f} {row['pairs_05']:10.2f} "
                     f"{shares[0]} {shares[1]:>8s} {heavy}")
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
    stats = dataset_stats(ds, opts.crowd_iou)
    if opts.kind == "crowdhuman":
        visible = visible_fractions(opts.path)
        if len(visible):
            stats["occlusion"] = {"bare": float((visible >= 0.7).mean()),
                                  "partial": float(((visible >= 0.3) & (visible < 0.7)).mean())}
    print(format_stats(stats, ds.classes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
