"""COCO-format detection datasets through pycocotools (boxes; with ``masks=True`` also instance masks)."""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ..inputs import InputError
from .base import DatasetError, DetectionDataset, Problem, Record
from .transforms import SSDTestTransform, SSDTrainTransform

__all__ = ["COCODetection", "load_coco", "decode_segmentation"]


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


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """bool [height, width] mask of a COCO ``segmentation``: polygons (a list of flat x, y lists),
    or RLE (``{"counts": [...] or "...", "size": [h, w]}``, as ``iscrowd`` objects have). Polygons
    of fewer than 3 points, RLE of another size and anything else decode to an empty mask."""
    empty = np.zeros((height, width), bool)
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
        if not polygons:
            return empty
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and list(segmentation.get("size", ())) == [height, width]:
        counts = segmentation.get("counts")
        rle = mask_utils.frPyObjects(segmentation, height, width) if isinstance(counts, list) else segmentation
    else:
        return empty
    with warnings.catch_warnings():  # pycocotools' decode under NumPy 2: a DeprecationWarning per call
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


@dataclass
class COCORecord(Record):
    """A :class:`Record` that also keeps each kept box's ``segmentation`` (decoded on load)."""

    segmentations: list = field(default_factory=list)


class COCODetection(DetectionDataset):
    """A COCO-format dataset: images listed in ``annotation_file`` under ``image_dir``.

    Category ids map to contiguous labels in id order (``self.category_ids[label - 1]`` maps
    back); ``iscrowd`` boxes are kept as ignore regions; images without annotations are kept
    with empty targets (negatives for training).

    ``masks=True`` adds ``target["masks"]``, bool ``[G, H, W]`` aligned with the boxes, decoded
    from each object's polygons or RLE with pycocotools (:func:`decode_segmentation`) when an
    image is loaded; ``iscrowd`` regions get their RLE mask too (they stay ignore regions). As
    for PennFudanPed, repssd's SSD transforms (which do not move masks) are refused with it.
    """

    def __init__(self, annotation_file: str | Path, image_dir: str | Path, transform: Callable | None = None,
                 strict: bool = False, masks: bool = False) -> None:
        if masks and isinstance(transform, (SSDTrainTransform, SSDTestTransform)):
            raise ValueError(f"{type(transform).__name__} does not move target['masks']: use masks=False with it")
        super().__init__(transform, strict)
        self.masks = masks
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
        record = COCORecord(str(image_id), file, width, height)
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
                record.segmentations.append(ann.get("segmentation"))
        return record

    def load(self, index: int) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """Image and target of ``index``, untransformed; with ``masks=True`` also ``masks``."""
        image, target = super().load(index)
        if self.masks:
            record = self.records[index]
            if image.shape[:2] != (record.height, record.width):
                raise InputError(f"{record.file}: {image.shape[1]}x{image.shape[0]} pixels, but its annotations "
                                 f"(and masks) are for {record.width}x{record.height}")
            masks = np.zeros((len(record.segmentations), record.height, record.width), bool)
            for k, segmentation in enumerate(record.segmentations):
                masks[k] = decode_segmentation(segmentation, record.height, record.width)
            target["masks"] = torch.from_numpy(masks)
        return image, target
