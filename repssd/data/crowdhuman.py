"""CrowdHuman ``.odgt`` annotations (one JSON object per line)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from .base import DatasetError, DetectionDataset, Problem, Record

__all__ = ["CrowdHumanDetection"]


class CrowdHumanDetection(DetectionDataset):
    """CrowdHuman: one class, ``person``.

    Args:
        odgt_file: ``annotation_train.odgt`` / ``annotation_val.odgt``.
        image_dir: folder of ``<ID>.jpg``.
        box: ``"fbox"`` (full body, the Repulsion Loss setting), ``"vbox"`` (visible part) or
            ``"hbox"`` (head).
    Boxes are xywh in the file and become xyxy clipped to the image; ``tag == "mask"`` regions
    and boxes with ``extra.ignore == 1`` are kept as ignore regions. Targets also carry
    ``visible`` (the vbox, within the box) and ``visibility`` (|vbox ∩ fbox| / |fbox|).
    """

    classes = ("person",)

    def __init__(self, odgt_file: str | Path, image_dir: str | Path, box: str = "fbox",
                 transform: Callable | None = None, strict: bool = False) -> None:
        super().__init__(transform, strict)
        if box not in ("fbox", "vbox", "hbox"):
            raise ValueError(f"box must be 'fbox', 'vbox' or 'hbox', got {box!r}")
        self.odgt_file, self.image_dir, self.box = Path(odgt_file), Path(image_dir), box
        if not self.odgt_file.is_file():
            raise DatasetError(f"{self.odgt_file}: no such annotation file")
        try:
            lines = self.odgt_file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise DatasetError(f"{self.odgt_file}: not UTF-8 text ({err.reason} at byte {err.start}); "
                               "an .odgt file holds one JSON object per line") from None
        self.records = [r for r in (self._read(n, line) for n, line in enumerate(lines, 1) if line.strip())
                        if r is not None]
        self._finish(f"CrowdHumanDetection({self.odgt_file})")

    def _read(self, line_no: int, line: str) -> Record | None:
        where = f"{self.odgt_file}:{line_no}"
        try:
            entry = json.loads(line)
            image_id = str(entry["ID"])
            boxes = entry.get("gtboxes", [])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            self.checker.report(Problem(where, f"malformed odgt line ({type(err).__name__}: {err})", skipped="image"))
            return None
        file = self.image_dir / f"{image_id}.jpg"
        try:
            with Image.open(file) as image:  # reads the header only
                width, height = image.size
        except (OSError, ValueError, Image.DecompressionBombError) as err:  # the bomb: a header claiming billions of pixels
            reason = "image file is missing" if not file.exists() else f"unreadable image ({err})"
            self.checker.report(Problem(str(file), reason, skipped="image"))
            return None
        record = Record(image_id, file, width, height, visible=[], visibility=[])
        if not isinstance(boxes, list):
            self.checker.report(Problem(where, f"gtboxes is a {type(boxes).__name__}, not a list: no objects read"))
            boxes = []
        for k, obj in enumerate(boxes):
            item = f"gtbox {k} ({obj.get('tag') if isinstance(obj, dict) else '?'})"
            xywh = obj.get(self.box) if isinstance(obj, dict) else None
            if not isinstance(xywh, list) or len(xywh) != 4 or not all(isinstance(v, (int, float)) for v in xywh):
                self.checker.report(Problem(where, f"{self.box} {xywh!r} is not [x, y, w, h]", item))
                continue
            x, y, w, h = xywh
            box = self.checker.box([x, y, x + w, y + h], width, height, where, item)
            if box is None:
                continue
            extra = obj.get("extra") or {}
            ignore = obj.get("tag") != "person" or bool(extra.get("ignore", 0))
            record.add(box, 1, ignore=ignore, **_visible_part(obj, box))
        return record


def _visible_part(obj: dict, box: list[float]) -> dict:
    """``visible``: the vbox within ``box``; ``visibility``: |vbox ∩ fbox| / |fbox| as annotated (1
    where the entry lacks either box, e.g. mask regions)."""
    fbox, vbox = obj.get("fbox"), obj.get("vbox")
    if not all(isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b) for b in (fbox, vbox)) \
            or fbox[2] <= 0 or fbox[3] <= 0:
        return {}
    iw = max(0.0, min(fbox[0] + fbox[2], vbox[0] + vbox[2]) - max(fbox[0], vbox[0]))
    ih = max(0.0, min(fbox[1] + fbox[3], vbox[1] + vbox[3]) - max(fbox[1], vbox[1]))
    visible = [min(max(vbox[0], box[0]), box[2]), min(max(vbox[1], box[1]), box[3]),
               min(max(vbox[0] + vbox[2], box[0]), box[2]), min(max(vbox[1] + vbox[3], box[1]), box[3])]
    return {"visible": visible, "visibility": iw * ih / (fbox[2] * fbox[3])}
