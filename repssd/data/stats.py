"""Dataset statistics: ``python -m repssd.data.stats KIND ROOT [--split S]`` for every kind
:mod:`repssd.data.factory` opens.

    python -m repssd.data.stats voc VOCdevkit/VOC2007 --split test
    python -m repssd.data.stats citypersons $DATA/cityscapes --split val
    python -m repssd.data.stats mot $DATA/MOT17/train --frame-stride 10
    python -m repssd.data.stats widerperson $DATA/WiderPerson --split val
    python -m repssd.data.stats coco annotations/instances_val2017.json --images val2017      # a file + its images
    python -m repssd.data.stats crowdhuman annotation_val.odgt --images Images [--box vbox]
    python -m repssd.data.stats pennfudan data/PennFudanPed --split train --copy-paste per_image=2-6 [--samples N]

Prints the number of images, boxes per class (difficult and ignore counted apart), crowd boxes
(IoU > 0.1 with another box of the same class, the Repulsion Loss paper's subset) and images
containing one, the boxes-per-image histogram, and the problems the loader skipped. Then the
crowd statistics the literature compares datasets by (CrowdHuman paper, Shao et al. 2018,
Tables 2 and 4 and Sec. 3.3), next to its published figures: persons per image, same-class pairs
per image with IoU > 0.3 / 0.5, and (datasets whose targets carry ``visibility``: CityPersons,
MOT, CrowdHuman) the share of persons that are bare (occlusion <= 30%), partial (30-70%) and
heavy (> 70%), with the visibility histogram. With ``--copy-paste OPTIONS`` the statistics are those of
``--samples`` images of the split (drawn with ``--seed``) after :class:`~repssd.data.copypaste.CrowdCopyPaste`
with those options, its person bank cut from the same split.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ..boxes import box_iou, crowd_mask
from ..inputs import InputError
from .base import DatasetError, DetectionDataset, Record
from .coco import COCODetection
from .copypaste import CrowdCopyPaste, PersonBank, parse_copy_paste
from .crowdhuman import CrowdHumanDetection
from .factory import DATASET_KINDS, parse_data_options
from .factory import open_dataset as factory_open

__all__ = ["dataset_stats", "format_stats", "open_dataset", "copy_paste_sample", "PUBLISHED"]

# CrowdHuman paper (arXiv 1805.00123), training subsets: persons/image (Table 2), pairs/image with
# IoU > 0.3 and > 0.5 (Table 4), bare / partial occlusion shares (Sec. 3.3; heavy = the rest).
PUBLISHED = {
    "CityPersons": {"persons": 6.47, "pairs_03": 0.96, "pairs_05": 0.32, "bare": 0.4679, "partial": 0.2419},
    "COCOPersons": {"persons": 4.01, "pairs_03": 0.13, "pairs_05": 0.02},
    "CrowdHuman": {"persons": 22.64, "pairs_03": 9.02, "pairs_05": 2.40, "bare": 0.2989, "partial": 0.3213},
}


def open_dataset(kind: str, path: Path, split: str | None = None, images: Path | None = None,
                 box: str = "fbox", **options) -> DetectionDataset:
    """``kind`` at data root ``path`` through the factory; coco and crowdhuman also take an
    annotation file as ``path`` with its image folder as ``images``."""
    if kind in ("coco", "crowdhuman") and path.is_file():
        if images is None:
            raise DatasetError(f"{kind} needs --images, the folder of its image files")
        masks = {"masks": True} if options.get("masks") else {}  # --copy-paste; other options are the factory's
        return COCODetection(path, images, **masks) if kind == "coco" else CrowdHumanDetection(path, images, box=box,
                                                                                               **masks)
    if kind == "crowdhuman":
        options["box"] = box
    return factory_open(kind, path, split or DATASET_KINDS[kind].default_split, **options)


def copy_paste_sample(ds: DetectionDataset, options: str, samples: int | None = None, seed: int = 0):
    """``samples`` images of ``ds`` (opened with ``masks=True``; default: as many as it has) drawn
    with ``seed``, each after :class:`CrowdCopyPaste` with ``options`` and a bank cut from ``ds``:
    an object with the ``records``, ``classes`` and ``problems`` :func:`dataset_stats` reads."""
    paste = CrowdCopyPaste(PersonBank.from_dataset(ds), label=ds.classes.index("person") + 1,
                           **parse_copy_paste(options))
    order, records = np.random.default_rng(seed).permutation(len(ds)), []
    for n in range(len(ds) if samples is None else samples):
        record = ds.records[order[n % len(ds)]]
        torch.manual_seed(seed * 1_000_003 + n)
        try:
            _, target = paste(*ds.load(int(order[n % len(ds)])))
        except InputError:
            continue
        records.append(Record(record.id, record.file, record.width, record.height,
                              *(target[k].tolist() for k in ("boxes", "labels", "difficult", "ignore", "visible",
                                                              "visibility"))))
    return SimpleNamespace(records=records, classes=ds.classes, problems=ds.problems)


def dataset_stats(ds: DetectionDataset, crowd_iou: float = 0.1) -> dict:
    """Counts over the annotations (no image is decoded)."""
    per_class, difficult, ignore, crowd = Counter(), Counter(), Counter(), Counter()
    crowd_images, per_image, persons, pairs, visibility = 0, [], [], {0.3: 0, 0.5: 0}, []
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
        if record.visibility is not None:
            visibility += [v for v, m in zip(record.visibility, mine.tolist()) if m]
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
    seen = np.array(visibility, dtype=np.float64)
    occlusion = {"bare": float((seen >= 0.7).mean()), "partial": float(((seen >= 0.3) & (seen < 0.7)).mean()),
                 "histogram": np.histogram(seen, bins=10, range=(0, 1))[0].tolist()} if len(seen) else None
    return {"occlusion": occlusion, "images": len(ds.records), "boxes": per_class, "difficult": difficult, "ignore": ignore, "crowd": crowd,
            "crowd_images": crowd_images, "per_image": per_image, "problems": len(ds.problems),
            "persons_per_image": sum(persons) / images, "pairs_03": pairs[0.3] / images, "pairs_05": pairs[0.5] / images}


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
    if occlusion:
        lines += ["", "visibility of the persons (visible fraction; bare >= 0.7, heavy < 0.3):"]
        total = max(sum(occlusion["histogram"]), 1)
        for k, n in enumerate(occlusion["histogram"]):
            lines.append(f"  {k / 10:.1f}-{(k + 1) / 10:.1f} {n:7d} {'#' * round(40 * n / total)}")
    if stats["problems"]:
        lines.append(f"\nskipped while loading: {stats['problems']} (see the warning above)")
    return "\n".join(lines)


def _open(opts: argparse.Namespace, options: dict):
    """The dataset of the command line; with --copy-paste, its sample after copy-paste."""
    if not opts.copy_paste:
        return open_dataset(opts.kind, opts.path, opts.split, opts.images, opts.box, **options)
    try:
        ds = open_dataset(opts.kind, opts.path, opts.split, opts.images, opts.box, masks=True, **options)
    except TypeError as err:
        if "masks" not in str(err):
            raise
        raise DatasetError(f"--copy-paste needs instance masks, which {opts.kind} does not give") from None
    try:
        return copy_paste_sample(ds, opts.copy_paste, opts.samples, opts.seed)
    except ValueError as err:  # DatasetError included
        raise DatasetError(f"--copy-paste: {err}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repssd.data.stats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=list(DATASET_KINDS))
    parser.add_argument("path", type=Path, help="data root (as train.py's --data-root); coco / crowdhuman: also "
                        "an annotation file with --images")
    parser.add_argument("--split", help="image set / split (default: the kind's usual one, e.g. trainval for voc)")
    parser.add_argument("--images", type=Path, help="image folder of a coco / crowdhuman annotation file")
    parser.add_argument("--box", default="fbox", choices=["fbox", "vbox", "hbox"], help="CrowdHuman box kind")
    parser.add_argument("--data-options", help="loader options, key=value,... (as train.py's)")
    parser.add_argument("--frame-stride", type=int, help="mot: every N-th frame")
    parser.add_argument("--crowd-iou", type=float, default=0.1)
    parser.add_argument("--copy-paste", help="statistics after crowd copy-paste with these options, key=value,... "
                        "(as train.py's --copy-paste; kinds with masks: pennfudan, coco)")
    parser.add_argument("--samples", type=int, help="--copy-paste: images to sample (default: as many as the split "
                        "has)")
    parser.add_argument("--seed", type=int, default=0, help="--copy-paste: seed of the sampling and pasting")
    opts = parser.parse_args(argv)
    try:
        options = parse_data_options(opts.kind, opts.data_options, frame_stride=opts.frame_stride)
        ds = _open(opts, options)
    except DatasetError as err:
        print(f"repssd.data.stats: {err}", file=sys.stderr)
        return 2
    stats = dataset_stats(ds, opts.crowd_iou)
    print(format_stats(stats, ds.classes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
