"""Tiny pedestrian datasets in their real published formats, for end-to-end tests: each writer makes
a few 96x64 images with a crowd of overlapping people (so the crowd subset is not empty), an
ignore region and a person partly hidden (visibility < 0.65), and returns
``(root, train_split, test_split)`` as train.py / eval.py take them."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import scipy.io

W, H = 96, 64
# people per image as xyxy pixels (0-based); the first two overlap (IoU 0.43), the third stands apart
PEOPLE = [(10, 8, 30, 58), (20, 10, 40, 60), (60, 14, 76, 54)]
REGION = (80, 2, 94, 20)  # an ignore region (a poster, a crowd too dense to box)


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image = rng.integers(60, 120, (H, W, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in PEOPLE:  # something person-shaped to look at
        image[y1:y2, x1:x2] = (200, 80, 40)
    cv2.imwrite(str(path), image)


def citypersons(root: Path, images: int = 4) -> tuple[Path, str, str]:
    """Cityscapes layout + ``annotations/anno_{train,val}.mat`` (rows: class, x, y, w, h, id, visible xywh)."""
    for split in ("train", "val"):
        cells = np.empty((1, images), dtype=object)
        for k in range(images):
            name = f"ulm_000000_{k:06d}_leftImg8bit.png"
            rows = [[1, x1, y1, x2 - x1, y2 - y1, 24000 + n, x1, y1, x2 - x1, (y2 - y1) * (0.5 if n == 1 else 1)]
                    for n, (x1, y1, x2, y2) in enumerate(PEOPLE)]
            rows.append([0, REGION[0], REGION[1], REGION[2] - REGION[0], REGION[3] - REGION[1], 0, *REGION[:2],
                         REGION[2] - REGION[0], REGION[3] - REGION[1]])
            cells[0, k] = {"cityname": "ulm", "im_name": name, "bbs": np.array(rows, dtype=np.float64)}
            _image(root / "leftImg8bit" / split / "ulm" / name, k)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(str(root / "annotations" / f"anno_{split}.mat"), {f"anno_{split}_aligned": cells})
    return root, "train", "val"


def mot(root: Path, frames: int = 4) -> tuple[Path, str, str]:
    """Two MOTChallenge sequences: ``img1/``, ``gt/gt.txt`` (1-based xywh), ``seqinfo.ini``."""
    for seq in ("MOT17-02", "MOT17-04"):
        folder = root / seq
        lines = []
        for frame in range(1, frames + 1):
            _image(folder / "img1" / f"{frame:06d}.jpg", frame)
            for n, (x1, y1, x2, y2) in enumerate(PEOPLE, 1):
                lines.append(f"{frame},{n},{x1 + 1},{y1 + 1},{x2 - x1 + 1},{y2 - y1 + 1},1,1,{0.5 if n == 2 else 1}")
            x1, y1, x2, y2 = REGION
            lines.append(f"{frame},9,{x1 + 1},{y1 + 1},{x2 - x1 + 1},{y2 - y1 + 1},0,8,1")  # a distractor
        (folder / "gt").mkdir(parents=True, exist_ok=True)
        (folder / "gt" / "gt.txt").write_text("\n".join(lines) + "\n")
        (folder / "seqinfo.ini").write_text(f"[Sequence]\nname={seq}\nimDir=img1\nframeRate=30\nseqLength={frames}\n"
                                            f"imWidth={W}\nimHeight={H}\nimExt=.jpg\n")
    return root, "MOT17-02", "MOT17-04"


def widerperson(root: Path, images: int = 4) -> tuple[Path, str, str]:
    """``Images/<id>.jpg``, ``Annotations/<id>.jpg.txt`` (count, then ``class x1 y1 x2 y2``), id lists."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    for split, first in (("train", 0), ("val", 100)):
        ids = [f"{first + k:06d}" for k in range(images)]
        for k, image_id in enumerate(ids):
            _image(root / "Images" / f"{image_id}.jpg", k)
            boxes = [(1, *p) for p in PEOPLE[:2]] + [(3, *PEOPLE[2]), (5, *REGION)]  # 3: partially visible, 5: crowd
            (root / "Annotations" / f"{image_id}.jpg.txt").write_text(
                f"{len(boxes)}\n" + "".join(" ".join(map(str, b)) + "\n" for b in boxes))
        (root / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root, "train", "val"


def pennfudan(root: Path, images: int = 4) -> tuple[Path, str, str]:
    """PennFudanPed: ``PNGImages/``, ``Annotation/*.txt`` (PASCAL 1.00, 1-based inclusive), ``PedMasks/``."""
    for folder in ("PNGImages", "Annotation", "PedMasks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for k in range(images):
        stem = f"FudanPed{k + 1:05d}"
        _image(root / "PNGImages" / f"{stem}.png", k)
        mask = np.zeros((H, W), np.uint8)
        lines = [f"Image size (X x Y x C) : {W} x {H} x 3",
                 f"Objects with ground truth : {len(PEOPLE)} {{ }}"]
        for n, (x1, y1, x2, y2) in enumerate(PEOPLE, 1):
            mask[y1:y2, x1:x2] = n
            lines.append(f'Bounding box for object {n} "PASpersonWalking" (Xmin, Ymin) - (Xmax, Ymax) : '
                         f"({x1 + 1}, {y1 + 1}) - ({x2}, {y2})")
        (root / "Annotation" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
        cv2.imwrite(str(root / "PedMasks" / f"{stem}_mask.png"), mask)
    (root / "train.txt").write_text("FudanPed00001\nFudanPed00002\n")
    (root / "test.txt").write_text("FudanPed00003\nFudanPed00004\n")
    return root, "train", "test"


WRITERS = {"citypersons": citypersons, "mot": mot, "widerperson": widerperson, "pennfudan": pennfudan}
