"""Datasets by kind and root, as the CLIs name them (``--dataset KIND --data-root DIR --split S``).

One table, :data:`DATASET_KINDS`, says for every kind how it opens, what ``--data-root`` holds,
how its classes map to repssd's labels, the metric its papers report, and the loader options
``--data-options key=value,...`` may set (``--frame-stride N`` is ``frame_stride=N``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from ..options import given_twice
from .base import DatasetError
from .citypersons import CityPersonsDetection
from .coco import COCODetection
from .crowdhuman import CrowdHumanDetection
from .mot import MOTDetection
from .pennfudan import PennFudanDetection
from .voc import VOCDetection, read_classes, voc0712
from .widerperson import WiderPersonDetection

__all__ = ["DATASET_KINDS", "DatasetKind", "open_dataset", "class_names", "parse_data_options", "TRAINING_ONLY"]

# options that shape what a model learns from, not what it is scored on: the test set goes without
# them (VOC keeps its difficult objects for the devkit's rule; CityPersons keeps the official GT)
TRAINING_ONLY = ("keep_difficult", "filter")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true/false")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace("+", " ").replace("/", " ").split())


def _filter(text: str) -> str | tuple[float, float] | None:
    """``reasonable``, ``none`` or ``MIN_HEIGHT/MIN_VISIBILITY`` (e.g. ``50/0.65``)."""
    if text.lower() in ("none", ""):
        return None
    if text.lower() == "reasonable":
        return "reasonable"
    height, visibility = text.split("/")
    return float(height), float(visibility)


@dataclass(frozen=True)
class DatasetKind:
    """How one kind of dataset opens: ``open(root, split, transform, strict, **options)`` (the
    pedestrian loaders' own constructors have this signature)."""

    open: Callable[..., Dataset]
    layout: str  # what --data-root holds
    classes: str  # how its classes become repssd labels
    metric: str  # what its papers report (eval.py --metric)
    options: Mapping[str, Callable[[str], object]] = field(default_factory=dict)  # loader option -> parser
    default_split: str = "trainval"  # what python -m repssd.data.stats reads without --split


def _voc(root: Path, split: str, transform, strict: bool, **options) -> Dataset:
    classes = read_classes(root) if (root / "classes.txt").is_file() else None
    return VOCDetection(root, split, classes=classes, transform=transform, strict=strict, **options)


def _folder(root: Path, split: str, transform, strict: bool, **options) -> Dataset:
    return VOCDetection(root, split, classes=read_classes(root), transform=transform, strict=strict, **options)


def _voc0712(root: Path, split: str, transform, strict: bool, **options) -> Dataset:
    sets = [("2007", split), ("2012", split)] if split != "test" else [("2007", "test")]
    return voc0712(root, sets, transform=transform, strict=strict, **options)


def _coco(root: Path, split: str, transform, strict: bool, **options) -> Dataset:
    return COCODetection(root / "annotations" / f"instances_{split}.json", root / split, transform, strict, **options)


def _crowdhuman(root: Path, split: str, transform, strict: bool, **options) -> Dataset:
    return CrowdHumanDetection(root / f"annotation_{split}.odgt", root / "Images", transform=transform,
                               strict=strict, **options)






_VOC_OPTIONS = {"keep_difficult": _bool}
DATASET_KINDS: dict[str, DatasetKind] = {
    "voc": DatasetKind(_voc, "a VOC-layout folder, e.g. VOCdevkit/VOC2007: Annotations/, JPEGImages/, "
                       "ImageSets/Main/<split>.txt", "the 20 VOC classes, or those in classes.txt", "voc07 / voc",
                       _VOC_OPTIONS),
    "voc0712": DatasetKind(_voc0712, "a VOCdevkit folder: VOC2007 + VOC2012 image sets concatenated (test: VOC2007)",
                           "the 20 VOC classes", "voc07", _VOC_OPTIONS),
    "synthetic": DatasetKind(_folder, "a folder written by python -m repssd.data.synthetic (VOC layout + "
                             "classes.txt)", "those in classes.txt (person, car)", "voc07 + crowd subset",
                             _VOC_OPTIONS),
    "folder": DatasetKind(_folder, "any VOC-layout folder with its own classes.txt", "those in classes.txt",
                          "voc07 / voc", _VOC_OPTIONS),
    "coco": DatasetKind(_coco, "a COCO folder: annotations/instances_<split>.json and <split>/ images",
                        "the 80 COCO categories; iscrowd as ignore", "coco", default_split="val2017"),
    "crowdhuman": DatasetKind(_crowdhuman, "a CrowdHuman folder: annotation_<split>.odgt and Images/",
                              "person; mask regions and extra.ignore as ignore", "crowdhuman",
                              {"box": str}, "val"),
    "pennfudan": DatasetKind(PennFudanDetection, "a PennFudanPed folder: Annotation/, PNGImages/, PedMasks/ (split "
                             "all/train/val/test or <split>.txt)", "person", "voc07", default_split="all"),
    "citypersons": DatasetKind(CityPersonsDetection, "a Cityscapes folder: leftImg8bit/<split>/<city>/ and CityPersons' "
                               "annotations/anno_<split>.mat (or gtBboxCityPersons/<split>/ JSON)",
                               "pedestrian as person; rider, sitting, other, group and ignore regions as ignore",
                               "citypersons", {"filter": _filter, "annotations": str, "check_images": _bool}, "train"),
    "mot": DatasetKind(MOTDetection, "a folder of MOTChallenge sequences, e.g. MOT17/train: <seq>/img1/, <seq>/gt/gt.txt, "
                       "<seq>/seqinfo.ini (split all or seq1,seq2,...)",
                       "pedestrian as person; pedestrian with flag 0, on vehicle, static, distractor, reflection, "
                       "crowd (MOT20: also non-motorized vehicle) as ignore; vehicles and occluders left out",
                       "citypersons / crowdhuman", {"frame_stride": int, "min_visibility": float}, "all"),
    "widerperson": DatasetKind(WiderPersonDetection, "a WiderPerson folder: Images/, Annotations/<id>.jpg.txt, "
                               "<split>.txt id lists", "pedestrian, rider, partially visible as person (option "
                               "person_classes); ignore regions and crowd as ignore", "crowdhuman",
                               {"person_classes": _ints}, "train"),
}


def parse_data_options(kind: str, text: str | None, training: bool = True, **given) -> dict:
    """Loader options of ``kind`` from ``key=value,...`` (parsed by the kind's table entry) and
    from ``given`` (values already typed, None = not given); :class:`DatasetError` names an
    option the kind does not have. ``training=False`` leaves out :data:`TRAINING_ONLY`."""
    if kind not in DATASET_KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; known: {', '.join(DATASET_KINDS)}")
    known = DATASET_KINDS[kind].options
    pairs = [item.split("=", 1) for item in (text or "").split(",") if item.strip()]
    options = {}
    for pair in pairs:
        if len(pair) != 2:
            raise DatasetError(f"--data-options: {'='.join(pair)!r} is not key=value")
        key, value = pair[0].strip().replace("-", "_"), pair[1].strip()
        if key in options:
            raise DatasetError(f"--data-options: {given_twice(key)}")
        if key not in known:
            raise DatasetError(f"--data-options: {kind} has no option {key!r}; its options: "
                               f"{', '.join(known) or 'none'}")
        try:
            options[key] = known[key](value)
        except ValueError as err:
            raise DatasetError(f"--data-options: {key}={value}: {err}") from None
    for key, value in given.items():
        if value is not None:
            if key not in known:
                raise DatasetError(f"--{key.replace('_', '-')} is for datasets that have it "
                                   f"({', '.join(k for k, d in DATASET_KINDS.items() if key in d.options)}), "
                                   f"not {kind}")
            options[key] = value
    return {key: value for key, value in options.items() if training or key not in TRAINING_ONLY}


def open_dataset(kind: str, root: str | Path, split: str, transform: Callable | None = None,
                 strict: bool = False, **options) -> Dataset:
    """The dataset of ``kind`` at ``root`` (see :data:`DATASET_KINDS`), split ``split``."""
    root = Path(root)
    if kind not in DATASET_KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; known: {', '.join(DATASET_KINDS)}")
    if not root.is_dir():
        raise DatasetError(f"{root}: data root does not exist")
    return DATASET_KINDS[kind].open(root, split, transform, strict, **options)


def class_names(dataset: Dataset) -> tuple[str, ...]:
    """Class names of a dataset or of the first part of a concatenation."""
    return class_names(dataset.datasets[0]) if isinstance(dataset, ConcatDataset) else tuple(dataset.classes)
