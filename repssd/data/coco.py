"""COCO-format detection datasets through pycocotools."""
from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path

from pycocotools.coco import COCO

from .base import DatasetError, DetectionDataset, Problem, Record

__all__ = ["COCODetection", "load_coco"]


def load_coco(annotation_file: str | Path) -> COCO:
    """A pycocotools ``COCO`` index of ``annotation_file``; :class:`DatasetError` naming the file
    if it is missing, not JSON, or not a COCO detection file."""
    path = Path(annotation_file)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such annotation file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("categories"), list):
        raise DatasetError(f"{path}: not a COCO detection file (needs 'images' and 'categories' lists)")
    coco = COCO()
    coco.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
    except (KeyError, TypeError) as err:
        raise DatasetError(f"{path}: malformed COCO entry ({type(err).__name__}: {err})") from None
    return coco


class COCODetection(DetectionDataset):
    """A COCO-format dataset: images listed in ``annotation_file`` under ``image_dir``.

    Category ids map to contiguous labels in id order (``self.category_ids[label - 1]`` maps
    back); ``iscrowd`` boxes are kept as ignore regions; images without annotations are kept
    with empty targets (negatives for training).
    """

    def __init__(self, annotation_file: str | Path, image_dir: str | Path, transform: Callable | None = None,
                 strict: bool = False) -> None:
        super().__init__(transform, strict)
        self.annotation_file, self.image_dir = Path(annotation_file), Path(image_dir)
        self.coco = load_coco(self.annotation_file)
        cats = sorted(self.coco.cats.values(), key=lambda c: c["id"])
        self.category_ids = tuple(c["id"] for c in cats)
        self.classes = tuple(c.get("name", str(c["id"])) for c in cats)
        self._label = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self.records = [r for r in (self._read(i) for i in sorted(self.coco.imgs)) if r is not None]
        for image_id in sorted(set(self.coco.imgToAnns) - set(self.coco.imgs), key=str):  # nowhere to put them
            for ann in self.coco.imgToAnns[image_id]:
                self.checker.report(Problem(f"{self.annotation_file} annotation {ann.get('id', '?')}",
                                            f"image_id {image_id!r} is not in 'images'"))
        self._finish(f"COCODetection({self.annotation_file})")

    def _read(self, image_id) -> Record | None:
        info = self.coco.imgs[image_id]
        where = f"{self.annotation_file} image {image_id}"
        file = self.image_dir / str(info.get("file_name", ""))
        if not info.get("file_name") or not file.is_file():
            self.checker.report(Problem(str(file), "image file is missing", skipped="image"))
            return None
        try:
            width, height = int(info["width"]), int(info["height"])
        except (KeyError, TypeError, ValueError):
            self.checker.report(Problem(where, "no valid width and height", skipped="image"))
            return None
        record = Record(str(image_id), file, width, height)
        for ann in self.coco.imgToAnns.get(image_id, []):
            item = f"annotation {ann.get('id')}"
            label = self._label.get(ann.get("category_id"))
            if label is None:
                self.checker.report(Problem(where, f"unknown category_id {ann.get('category_id')!r}", item))
                continue
            bbox = ann.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                self.checker.report(Problem(where, f"bbox {bbox!r} is not [x, y, w, h]", item))
                continue
            x, y, w, h = bbox
            box = self.checker.box([x, y, x + w, y + h] if all(isinstance(v, (int, float)) for v in bbox) else bbox,
                                   width, height, where, item)
            if box is not None:
                record.add(box, label, ignore=bool(ann.get("iscrowd", 0)))
        return record
