"""What every detection dataset shares: records, checked boxes, problem reporting, loading.

A dataset reads its annotations up front into :class:`Record` objects, checking every box;
images are decoded lazily in ``__getitem__``. Bad input never disappears silently: each
problem names its file (and object), is kept in ``ds.problems``, summarised once as a warning,
or raised at once as :class:`DatasetError` when ``strict=True``.

Target format (without a transform): ``{"boxes": float32 [G, 4] xyxy 0-based pixels,
"labels": int64 [G] in 1..C-1, "difficult": bool [G], "ignore": bool [G], "size": int64 [2]
(height, width)}``; pedestrian datasets that know how much of each person is visible add
``"visibility": float32 [G]`` (the visible fraction, 1 for an unoccluded box) and, where they have
visible-part boxes, ``"visible": float32 [G, 4]`` (xyxy, like ``boxes``).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..inputs import InputError, read_image_rgb

__all__ = ["DatasetError", "Problem", "Record", "DetectionDataset", "BoxChecker"]


class DatasetError(ValueError):
    """Bad dataset input under ``strict=True`` (or a dataset that cannot be read at all)."""


@dataclass(frozen=True)
class Problem:
    """One thing that was skipped: ``file``, optionally the object in it, and why."""

    file: str
    reason: str
    item: str | None = None
    skipped: str = "object"  # "object" or "image"

    def __str__(self) -> str:
        where = f"{self.file}: {self.item}" if self.item else self.file
        return f"{where}: {self.reason} ({self.skipped} skipped)"


@dataclass
class Record:
    """One annotated image: its file, size and checked objects (pixel xyxy boxes)."""

    id: str
    file: Path
    width: int
    height: int
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)
    ignore: list[bool] = field(default_factory=list)
    visible: list[list[float]] | None = None  # a list (not None) when the dataset has visible-part boxes
    visibility: list[float] | None = None  # a list when the dataset knows each box's visible fraction

    def add(self, box: Sequence[float], label: int, difficult: bool = False, ignore: bool = False,
            visible: Sequence[float] | None = None, visibility: float | None = None) -> None:
        """One object. ``visible`` (default: ``box``) and ``visibility`` (default: 1) are kept
        when the record was made with ``visible=[]`` / ``visibility=[]``."""
        self.boxes.append([float(v) for v in box])
        self.labels.append(int(label))
        self.difficult.append(bool(difficult))
        self.ignore.append(bool(ignore))
        if self.visible is not None:
            self.visible.append([float(v) for v in (box if visible is None else visible)])
        if self.visibility is not None:
            self.visibility.append(1.0 if visibility is None else float(visibility))

    def target(self) -> dict[str, torch.Tensor]:
        """The target dict, plus ``size`` = (height, width) of the original image."""
        return {"boxes": torch.tensor(self.boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(self.labels, dtype=torch.int64),
                "difficult": torch.tensor(self.difficult, dtype=torch.bool),
                "ignore": torch.tensor(self.ignore, dtype=torch.bool),
                "size": torch.tensor([self.height, self.width]),
                **({"visible": torch.tensor(self.visible, dtype=torch.float32).reshape(-1, 4)}
                   if self.visible is not None else {}),
                **({"visibility": torch.tensor(self.visibility, dtype=torch.float32)}
                   if self.visibility is not None else {})}


class BoxChecker:
    """Validates boxes against their image and records problems (or raises when strict)."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.problems: list[Problem] = []

    def report(self, problem: Problem) -> None:
        if self.strict:
            raise DatasetError(str(problem).replace(f" ({problem.skipped} skipped)", ""))
        self.problems.append(problem)

    def box(self, box: Sequence[float], width: int, height: int, file: str, item: str,
            clip: bool = True) -> list[float] | None:
        """``box`` (pixel xyxy) clipped to the image (``clip=False``: as given), or None (reported)
        if unusable: not 4 numbers, NaN or infinite, x2 <= x1 or y2 <= y1, or no area inside the image."""
        try:
            x1, y1, x2, y2 = (float(v) for v in box)
        except (TypeError, ValueError):
            self.report(Problem(file, f"box {box!r} is not 4 numbers", item))
            return None
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            self.report(Problem(file, f"box {[x1, y1, x2, y2]} has NaN or infinite coordinates", item))
            return None
        if x2 <= x1 or y2 <= y1:
            self.report(Problem(file, f"box {[x1, y1, x2, y2]} has x2 <= x1 or y2 <= y1", item))
            return None
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            self.report(Problem(file, f"box {[x1, y1, x2, y2]} lies outside the {width}x{height} image", item))
            return None
        clipped = [min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width),
                   min(max(y2, 0.0), height)]
        if clipped[2] - clipped[0] < 1e-3 or clipped[3] - clipped[1] < 1e-3:
            self.report(Problem(file, f"box {[x1, y1, x2, y2]} has no area inside the image", item))
            return None
        return clipped if clip else [x1, y1, x2, y2]


def add_ignore_regions(target: dict, boxes: torch.Tensor, label: int = 1) -> dict:
    """``target`` with ``boxes`` (pixel xyxy ``[N, 4]``) appended as ignore regions of class
    ``label``; every per-box entry grows with them (``visible``: the box itself, ``visibility``: 1,
    ``masks``: empty, so copy-paste treats them as regions, not as people to stand in front of)."""
    boxes = boxes.reshape(-1, 4).to(torch.float32)
    n, out = boxes.shape[0], dict(target)
    out["boxes"] = torch.cat([target["boxes"].reshape(-1, 4), boxes])
    out["labels"] = torch.cat([target["labels"], torch.full((n,), label, dtype=torch.int64)])
    out["difficult"] = torch.cat([target["difficult"], torch.zeros(n, dtype=torch.bool)])
    out["ignore"] = torch.cat([target["ignore"], torch.ones(n, dtype=torch.bool)])
    if "visible" in target:
        out["visible"] = torch.cat([target["visible"].reshape(-1, 4), boxes])
    if "visibility" in target:
        out["visibility"] = torch.cat([target["visibility"], torch.ones(n)])
    if "masks" in target:
        out["masks"] = torch.cat([target["masks"], target["masks"].new_zeros((n, *target["masks"].shape[1:]))])
    return out


class DetectionDataset(Dataset):
    """Base of the loaders: ``ds[i] -> (image, target)``.

    Subclasses fill ``self.records`` (and ``self.classes``) and call :meth:`_finish`.
    Without a transform, ``image`` is an HxWx3 uint8 RGB array; with one,
    ``transform(image, target)`` decides (see :mod:`repssd.data.transforms`).
    """

    classes: tuple[str, ...]
    records: list[Record]

    def __init__(self, transform: Callable | None, strict: bool) -> None:
        self.transform = transform
        self.strict = strict
        self.checker = BoxChecker(strict)
        self._bad_images: set[int] = set()
        self.extra_ignore: dict[int, torch.Tensor] = {}  # index -> ignore regions added to its target

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    @property
    def problems(self) -> list[Problem]:
        return self.checker.problems

    def _finish(self, name: str) -> None:
        """Summarise the problems found while reading the annotations, once."""
        if self.problems:
            images = sum(p.skipped == "image" for p in self.problems)
            objects = len(self.problems) - images
            warnings.warn(f"{name}: skipped {images} images and {objects} objects with problems, e.g. "
                          f"{self.problems[0]}; the full list is in .problems", stacklevel=3)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """Image and target of ``index``, untransformed; :class:`~repssd.inputs.InputError` if
        the image cannot be read."""
        record = self.records[index]
        image = read_image_rgb(record.file)
        target = record.target()
        height, width = image.shape[:2]
        if (width, height) != (record.width, record.height):  # annotation size disagrees: trust the pixels
            for key in ("boxes", "visible"):
                if key in target:
                    target[key][:, 0::2].clamp_(0, width)
                    target[key][:, 1::2].clamp_(0, height)
            target["size"] = torch.tensor([height, width])
        return image, target

    def __getitem__(self, index: int):
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            if i in self._bad_images:
                continue
            try:
                image, target = self.load(i)
            except InputError as err:
                if self.strict:
                    raise DatasetError(str(err)) from None
                self._bad_images.add(i)
                self.problems.append(Problem(str(self.records[i].file), str(err).split(": ", 1)[-1], skipped="image"))
                warnings.warn(f"{err}; using the next image instead (counted in .problems)", stacklevel=2)
                continue
            if i in self.extra_ignore:
                target = add_ignore_regions(target, self.extra_ignore[i])
            return self.transform(image, target) if self.transform else (image, target)
        raise DatasetError(f"{type(self).__name__}: none of its {len(self.records)} images can be read")
