"""WiderPerson (Zhang et al., IEEE TMM 2019): dense pedestrians in the wild, 13,382 images.

Layout (the published archive)::

    Images/<id>.jpg
    Annotations/<id>.jpg.txt     train and val only; the test annotations are not published
    train.txt, val.txt, test.txt one <id> per line (8000 / 1000 / 4382 ids)

An annotation file holds the number N of boxes, then N lines ``class x1 y1 x2 y2``::

    3
    1 105 76 168 228
    3 240 90 277 171
    4 10 10 50 60

Classes (ReadMe.txt): 1 pedestrians, 2 riders, 3 partially-visible persons, 4 ignore regions,
5 crowd. The ReadMe does not say where pixels start; the official evaluation
(``Evaluation/boxoverlap.m``, from voc-release) takes x2, y2 as the last pixel inside the box
(widths ``x2 - x1 + 1``), and the public converters (OpenVINO training_extensions'
``convert_widerperson.py``, WiderPerson2COCO) read the numbers as 0-based. So the boxes are used
as they are: 0-based pixel xyxy, the convention repssd's VOC boxes have after VOC's minus 1.
"""
from __future__ import annotations

import codecs
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image

from .base import DatasetError, DetectionDataset, Problem, Record

__all__ = ["WiderPersonDetection", "WIDERPERSON_CLASSES"]

WIDERPERSON_CLASSES = {1: "pedestrian", 2: "rider", 3: "partially-visible person", 4: "ignore region", 5: "crowd"}


class WiderPersonDetection(DetectionDataset):
    """WiderPerson with one class, ``person`` (label 1).

    Args:
        root: the ``WiderPerson`` folder (``Images/``, ``Annotations/``, ``<split>.txt``).
        split: ``train`` or ``val`` (or any ``<root>/<split>.txt`` of ids).
        transform: ``transform(image, target)``.
        strict: raise :class:`DatasetError` on the first problem instead of skipping.
        person_classes: which of 1 (pedestrians), 2 (riders) and 3 (partially-visible persons)
            are people; the others of 1-3 become ignore regions, as 4 (ignore regions) and
            5 (crowd) always are.

    The count line is checked against the box lines; a file that disagrees keeps the boxes it
    has. Image sizes come from the image headers.
    """

    classes = ("person",)

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 strict: bool = False, person_classes: Iterable[int] = (1, 2, 3)) -> None:
        self.person_classes = tuple(sorted(set(person_classes)))
        if not self.person_classes or not set(self.person_classes) <= {1, 2, 3}:
            raise ValueError(f"person_classes must be some of 1, 2, 3, got {person_classes!r}")
        super().__init__(transform, strict)
        self.root, self.split = Path(root), split
        for folder in ("Images", "Annotations"):
            if not (self.root / folder).is_dir():
                raise DatasetError(f"{self.root}: not a WiderPerson folder (no {folder}/ in it)")
        ids = self._image_ids()
        annotations, images = _listing(self.root / "Annotations"), _listing(self.root / "Images")
        if ids and not any(f"{i}.jpg.txt" in annotations for i in ids):
            raise DatasetError(f"{self.root / 'Annotations'}: none of the {len(ids)} images in {split}.txt has an "
                               "annotation file (WiderPerson publishes none for its test split)")
        self.records = [r for r in (self._read(i, annotations, images) for i in ids) if r is not None]
        self._finish(f"WiderPersonDetection({self.root}, {split!r})")

    def _image_ids(self) -> list[str]:
        listing = self.root / f"{self.split}.txt"
        if not listing.is_file():
            known = sorted(p.stem for p in self.root.glob("*.txt") if p.stem.lower() != "readme")
            raise DatasetError(f"{listing}: no such split file; this folder has: {', '.join(known) or 'none'}")
        return [line.strip() for line in listing.read_text().splitlines() if line.strip()]

    def _read(self, image_id: str, annotations: set[str], images: set[str]) -> Record | None:
        path = self.root / "Annotations" / f"{image_id}.jpg.txt"
        file = self.root / "Images" / f"{image_id}.jpg"
        if path.name not in annotations:
            self.checker.report(Problem(str(path), "annotation file is missing", skipped="image"))
            return None
        if file.name not in images:
            self.checker.report(Problem(str(file), "image file is missing", skipped="image"))
            return None
        try:
            lines = _decode(path.read_bytes()).splitlines()
        except (OSError, UnicodeDecodeError) as err:
            self.checker.report(Problem(str(path), f"unreadable annotation ({type(err).__name__}: {err})",
                                        skipped="image"))
            return None
        if not any(line.strip() for line in lines):
            self.checker.report(Problem(str(path), "empty annotation file (no box count)", skipped="image"))
            return None
        try:
            with Image.open(file) as image:  # reads the header only
                width, height = image.size
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            self.checker.report(Problem(str(file), f"unreadable image ({err})", skipped="image"))
            return None
        record = Record(image_id, file, width, height)
        self._add_objects(record, lines, path)
        return record

    def _add_objects(self, record: Record, lines: list[str], path: Path) -> None:
        """The box lines into ``record``; the count on line 1 is checked against them."""
        first = lines[0].split()
        count = int(first[0]) if len(first) == 1 and first[0].isdigit() else None
        if count is None:
            self.checker.report(Problem(f"{path}:1", f"first line {lines[0].strip()!r} is not the number of boxes"))
        start = 1 if count is None and len(first) == 5 else 2  # a box line in place of the count is still read
        box_lines = [(n, line) for n, line in enumerate(lines[start - 1:], start) if line.strip()]
        for n, line in box_lines:
            self._add_box(record, line, f"{path}:{n}")
        if count is not None and count != len(box_lines):
            # the official evaluation (evaluation.m) reshapes the file by its count: there it would misread
            self.checker.report(Problem(f"{path}:1", f"says {count} boxes but has {len(box_lines)} box lines; "
                                        "the image keeps the boxes it has"))

    def _add_box(self, record: Record, line: str, where: str) -> None:
        fields = line.split()
        try:
            if len(fields) != 5:
                raise ValueError
            cls, coords = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            self.checker.report(Problem(where, f"malformed box line {line.strip()!r}, not 'class x1 y1 x2 y2'"))
            return
        if cls not in WIDERPERSON_CLASSES:
            self.checker.report(Problem(where, f"unknown class {cls}; WiderPerson classes are 1-5"))
            return
        box = self.checker.box(coords, record.width, record.height, where, f"class {cls} ({WIDERPERSON_CLASSES[cls]})")
        if box is not None:
            record.add(box, 1, ignore=cls not in self.person_classes)


def _listing(folder: Path) -> set[str]:
    """File names in ``folder``: one directory read instead of a stat per image."""
    with os.scandir(folder) as entries:
        return {entry.name for entry in entries}


def _decode(data: bytes) -> str:
    """Annotation text; a few converters guess each file's charset, so a BOM (UTF-8 or UTF-16) is honoured."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")
