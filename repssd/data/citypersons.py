"""CityPersons: person boxes on Cityscapes images (Zhang, Benenson, Schiele, CVPR 2017).

Layout under ``root``: Cityscapes' ``leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png``
and either the published ``annotations/anno_<split>.mat`` or Cityscapes' per-image
``gtBboxCityPersons/<split>/<city>/<city>_<seq>_<frame>_gtBboxCityPersons.json`` (read when no
.mat exists).

The .mat holds one variable, ``anno_<split>_aligned``: a 1xN cell array of structs with
``cityname``, ``im_name`` and ``bbs``, one row per object::

    [class_label, x1, y1, w, h, instance_id, x1_vis, y1_vis, w_vis, h_vis]

class_label: 0 ignore region (people on posters, reflections), 1 pedestrian, 2 rider, 3 sitting
person, 4 other person (unusual posture), 5 person group. The JSON files say the same as
``{"imgHeight", "imgWidth", "objects": [{"label", "bbox": [x, y, w, h], "bboxVis": [x, y, w, h],
"instanceId"}]}`` with the labels of cityscapesScripts' ``labels_cityPersons.py``.

Boxes: ``[x, y, w, h]`` becomes xyxy ``[x, y, x + w, y + h]`` with no 1-pixel shift, as the
official evaluation (``eval_MR_multisetup.py``: ``gx2 = gt[0] + gt[2]``) and cityscapesScripts
read them; its ``val_gt.json`` holds the .mat's numbers unchanged. Full-body boxes are kept as
annotated, not clipped to the image (60 of val's 5795 reach past its left or right edge), because
the official evaluation matches against them so; the SSD transforms clip them for training.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from .base import DatasetError, DetectionDataset, Problem, Record

__all__ = ["CityPersonsDetection", "CITYPERSONS_CLASSES", "JSON_LABELS", "REASONABLE"]

CITYPERSONS_CLASSES = ("ignore region", "pedestrian", "rider", "sitting person", "other person", "person group")
JSON_LABELS = {"ignore": 0, "pedestrian": 1, "rider": 2, "sitting person": 3, "person (other)": 4,
               "person group": 5}
REASONABLE = (50.0, 0.65)  # the 'Reasonable' setting: full-body height >= 50 px, visibility >= 0.65
IMAGE_SIZE = (2048, 1024)  # (width, height) of every Cityscapes image
_COLUMNS = 10


@dataclass
class CityPersonsRecord(Record):
    """A :class:`Record` that also keeps each box's CityPersons class (0-5, see the module doc)."""

    classes: list[int] = field(default_factory=list)


class CityPersonsDetection(DetectionDataset):
    """CityPersons: one class, ``person`` (label 1).

    Pedestrians (class 1) are people; every other class is kept as an ignore region (label 1,
    ``ignore=True``), as the official ``val_gt.json`` does. ``boxes`` are as annotated (see the
    module doc: not clipped to the image). Targets add ``visible`` (the visible
    part, xyxy, clipped to the image; the full box where the file has none, e.g. person groups)
    and ``visibility`` = w_vis * h_vis / (w * h), the official ``vis_ratio`` (0 without a visible box).

    Args:
        root: the Cityscapes folder (``leftImg8bit/`` and ``annotations/`` or ``gtBboxCityPersons/``).
        split: ``"train"`` or ``"val"`` (any name with its files).
        transform: ``transform(image, target)``.
        strict: raise :class:`DatasetError` on the first problem instead of skipping.
        filter: which pedestrians train as people. None: all; ``"reasonable"``: height >= 50 and
            visibility >= 0.65 (:data:`REASONABLE`); ``(min_height, min_visibility)``: likewise.
            The pedestrians it rejects become ignore regions, as the evaluation treats them.
        annotations: another .mat to read instead of ``annotations/anno_<split>.mat``.
        check_images: read each image's header at construction (about 0.2 ms an image): a missing
            or unreadable image is a problem and skipped, and sizes come from the pixels. False
            skips this (sizes: 2048x1024, or the JSON's), e.g. to study annotations without images.
    """

    classes = ("person",)

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 strict: bool = False, filter: str | Sequence[float] | None = None,
                 annotations: str | Path | None = None, check_images: bool = True) -> None:
        super().__init__(transform, strict)
        self.root, self.split, self.check_images = Path(root), split, check_images
        self.min_height, self.min_visibility = _thresholds(filter)
        self.image_dir = self.root / "leftImg8bit" / split
        mat = Path(annotations) if annotations is not None else self.root / "annotations" / f"anno_{split}.mat"
        json_dir = self.root / "gtBboxCityPersons" / split
        if annotations is not None or mat.is_file():
            self.source = mat
            records = self._read_mat(mat)
        elif json_dir.is_dir():
            self.source = json_dir
            records = [self._read_json(path) for path in sorted(json_dir.glob("*/*_gtBboxCityPersons.json"))]
        else:
            raise DatasetError(f"{self.root}: no CityPersons annotations for split {split!r}: neither {mat} "
                               f"nor {json_dir}/<city>/*_gtBboxCityPersons.json")
        self.records = [r for r in records if r is not None]
        self._finish(f"CityPersonsDetection({self.source})")

    def _read_mat(self, path: Path) -> list[CityPersonsRecord | None]:
        if not path.is_file():
            raise DatasetError(f"{path}: no such annotation file")
        try:
            # squeeze_me: strings come out as str and 1x1 wrappers vanish; struct_as_record=False:
            # cells are objects with .cityname / .im_name / .bbs attributes
            content = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
        except Exception as err:  # scipy raises a zoo (ValueError, TypeError, MatReadError, ...) on non-.mat bytes
            raise DatasetError(f"{path}: not a readable MATLAB .mat file ({type(err).__name__}: {err})") from None
        names = [k for k in content if not k.startswith("__")]
        name = f"anno_{self.split}_aligned"
        if name not in content:
            if len(names) != 1:
                raise DatasetError(f"{path}: no variable {name!r} (it holds {', '.join(names) or 'no variables'})")
            name = names[0]
        cells = np.atleast_1d(np.asarray(content[name], dtype=object)).ravel()
        seen: set[str] = set()
        return [self._read_cell(path, k, cell, seen) for k, cell in enumerate(cells, 1)]

    def _read_cell(self, path: Path, k: int, cell, seen: set[str]) -> CityPersonsRecord | None:
        """One image of the .mat (``k``: its 1-based cell number)."""
        city, im_name = getattr(cell, "cityname", None), getattr(cell, "im_name", None)
        if not isinstance(city, str) or not isinstance(im_name, str) or not hasattr(cell, "bbs"):
            self.checker.report(Problem(str(path), "not a struct with cityname, im_name (text) and bbs",
                                        f"cell {k}", skipped="image"))
            return None
        if im_name in seen:
            self.checker.report(Problem(str(path), "second entry for this image", im_name, skipped="image"))
            return None
        seen.add(im_name)
        try:
            bbs = np.asarray(cell.bbs, dtype=np.float64)
        except (TypeError, ValueError):
            bbs = None
        if bbs is not None and bbs.size == 0:  # images without people hold an empty 0x0 matrix
            bbs = np.zeros((0, _COLUMNS))
        elif bbs is not None:
            bbs = np.atleast_2d(bbs)  # squeeze_me turns a single row into a vector
        if bbs is None or bbs.ndim != 2 or bbs.shape[1] != _COLUMNS:
            shape = type(cell.bbs).__name__ if bbs is None else "x".join(map(str, bbs.shape)) + " matrix"
            self.checker.report(Problem(str(path), f"bbs is a {shape}, not an Nx{_COLUMNS} matrix of numbers "
                                        "[class, x1, y1, w, h, id, x1_vis, y1_vis, w_vis, h_vis]",
                                        im_name, skipped="image"))
            return None
        record = self._record(city, im_name)
        if record is not None:
            for n, row in enumerate(bbs, 1):
                self._add(record, row, str(path), f"{im_name} row {n}")
        return record

    def _read_json(self, path: Path) -> CityPersonsRecord | None:
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
            objects = content["objects"]
            size = (int(content.get("imgWidth", IMAGE_SIZE[0])), int(content.get("imgHeight", IMAGE_SIZE[1])))
            if not isinstance(objects, list):
                raise TypeError(f"objects is a {type(objects).__name__}, not a list")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError,
                AttributeError) as err:
            self.checker.report(Problem(str(path), f"malformed gtBboxCityPersons JSON ({type(err).__name__}: {err})",
                                        skipped="image"))
            return None
        stem = path.name.removesuffix("_gtBboxCityPersons.json")
        record = self._record(path.parent.name, f"{stem}_leftImg8bit.png", size)
        if record is None:
            return None
        for n, obj in enumerate(objects, 1):
            label = obj.get("label") if isinstance(obj, dict) else None
            item = f"object {n} ({label})"
            if label not in JSON_LABELS:
                self.checker.report(Problem(str(path), f"unknown label {label!r}; known: {', '.join(JSON_LABELS)}",
                                            item))
                continue
            try:
                row = np.array([JSON_LABELS[label], *obj["bbox"], 0, *obj.get("bboxVis", [0, 0, 0, 0])], dtype=float)
            except (KeyError, TypeError, ValueError):
                row = np.zeros(0)
            if row.shape != (_COLUMNS,):
                self.checker.report(Problem(str(path), "bbox / bboxVis are not [x, y, w, h]", item))
            else:
                self._add(record, row, str(path), item)
        return record

    def _record(self, city: str, im_name: str, size: tuple[int, int] = IMAGE_SIZE) -> CityPersonsRecord | None:
        """An empty record for ``leftImg8bit/<split>/<city>/<im_name>``; None (reported) when
        ``check_images`` finds the image missing or unreadable."""
        file = self.image_dir / city / im_name
        if self.check_images:
            try:
                with Image.open(file) as image:  # reads the header only
                    size = image.size
            except (OSError, ValueError, Image.DecompressionBombError) as err:
                reason = "image file is missing" if not file.exists() else f"unreadable image ({err})"
                self.checker.report(Problem(str(file), reason, skipped="image"))
                return None
        image_id = im_name.removesuffix(".png").removesuffix("_leftImg8bit")
        return CityPersonsRecord(image_id, file, *size, visible=[], visibility=[])

    def _add(self, record: CityPersonsRecord, row: np.ndarray, file: str, item: str) -> None:
        """One ``bbs`` row into ``record``, or a problem (the object skipped)."""
        if not np.isfinite(row).all():
            self.checker.report(Problem(file, f"row {row.tolist()} has NaN or infinite values", item))
            return
        label, x, y, w, h, _, xv, yv, wv, hv = (float(v) for v in row)
        if not (label.is_integer() and 0 <= label < len(CITYPERSONS_CLASSES)):
            self.checker.report(Problem(file, f"unknown class {label:g}; known: 0-5 ({', '.join(CITYPERSONS_CLASSES)})",
                                        item))
            return
        if wv < 0 or hv < 0:
            self.checker.report(Problem(file, f"visible box {[xv, yv, wv, hv]} has a negative size", item))
            return
        box = self.checker.box([x, y, x + w, y + h], record.width, record.height, file, item, clip=False)
        if box is None:
            return
        # visibility as the official vis_ratio: unclipped areas, 0 where there is no visible box
        visibility = min(wv * hv / (w * h), 1.0)
        visible = _clip([xv, yv, xv + wv, yv + hv], record.width, record.height) if wv * hv > 0 else None
        # the height test uses the annotated full-body height, as the evaluation does
        person = label == 1 and h >= self.min_height and visibility >= self.min_visibility
        record.add(box, 1, ignore=not person, visible=visible or box, visibility=visibility)
        record.classes.append(int(label))


def _thresholds(filter: str | Sequence[float] | None) -> tuple[float, float]:
    """(min_height, min_visibility) of a ``filter`` argument."""
    if filter is None:
        return -math.inf, -math.inf
    if filter == "reasonable":
        return REASONABLE
    if not isinstance(filter, str) and isinstance(filter, Sequence) and len(filter) == 2:
        return float(filter[0]), float(filter[1])
    raise ValueError(f"filter must be None, 'reasonable' or (min_height, min_visibility), got {filter!r}")


def _clip(box: list[float], width: int, height: int) -> list[float] | None:
    """``box`` (xyxy) clipped to the image, or None when no area of it is inside."""
    x1, y1, x2, y2 = max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(width)), min(box[3], float(height))
    return [x1, y1, x2, y2] if x2 > x1 and y2 > y1 else None
