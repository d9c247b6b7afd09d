"""PASCAL VOC and any folder in VOC layout (Annotations/, JPEGImages/, ImageSets/Main/)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as ET
from defusedxml import DefusedXmlException
from torch.utils.data import ConcatDataset

from .base import DatasetError, DetectionDataset, Problem, Record
from .classes import VOC_CLASSES

__all__ = ["VOCDetection", "voc0712", "read_classes"]


class VOCDetection(DetectionDataset):
    """VOC2007 / VOC2012, or a custom dataset in VOC layout.

    Args:
        root: folder holding ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/`` (e.g.
            ``VOCdevkit/VOC2007``).
        image_set: the list in ``ImageSets/Main/<image_set>.txt`` (``trainval``, ``test``, ...).
        classes: class names in label order (label k+1 for ``classes[k]``); default the 20 VOC
            classes. Objects of other classes are skipped and reported.
        keep_difficult: keep objects marked ``difficult`` (flagged in the target) or drop them.
        transform: ``transform(image, target)``, e.g. :class:`~repssd.data.transforms.SSDTrainTransform`.
        strict: raise :class:`DatasetError` on the first problem instead of skipping.

    Boxes are VOC's 1-based pixel values minus 1 (as ssd.pytorch and py-faster-rcnn do).
    """

    def __init__(self, root: str | Path, image_set: str = "trainval", classes: Sequence[str] | None = None,
                 keep_difficult: bool = True, transform: Callable | None = None, strict: bool = False) -> None:
        super().__init__(transform, strict)
        self.root = Path(root)
        self.image_set = image_set
        self.classes = tuple(classes) if classes is not None else VOC_CLASSES
        self.keep_difficult = keep_difficult
        self._label = {name: i + 1 for i, name in enumerate(self.classes)}
        self.records = [r for r in (self._read(i) for i in self._image_ids()) if r is not None]
        self._finish(f"VOCDetection({self.root}, {image_set!r})")

    def _image_ids(self) -> list[str]:
        for folder in ("Annotations", "JPEGImages"):
            if not (self.root / folder).is_dir():
                raise DatasetError(f"{self.root}: not a VOC-layout folder (no {folder}/ in it)")
        listing = self.root / "ImageSets" / "Main" / f"{self.image_set}.txt"
        if not listing.is_file():
            known = sorted(p.stem for p in (self.root / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
            raise DatasetError(f"{listing}: no such image set; this folder has: {', '.join(known) or 'none'}")
        return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]

    def _read(self, image_id: str) -> Record | None:
        path = self.root / "Annotations" / f"{image_id}.xml"
        try:
            tree = ET.parse(path)
        except FileNotFoundError:
            self.checker.report(Problem(str(path), "annotation file is missing", skipped="image"))
            return None
        except (ParseError, DefusedXmlException) as err:
            self.checker.report(Problem(str(path), f"malformed XML ({type(err).__name__}: {err})", skipped="image"))
            return None
        root = tree.getroot()
        # VOC names images by id; custom folders may use another extension or <filename>
        candidates = [self.root / "JPEGImages" / f"{image_id}{suffix}" for suffix in (".jpg", ".png", ".jpeg")]
        if _text(root, "filename"):
            candidates.append(self.root / "JPEGImages" / _text(root, "filename").strip())
        image_file = next((c for c in candidates if c.is_file()), None)
        if image_file is None:
            self.checker.report(Problem(str(candidates[0]), "image file is missing", skipped="image"))
            return None
        try:
            width, height = int(float(_text(root, "size/width"))), int(float(_text(root, "size/height")))
        except (TypeError, ValueError):
            self.checker.report(Problem(str(path), "no valid <size> (width, height)", skipped="image"))
            return None
        record = Record(image_id, image_file, width, height)
        for k, obj in enumerate(root.iter("object")):
            self._add_object(record, obj, k, str(path))
        return record

    def _add_object(self, record: Record, obj: Element, k: int, path: str) -> None:
        name = (_text(obj, "name") or "").strip()
        item = f"object {k} ({name or 'unnamed'})"
        if name not in self._label:
            self.checker.report(Problem(path, f"unknown class {name!r}; classes: {', '.join(self.classes)}", item))
            return
        difficult = (_text(obj, "difficult") or "0").strip() == "1"
        if difficult and not self.keep_difficult:
            return
        coords = [_text(obj, f"bndbox/{tag}") for tag in ("xmin", "ymin", "xmax", "ymax")]
        try:
            box = [float(v) - 1 for v in coords]  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.checker.report(Problem(path, f"bndbox {coords} is not 4 numbers", item))
            return
        checked = self.checker.box(box, record.width, record.height, path, item)
        if checked is not None:
            record.add(checked, self._label[name], difficult)


def _text(node: Element, path: str) -> str | None:
    found = node.find(path)
    return found.text if found is not None and found.text is not None else None


def voc0712(root: str | Path, image_sets: Sequence[tuple[str, str]] = (("2007", "trainval"), ("2012", "trainval")),
            **options) -> ConcatDataset:
    """VOC07+12 trainval (the SSD paper's training set) from a ``VOCdevkit`` folder."""
    root = Path(root)
    return ConcatDataset([VOCDetection(root / f"VOC{year}", image_set, **options) for year, image_set in image_sets])


def read_classes(root: str | Path) -> tuple[str, ...]:
    """The class list of a custom VOC-layout folder: ``root/classes.txt``, one name per line."""
    path = Path(root) / "classes.txt"
    if not path.is_file():
        raise DatasetError(f"{path}: missing; a custom VOC-layout dataset lists its classes there, one per line")
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not names or len(set(names)) != len(names):
        raise DatasetError(f"{path}: needs at least one class and no repeated names")
    return names
