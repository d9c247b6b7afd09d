"""The people crowd copy-paste pastes: cut out with their instance masks from a dataset's images
(:class:`PersonBank`), from the training split only (:meth:`PersonBank.check_held_out`)."""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..inputs import InputError
from .base import DatasetError

__all__ = ["Cutout", "PersonBank", "mask_box"]


@dataclass(frozen=True)
class Cutout:
    """One person: ``pixels`` uint8 [h, w, 3] RGB and ``mask`` bool [h, w], both cropped to the
    mask's bounding box (so the full box of a pasted person is the rectangle it is pasted in), and
    ``source``, the id of the image it was cut from."""

    pixels: np.ndarray
    mask: np.ndarray
    source: str


class PersonBank:
    """Cut-outs to paste; ``sources``: the ids of the images they come from."""

    def __init__(self, cutouts: Iterable[Cutout]) -> None:
        self.cutouts = list(cutouts)
        self.sources = frozenset(c.source for c in self.cutouts)

    def __len__(self) -> int:
        return len(self.cutouts)

    def __getitem__(self, index: int) -> Cutout:
        return self.cutouts[index]

    @classmethod
    def from_dataset(cls, dataset, min_height: int = 40, min_fill: float = 0.2, border: int = 1,
                     max_hidden: float = 0.1) -> PersonBank:
        """The people of ``dataset`` (a :class:`~repssd.data.base.DetectionDataset` opened with
        ``masks=True``; its transform is bypassed). Kept: non-ignore persons whose mask is at least
        ``min_height`` px tall, fills ``min_fill`` of its box, stays ``border`` px from the image
        edges (a person cut by the frame would be pasted cut), and of whose box nearer objects'
        masks (lower feet) cover at most ``max_hidden`` (an occluded person would be pasted with a
        hole). Build it from the training split only: see :meth:`check_held_out`."""
        if "person" not in dataset.classes:
            raise DatasetError(f"{type(dataset).__name__} has no 'person' class to cut people from")
        label, cutouts, unreadable = dataset.classes.index("person") + 1, [], 0
        for index, record in enumerate(dataset.records):
            try:
                image, target = dataset.load(index)
            except InputError:
                unreadable += 1
                continue
            if "masks" not in target:
                raise DatasetError(f"{type(dataset).__name__} gives no target['masks']: open it with masks=True")
            cutouts += _cut_people(image, target, label, record.id, min_height, min_fill, border, max_hidden)
        if unreadable:
            warnings.warn(f"PersonBank: {unreadable} unreadable images skipped", stacklevel=2)
        return cls(cutouts)

    def check_held_out(self, ids: Iterable[str], name: str = "held-out") -> None:
        """:class:`DatasetError` if any cut-out comes from one of ``ids`` (e.g. the test split)."""
        leaked = sorted(self.sources & {str(i) for i in ids})
        if leaked:
            raise DatasetError(f"the person bank holds people of {len(leaked)} {name} images (e.g. {leaked[0]}); "
                               "build it from the training split only")


def _cut_people(image: np.ndarray, target: dict, label: int, source: str, min_height: int, min_fill: float,
                border: int, max_hidden: float) -> list[Cutout]:
    masks, boxes = target["masks"].numpy(), target["boxes"].numpy().reshape(-1, 4)
    solid = ~target["ignore"].numpy()
    height, width = image.shape[:2]
    cutouts = []
    for i in np.flatnonzero(solid & (target["labels"].numpy() == label)):
        found = mask_box(masks[i])
        if found is None:
            continue
        x1, y1, x2, y2 = found
        crop = masks[i, y1:y2, x1:x2]
        area = int(crop.sum())
        nearer = solid & (boxes[:, 3] > boxes[i, 3])
        hidden = int(masks[nearer, y1:y2, x1:x2].any(0).sum()) if nearer.any() else 0
        if (y2 - y1 < min_height or area < min_fill * crop.size or hidden > max_hidden * crop.size
                or min(x1, y1) < border or x2 > width - border or y2 > height - border):
            continue
        cutouts.append(Cutout(image[y1:y2, x1:x2].copy(), crop.copy(), str(source)))
    return cutouts


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixel xyxy (exclusive right/bottom) of a bool mask's True pixels, or None."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1) if len(rows) else None
