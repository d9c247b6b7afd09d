"""MOTChallenge sequences (MOT16, MOT17, MOT20) as person detection: every frame is an image.

Layout (``root`` is e.g. ``MOT17/train`` or ``MOT20/train``)::

    <seq>/seqinfo.ini        [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt
    <seq>/<imDir>/000001.jpg frames 1..seqLength, named <frame:06d><imExt>
    <seq>/gt/gt.txt          frame, id, bb_left, bb_top, bb_width, bb_height, flag, class, visibility

One ``gt.txt`` line per object and frame; ``flag`` 1 = evaluated, 0 = ignored; ``visibility`` is
the visible fraction in [0, 1]. Classes (the MOT16 paper's; MOT20 adds 13; names as in TrackEval):
1 pedestrian, 2 person_on_vehicle, 3 car, 4 bicycle, 5 motorbike, 6 non_mot_vehicle,
7 static_person, 8 distractor, 9 occluder, 10 occluder_on_ground, 11 occluder_full, 12 reflection,
13 crowd.

Boxes are 1-based inclusive pixels: in MOT20-01's gt.txt the boxes at the image border start at
bb_left = bb_top = 1 (never 0) and end at bb_left + bb_width - 1 = imWidth (bb_top + bb_height - 1
= imHeight). Like VOC in repssd, and like Tracktor (the MOTChallenge organisers' ``mot_sequence.py``:
``x1 = left - 1; x2 = x1 + width - 1``), a box becomes 0-based xyxy
``(left - 1, top - 1, left + width - 2, top + height - 2)``: the whole 1920x1080 frame
``1, 1, 1920, 1080`` becomes ``(0, 0, 1919, 1079)``. TrackEval and py-motmetrics compare raw xywh
boxes, so results written back in MOT format need ``left = x1 + 1, width = x2 - x1 + 1``.
"""
from __future__ import annotations

import configparser
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .base import DatasetError, DetectionDataset, Problem, Record

__all__ = ["MOTDetection", "MOT_CLASSES"]

MOT_CLASSES = {1: "pedestrian", 2: "person_on_vehicle", 3: "car", 4: "bicycle", 5: "motorbike",
               6: "non_mot_vehicle", 7: "static_person", 8: "distractor", 9: "occluder",
               10: "occluder_on_ground", 11: "occluder_full", 12: "reflection", 13: "crowd"}
PEDESTRIAN = 1
# TrackEval's distractor classes (a detection on them is neither a hit nor a false positive) plus
# MOT20's crowd; TrackEval also counts non_mot_vehicle as a distractor in MOT20 only.
IGNORE_CLASSES = frozenset({2, 7, 8, 12, 13})
IGNORE_CLASSES_MOT20 = IGNORE_CLASSES | {6}
_FIELDS = "frame, id, bb_left, bb_top, bb_width, bb_height, flag, class, visibility"
_SEQINFO_KEYS = ("imDir", "seqLength", "imWidth", "imHeight", "imExt")


@dataclass(frozen=True)
class SequenceInfo:
    """What ``seqinfo.ini`` says about one sequence."""

    im_dir: str
    im_ext: str
    length: int
    width: int
    height: int


class MOTDetection(DetectionDataset):
    """MOTChallenge frames with their pedestrians: one class, ``person`` (label 1).

    Args:
        root: a folder of sequences, e.g. ``MOT17/train``.
        split: ``"all"`` (every sub-folder with a ``seqinfo.ini``, sorted) or sequence names
            separated by commas, e.g. ``"MOT17-02-SDP,MOT17-04-SDP"``. MOT17's train folder holds
            each video three times (-DPM, -FRCNN, -SDP: the same frames and gt.txt); pick one copy.
        transform: ``transform(image, target)``.
        strict: raise :class:`DatasetError` on the first problem instead of skipping.
        frame_stride: keep frames 1, 1 + N, 1 + 2N, ... (consecutive frames are near-duplicates).
        min_visibility: boxes less visible than this become ignore regions.

    Pedestrians with flag 1 are people; pedestrians with flag 0 and the classes in
    :data:`IGNORE_CLASSES` are ignore regions; vehicles and occluders are left out and counted in
    ``ds.dropped`` (by class name). Every frame is an image, also one without people. Targets
    carry ``visibility`` (the gt.txt value clipped to [0, 1]). Record ids are ``<seq>/<frame:06d>``;
    ``ds.sequences`` names the sequences read.
    """

    classes = ("person",)

    def __init__(self, root: str | Path, split: str = "all", transform: Callable | None = None,
                 strict: bool = False, frame_stride: int = 1, min_visibility: float = 0.0) -> None:
        if not isinstance(frame_stride, int) or frame_stride < 1:
            raise ValueError(f"frame_stride must be a positive integer, got {frame_stride!r}")
        if not 0.0 <= min_visibility <= 1.0:
            raise ValueError(f"min_visibility must lie in [0, 1], got {min_visibility!r}")
        super().__init__(transform, strict)
        self.root, self.split = Path(root), split
        self.frame_stride, self.min_visibility = frame_stride, min_visibility
        self.dropped: Counter[str] = Counter()
        self.sequences: list[str] = []
        self.records = [r for name in self._sequence_names() for r in self._read_sequence(name)]
        if not self.records:
            first = f"; first problem: {self.problems[0]}" if self.problems else ""
            raise DatasetError(f"{self.root}: no frame of split {split!r} could be read{first}")
        self._finish(f"MOTDetection({self.root}, {split!r})")

    def _sequence_names(self) -> list[str]:
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no such folder")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        known = [p.name for p in folders if (p / "seqinfo.ini").is_file()]
        if not known:
            hint = " (it is a sequence itself: pass its parent folder)" if (self.root / "seqinfo.ini").is_file() else ""
            raise DatasetError(f"{self.root}: not a MOTChallenge folder, no <sequence>/seqinfo.ini in it{hint}")
        if self.split == "all":
            for folder in folders:  # looks like a sequence but cannot be read without its seqinfo.ini
                if folder.name not in known and ((folder / "gt").is_dir() or (folder / "img1").is_dir()):
                    self.checker.report(Problem(str(folder / "seqinfo.ini"), f"missing; sequence {folder.name} "
                                                "left out", skipped="image"))
            return known
        names = [name.strip() for name in self.split.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise DatasetError(f"{self.root}: no sequence {', '.join(unknown) or repr(self.split)}; "
                               f"known: all, {', '.join(known)}")
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise DatasetError(f"split {self.split!r} lists {', '.join(twice)} more than once")
        return names

    def _read_sequence(self, name: str) -> list[Record]:
        folder = self.root / name
        info = self._seqinfo(folder / "seqinfo.ini", name)
        if info is None:
            return []
        gt_file = folder / "gt" / "gt.txt"
        if not gt_file.is_file():
            self.checker.report(Problem(str(gt_file), f"no ground truth (a test sequence?); sequence {name} "
                                        "left out", skipped="image"))
            return []
        try:
            lines = gt_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            self.checker.report(Problem(str(gt_file), f"unreadable ({type(err).__name__}: {err}); sequence "
                                        f"{name} left out", skipped="image"))
            return []
        records = self._frames(name, folder / info.im_dir, info)
        if records is None:
            return []
        ignore_classes = IGNORE_CLASSES_MOT20 if name.startswith("MOT20") else IGNORE_CLASSES
        seen: set[tuple[int, int]] = set()
        for n, line in enumerate(lines, 1):
            if line.strip():
                self._add_line(line, f"{gt_file}:{n}", info, records, ignore_classes, seen)
        self.sequences.append(name)
        return list(records.values())

    def _seqinfo(self, path: Path, name: str) -> SequenceInfo | None:
        """The sequence's image folder, extension, length and size, or None (reported)."""
        parser = configparser.ConfigParser(interpolation=None)  # keys are case-insensitive
        reason = None
        try:
            with open(path, encoding="utf-8") as file:
                parser.read_file(file)
            section = parser["Sequence"]
            missing = [key for key in _SEQINFO_KEYS if not section.get(key, "").strip()]
            if missing:
                reason = f"[Sequence] has no {', '.join(missing)}"
            else:
                sizes = [int(section[key]) for key in ("seqLength", "imWidth", "imHeight")]
                if min(sizes) <= 0:
                    raise ValueError(f"non-positive {sizes}")
                return SequenceInfo(section["imDir"].strip(), section["imExt"].strip(), *sizes)
        except KeyError:
            reason = "no [Sequence] section"
        except ValueError as err:
            reason = f"seqLength, imWidth and imHeight must be positive integers ({err})"
        except (OSError, UnicodeDecodeError, configparser.Error) as err:
            reason = f"unreadable ({type(err).__name__}: {err})"
        self.checker.report(Problem(str(path), f"{reason}; sequence {name} left out", skipped="image"))
        return None

    def _frames(self, name: str, image_dir: Path, info: SequenceInfo) -> dict[int, Record] | None:
        """A record for each kept frame whose image exists, by frame number; None if the image
        folder is missing or holds no ``*<imExt>`` file (reported once, not per frame)."""
        try:
            with os.scandir(image_dir) as entries:  # one listing instead of a stat per frame
                present = {entry.name for entry in entries if entry.name.endswith(info.im_ext)}
        except OSError:
            present = set()
        if not present:
            self.checker.report(Problem(str(image_dir), f"no *{info.im_ext} images; sequence {name} left out",
                                        skipped="image"))
            return None
        records = {}
        for frame in range(1, info.length + 1, self.frame_stride):
            file = image_dir / f"{frame:06d}{info.im_ext}"
            if file.name in present:
                records[frame] = Record(f"{name}/{frame:06d}", file, info.width, info.height, visibility=[])
            else:
                self.checker.report(Problem(str(file), "image file is missing", skipped="image"))
        return records

    def _add_line(self, line: str, where: str, info: SequenceInfo, records: dict[int, Record],
                  ignore_classes: frozenset[int], seen: set[tuple[int, int]]) -> None:
        """One gt.txt line: checked whether or not its frame is kept, added to its frame's record."""
        row = self._parse(line, where)
        if row is None:
            return
        frame, track, left, top, width, height, flag, cls, visibility = row
        item = f"id {track}"
        if cls not in MOT_CLASSES:
            self.checker.report(Problem(where, f"unknown class {cls}; MOT classes are 1-13", item))
            return
        if cls != PEDESTRIAN and cls not in ignore_classes:
            self.dropped[MOT_CLASSES[cls]] += 1
            return
        if not 1 <= frame <= info.length:
            self.checker.report(Problem(where, f"frame {frame} lies outside the sequence (seqLength {info.length})",
                                        item))
            return
        if (frame, track) in seen:
            self.checker.report(Problem(where, f"id {track} has a second box in frame {frame}", item))
            return
        if not (width > 0 and height > 0):
            self.checker.report(Problem(where, f"bb_width {width} and bb_height {height} must be positive", item))
            return
        box = self.checker.box([left - 1, top - 1, left + width - 2, top + height - 2], info.width, info.height,
                               where, item)
        if box is None:
            return
        seen.add((frame, track))
        if frame in records:
            ignore = cls != PEDESTRIAN or flag == 0 or visibility < self.min_visibility
            records[frame].add(box, 1, ignore=ignore, visibility=visibility)

    def _parse(self, line: str, where: str) -> tuple | None:
        """(frame, id, left, top, width, height, flag, class, visibility clipped to [0, 1]), or None."""
        fields = line.split(",")
        if len(fields) != 9:
            self.checker.report(Problem(where, f"{len(fields)} comma-separated fields, not 9 ({_FIELDS})"))
            return None
        try:
            values = [float(field) for field in fields]
        except ValueError:
            self.checker.report(Problem(where, f"malformed line {line.strip()!r}: not 9 numbers ({_FIELDS})"))
            return None
        frame, track, flag, cls, visibility = values[0], values[1], values[6], values[7], values[8]
        if not all(v.is_integer() for v in (frame, track, cls)) or flag not in (0.0, 1.0):
            self.checker.report(Problem(where, f"malformed line {line.strip()!r}: frame, id and class must be "
                                        "integers and flag 0 or 1"))
            return None
        if not math.isfinite(visibility):
            self.checker.report(Problem(where, f"visibility {fields[8].strip()!r} is not a number"))
            return None
        return (int(frame), int(track), *values[2:6], flag, int(cls), min(max(visibility, 0.0), 1.0))
