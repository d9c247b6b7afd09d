"""Penn-Fudan pedestrians (PennFudanPed): PASCAL Annotation Version 1.00 text files and instance masks.

Layout: ``PNGImages/<id>.png``, ``PedMasks/<id>_mask.png`` (pixel value k > 0 = object k, 0 =
background) and ``Annotation/<id>.txt`` with lines such as::

    Image size (X x Y x C) : 559 x 536 x 3
    Objects with ground truth : 2 { "PASpersonWalking" "PASpersonWalking" }
    Bounding box for object 1 "PASpersonWalking" (Xmin, Ymin) - (Xmax, Ymax) : (160, 182) - (302, 431)

Boxes there are 1-based inclusive pixels ("Top left pixel co-ordinates : (1, 1)"); minus 1 they
become repssd's 0-based xyxy, as for VOC.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..inputs import InputError
from .base import DatasetError, DetectionDataset, Problem, Record
from .pennfudan_splits import SPLITS
from .transforms import SSDTestTransform, SSDTrainTransform

__all__ = ["PennFudanDetection"]

_SIZE = re.compile(r":\s*(\d+)\s*x\s*(\d+)")  # "... : W x H x C"
_COUNT = re.compile(r":\s*(\d+)")  # "Objects with ground truth : N { ... }"
_BOX = re.compile(r"object\s+(\d+)\b.*:\s*\(([^()]*)\)\s*-\s*\(([^()]*)\)\s*$")  # "... : (x1, y1) - (x2, y2)"
_OBJECT = re.compile(r"object\s+(\d+)\b")


@dataclass
class PennFudanRecord(Record):
    """A :class:`Record` that also knows each kept box's object number (its value in the mask)."""

    objects: list[int] = field(default_factory=list)
    mask_file: Path | None = None


class PennFudanDetection(DetectionDataset):
    """PennFudanPed: 170 images, 423 pedestrians, one class, ``person`` (label 1).

    Args:
        root: the ``PennFudanPed`` folder (``Annotation/``, ``PNGImages/``, ``PedMasks/``).
        split: ``"all"`` (every annotation file, by id), or a list of ids one per line:
            ``<root>/<split>.txt`` when that file exists, else the fixed ``train`` (100), ``val``
            (20) or ``test`` (50) split shipped in :mod:`repssd.data.pennfudan_splits`.
        transform: ``transform(image, target)``. repssd's SSD transforms do not move masks, so
            they are refused with ``masks=True``, which is for :meth:`load` and for transforms
            that handle ``target["masks"]``.
        strict: raise :class:`DatasetError` on the first problem instead of skipping.
        masks: also return ``target["masks"]``, bool ``[G, H, W]``: the instance mask of each
            kept box, read from ``PedMasks/`` when an image is loaded.
    """

    classes = ("person",)

    def __init__(self, root: str | Path, split: str = "all", transform: Callable | None = None,
                 strict: bool = False, masks: bool = False) -> None:
        if masks and isinstance(transform, (SSDTrainTransform, SSDTestTransform)):
            raise ValueError(f"{type(transform).__name__} does not move target['masks']: use masks=False with it")
        super().__init__(transform, strict)
        self.root, self.split, self.masks = Path(root), split, masks
        for folder in ("Annotation", "PNGImages"):
            if not (self.root / folder).is_dir():
                raise DatasetError(f"{self.root}: not a PennFudanPed folder (no {folder}/ in it)")
        self.records = [r for r in (self._read(i) for i in self._image_ids()) if r is not None]
        self._finish(f"PennFudanDetection({self.root}, {split!r})")

    def _image_ids(self) -> list[str]:
        if self.split == "all":
            return sorted(p.stem for p in (self.root / "Annotation").glob("*.txt"))
        listing = self.root / f"{self.split}.txt"
        if listing.is_file():
            return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        if self.split in SPLITS:
            return list(SPLITS[self.split])
        raise DatasetError(f"{listing}: no such split file, and repssd ships no PennFudanPed split "
                           f"{self.split!r}; known: all, {', '.join(SPLITS)}")

    def _read(self, image_id: str) -> PennFudanRecord | None:
        path = self.root / "Annotation" / f"{image_id}.txt"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            self.checker.report(Problem(str(path), "annotation file is missing", skipped="image"))
            return None
        except (OSError, UnicodeDecodeError) as err:
            self.checker.report(Problem(str(path), f"unreadable annotation ({type(err).__name__}: {err})",
                                        skipped="image"))
            return None
        image_file = self.root / "PNGImages" / f"{image_id}.png"
        if not image_file.is_file():
            self.checker.report(Problem(str(image_file), "image file is missing", skipped="image"))
            return None
        size = self._size(lines, path)
        if size is None:
            return None
        record = PennFudanRecord(image_id, image_file, *size,
                                 mask_file=self.root / "PedMasks" / f"{image_id}_mask.png")
        self._add_objects(record, lines, path)
        return record

    def _size(self, lines: list[str], path: Path) -> tuple[int, int] | None:
        """(width, height) from the ``Image size`` line, or None (reported)."""
        for n, line in enumerate(lines, 1):
            if line.startswith("Image size"):
                found = _SIZE.search(line)
                if found and int(found[1]) > 0 and int(found[2]) > 0:
                    return int(found[1]), int(found[2])
                self.checker.report(Problem(f"{path}:{n}", f"malformed size line {line.strip()!r}",
                                            skipped="image"))
                return None
        self.checker.report(Problem(str(path), "no 'Image size (X x Y x C) : W x H x C' line", skipped="image"))
        return None

    def _add_objects(self, record: PennFudanRecord, lines: list[str], path: Path) -> None:
        """The ``Bounding box`` lines into ``record``; the count line is checked against them."""
        count, count_line, seen = None, 0, 0
        for n, line in enumerate(lines, 1):
            if line.startswith("Objects with ground truth"):
                found = _COUNT.search(line)
                if found is None:
                    self.checker.report(Problem(f"{path}:{n}", f"malformed object count line {line.strip()!r}"))
                else:
                    count, count_line = int(found[1]), n
            elif line.startswith("Bounding box"):
                seen += 1
                self._add_box(record, line, f"{path}:{n}")
        if count is not None and count != seen:
            self.checker.report(Problem(f"{path}:{count_line}", f"says {count} objects with ground truth but has "
                                        f"{seen} 'Bounding box' lines; the image keeps the boxes it has"))

    def _add_box(self, record: PennFudanRecord, line: str, where: str) -> None:
        number = _OBJECT.search(line)
        item = f"object {number[1]}" if number else None
        found = _BOX.search(line)
        try:
            coords = [float(v) for v in (*found[2].split(","), *found[3].split(","))] if found else []
        except ValueError:
            coords = []
        if len(coords) != 4:
            self.checker.report(Problem(where, f"malformed bounding box line {line.strip()!r}", item))
            return
        k = int(found[1])
        if k in record.objects:
            self.checker.report(Problem(where, f"object {k} has a second bounding box", item))
            return
        box = self.checker.box([v - 1 for v in coords], record.width, record.height, where, item)
        if box is not None:
            record.add(box, 1)
            record.objects.append(k)

    def load(self, index: int) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """Image and target of ``index``, untransformed; with ``masks=True`` also ``masks``."""
        image, target = super().load(index)
        if self.masks:
            target["masks"] = self._masks(self.records[index], image.shape[:2])
        return image, target

    @staticmethod
    def _masks(record: PennFudanRecord, shape: tuple[int, ...]) -> torch.Tensor:
        """bool ``[G, H, W]``: mask value k for each kept box of object k; :class:`InputError`
        naming the image and its mask file if the mask is missing, unreadable or of another size."""
        mask_file = record.mask_file
        try:
            with Image.open(mask_file) as mask_image:  # PIL keeps palette indices (cv2 would expand them)
                mask = np.asarray(mask_image)
        except FileNotFoundError:
            raise InputError(f"{record.file}: mask {mask_file}: no such file") from None
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise InputError(f"{record.file}: mask {mask_file}: unreadable ({err})") from None
        if mask.shape != tuple(shape):
            raise InputError(f"{record.file}: mask {mask_file}: {mask.shape} pixels, not a single-channel "
                             f"{shape[0]}x{shape[1]} mask like the image")
        ids = torch.tensor(record.objects, dtype=torch.int64).view(-1, 1, 1)
        return torch.from_numpy(mask.astype(np.int64))[None] == ids
