"""Datasets by kind and root, as the CLIs name them (``--dataset KIND --data-root DIR --split S``)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from .base import DatasetError
from .coco import COCODetection
from .crowdhuman import CrowdHumanDetection
from .pennfudan import PennFudanDetection
from .voc import VOCDetection, read_classes, voc0712

__all__ = ["DATASET_KINDS", "open_dataset", "class_names"]

DATASET_KINDS = {
    "voc": "a VOC-layout folder, e.g. VOCdevkit/VOC2007 (the 20 VOC classes, or those in classes.txt)",
    "voc0712": "a VOCdevkit folder: VOC2007 + VOC2012 image sets concatenated",
    "synthetic": "a folder written by python -m repssd.data.synthetic (VOC layout + classes.txt)",
    "folder": "any VOC-layout folder with its own classes.txt",
    "coco": "a COCO folder: annotations/instances_<split>.json and <split>/ images",
    "crowdhuman": "a CrowdHuman folder: annotation_<split>.odgt and Images/",
    "pennfudan": "a PennFudanPed folder: Annotation/, PNGImages/, PedMasks/ (split all/train/val/test or <split>.txt)",
}


def open_dataset(kind: str, root: str | Path, split: str, transform: Callable | None = None,
                 strict: bool = False, **options) -> Dataset:
    """The dataset of ``kind`` at ``root`` (see :data:`DATASET_KINDS`), split ``split``."""
    root = Path(root)
    if kind not in DATASET_KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; known: {', '.join(DATASET_KINDS)}")
    if not root.is_dir():
        raise DatasetError(f"{root}: data root does not exist")
    if kind in ("voc", "synthetic", "folder"):
        classes = read_classes(root) if kind != "voc" or (root / "classes.txt").is_file() else None
        return VOCDetection(root, split, classes=classes, transform=transform, strict=strict, **options)
    if kind == "voc0712":
        sets = [("2007", split), ("2012", split)] if split != "test" else [("2007", "test")]
        return voc0712(root, sets, transform=transform, strict=strict, **options)
    if kind == "coco":
        return COCODetection(root / "annotations" / f"instances_{split}.json", root / split, transform, strict)
    if kind == "pennfudan":
        return PennFudanDetection(root, split, transform, strict, **options)
    return CrowdHumanDetection(root / f"annotation_{split}.odgt", root / "Images", transform=transform, strict=strict,
                               **options)


def class_names(dataset: Dataset) -> tuple[str, ...]:
    """Class names of a dataset or of the first part of a concatenation."""
    return class_names(dataset.datasets[0]) if isinstance(dataset, ConcatDataset) else tuple(dataset.classes)
