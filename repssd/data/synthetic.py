"""A synthetic crowd dataset that needs no download: ``python -m repssd.data.synthetic``.

Scenes of people-like figures standing in overlapping groups (and cars, a second class) on
textured backgrounds, drawn back to front so that nearer figures occlude farther ones. Every
scene is a pure function of (seed, split, index). The same scenes are written in three formats,
so every loader runs on real files:

    DIR/JPEGImages/<id>.jpg, DIR/Annotations/<id>.xml, DIR/ImageSets/Main/{train,val,test,trainval}.txt,
    DIR/classes.txt                                  VOC layout (VOCDetection, classes from classes.txt)
    DIR/coco/instances_{train,val,test}.json         COCO (person = category 1, car = 3)
    DIR/crowdhuman/annotation_{train,val,test}.odgt  CrowdHuman: persons with fbox / vbox / hbox;
                                                     cars as "mask" (ignore) regions; Images/ links
                                                     to ../JPEGImages, so DIR/crowdhuman is a
                                                     CrowdHuman folder (--dataset crowdhuman)

With ``mask_fraction`` f > 0 (``--mask-fraction``) the CrowdHuman files leave a random fraction f
of the persons unlabelled as CrowdHuman does where people are too many or too small to box: they
become ignore regions (``extra.ignore = 1``), and ``crowdhuman/annotation_<split>_full.odgt`` keeps
every person labelled (split ``<split>_full``), for scoring what a model trained on the masked
files learned about the masked people. ``crowdhuman_cars="none"`` (``--crowdhuman-cars none``)
leaves the cars out of the CrowdHuman files instead of making them "mask" regions, as CrowdHuman
annotates people only (its masks are crowds and reflections of people): a car is then plain
background. VOC and COCO files always label everyone.

Boxes are full extents (clipped to the image); ``vbox`` is the visible part. Figures less than
15% visible, or less than 4 pixels wide or high inside the image, are left out of every format,
as nobody could label them.

Splits: ``train``, ``val`` (for choosing settings: ablation sweeps select on it) and ``test``
(touched once, for the finalists); ``trainval`` = train + val. Presets (``PRESETS``):
``default`` (about 5 persons and 0.8 same-class pairs with IoU > 0.3 per image, close to
CityPersons' 6.5 and 0.96) and ``dense`` (about 10 persons and 2.5 such pairs, halfway to
CrowdHuman's 22.6 and 9.0); ``python -m repssd.data.stats`` prints both next to the published
figures.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np

from ..options import bad_output

__all__ = ["CLASSES", "COCO_CATEGORY_IDS", "Scene", "render_scene", "generate"]

CLASSES = ("person", "car")
COCO_CATEGORY_IDS = (1, 3)  # COCO's own ids for person and car: exercises the id -> label map
MIN_VISIBLE = 0.15
_SPLIT_CODES = {"train": 1, "test": 2, "val": 3}
PRESETS = {"default": {"size": 300, "density": 6.0}, "dense": {"size": 300, "density": 16.0}}


@dataclass
class Scene:
    """A rendered scene: ``image`` HxWx3 uint8 RGB and its objects, back to front."""

    image: np.ndarray
    labels: list[int] = field(default_factory=list)  # 1 = person, 2 = car
    full: list[list[float]] = field(default_factory=list)  # xyxy pixels, unclipped
    visible: list[list[float]] = field(default_factory=list)  # xyxy of the visible pixels
    head: list[list[float]] = field(default_factory=list)  # xyxy (persons; cars: the full box)


def _background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, int]:
    """Sky/ground gradient, low-frequency texture and clutter; returns (image, horizon y)."""
    horizon = int(height * rng.uniform(0.25, 0.45))
    sky, ground = rng.uniform(60, 220, 3), rng.uniform(40, 170, 3)
    rows = np.linspace(0, 1, height)[:, None, None]
    image = np.where(rows < horizon / height, sky * (0.8 + 0.2 * rows), ground * (0.7 + 0.3 * rows))
    noise = cv2.resize(rng.normal(0, 1, (8, 8, 3)), (width, height), interpolation=cv2.INTER_CUBIC)
    image = image * (1 + 0.12 * noise) + rng.normal(0, 6, (height, width, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(2, 7)):  # clutter: buildings, poles and stripes, not figures
        colour = tuple(int(c) for c in rng.uniform(30, 230, 3))
        if rng.random() < 0.5:
            x, w = int(rng.uniform(0, width)), int(rng.uniform(0.1, 0.4) * width)
            top = int(rng.uniform(0.05, 0.8) * horizon)
            cv2.rectangle(image, (x, top), (x + w, horizon), colour, -1)
        else:
            x = int(rng.uniform(0, width))
            cv2.line(image, (x, int(rng.uniform(0, horizon))), (x + int(rng.normal(0, 20)), height), colour,
                     int(rng.integers(1, 4)), cv2.LINE_AA)
    return image, horizon


def _person(canvas: np.ndarray, mask: np.ndarray, cx: float, feet: float, h: float, rng) -> tuple[list, list]:
    """Draw a standing figure; returns (full box, head box)."""
    w = 0.36 * h
    skin = tuple(int(c) for c in rng.choice([(224, 172, 150), (190, 130, 90), (120, 80, 55), (240, 200, 170)]))
    shirt = tuple(int(c) for c in rng.uniform(20, 255, 3))
    pants = tuple(int(c) for c in rng.uniform(10, 120, 3))
    top = feet - h
    head_r = 0.1 * h
    parts = [
        ("ellipse", (cx, top + 0.38 * h), (0.5 * w, 0.22 * h), shirt),  # torso
        ("rect", (cx - 0.42 * w, top + 0.55 * h, cx - 0.04 * w, feet), None, pants),  # left leg
        ("rect", (cx + 0.04 * w, top + 0.55 * h, cx + 0.42 * w, feet), None, pants),  # right leg
        ("rect", (cx - 0.62 * w, top + 0.22 * h, cx - 0.42 * w, top + 0.55 * h), None, shirt),  # arms
        ("rect", (cx + 0.42 * w, top + 0.22 * h, cx + 0.62 * w, top + 0.55 * h), None, shirt),
        ("circle", (cx, top + head_r), head_r, skin),  # head
    ]
    for kind, a, b, colour in parts:
        for target, value, aa in ((canvas, colour, cv2.LINE_AA), (mask, 1, cv2.LINE_8)):
            if kind == "ellipse":
                cv2.ellipse(target, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 0, 0, 360, value, -1, aa)
            elif kind == "rect":
                cv2.rectangle(target, (int(a[0]), int(a[1])), (int(a[2]), int(a[3])), value, -1, aa)
            else:
                cv2.circle(target, (int(a[0]), int(a[1])), int(b), value, -1, aa)
    return ([cx - 0.62 * w, top, cx + 0.62 * w, feet],
            [cx - head_r, top, cx + head_r, top + 2 * head_r])


def _car(canvas: np.ndarray, mask: np.ndarray, cx: float, ground: float, h: float, rng) -> list:
    """Draw a side-view car of height ``h``; returns its full box."""
    w = h * rng.uniform(1.8, 2.4)
    body = tuple(int(c) for c in rng.uniform(20, 255, 3))
    x1, x2, top = cx - w / 2, cx + w / 2, ground - h
    cabin = np.array([[x1 + 0.2 * w, top + 0.45 * h], [x1 + 0.32 * w, top], [x2 - 0.3 * w, top],
                      [x2 - 0.15 * w, top + 0.45 * h]], dtype=np.int32)
    for target, value, glass, wheel, aa in ((canvas, body, (170, 210, 235), (25, 25, 25), cv2.LINE_AA),
                                            (mask, 1, 1, 1, cv2.LINE_8)):
        cv2.fillPoly(target, [cabin], value, aa)
        cv2.rectangle(target, (int(x1), int(top + 0.4 * h)), (int(x2), int(ground - 0.18 * h)), value, -1, aa)
        cv2.rectangle(target, (int(x1 + 0.36 * w), int(top + 0.1 * h)), (int(x2 - 0.34 * w), int(top + 0.4 * h)),
                      glass, -1, aa)
        for wx in (x1 + 0.22 * w, x2 - 0.22 * w):
            cv2.circle(target, (int(wx), int(ground - 0.2 * h)), int(0.2 * h), wheel, -1, aa)
    return [x1, top, x2, ground]


def render_scene(rng: np.random.Generator, size: int = 300, density: float = 6.0) -> Scene:
    """One scene: about ``density`` people in 1-3 overlapping groups, 0-2 cars."""
    width = size
    height = int(round(size * rng.uniform(0.75, 1.0)))
    image, horizon = _background(rng, height, width)
    objects = []  # (feet y, kind, centre x, scale)
    for _ in range(rng.integers(1, 4)):
        depth = rng.uniform(0.15, 1.0)  # 0 = horizon, 1 = bottom of the image
        gx, n = rng.uniform(0.1, 0.9) * width, max(1, rng.poisson(density / 2))
        person_h = (0.25 + 0.55 * depth) * (height - horizon) * 1.3
        spacing = 0.36 * person_h * rng.uniform(0.6, 1.8)
        for k in range(n):
            feet = horizon + depth * (height - horizon) + rng.normal(0, 0.03) * height
            objects.append((feet, "person", gx + (k - n / 2) * spacing + rng.normal(0, 0.05 * spacing),
                            person_h * rng.uniform(0.9, 1.1)))
    for _ in range(rng.choice(3, p=[0.5, 0.3, 0.2])):
        depth = rng.uniform(0.2, 1.0)
        objects.append((horizon + depth * (height - horizon), "car", rng.uniform(0, 1) * width,
                        (0.15 + 0.35 * depth) * (height - horizon)))
    scene = Scene(image)
    masks = []
    for feet, kind, cx, scale in sorted(objects, key=lambda o: o[0]):  # back to front
        mask = np.zeros((height, width), np.uint8)
        if kind == "person":
            full, head = _person(image, mask, cx, feet, scale, rng)
        else:
            full = head = _car(image, mask, cx, feet, scale, rng)
        scene.labels.append(1 if kind == "person" else 2)
        scene.full.append(full)
        scene.head.append(head)
        masks.append(mask.astype(bool))
    _visible_parts(scene, masks)
    noise = rng.normal(0, 3, image.shape)
    scene.image = np.clip(cv2.GaussianBlur(image, (3, 3), 0.6) + noise, 0, 255).astype(np.uint8)
    return scene


def _visible_parts(scene: Scene, masks: list[np.ndarray]) -> None:
    """Fill ``scene.visible`` and drop objects under MIN_VISIBLE, nearest first."""
    covered = np.zeros_like(masks[0]) if masks else None
    keep = []
    for i in reversed(range(len(masks))):
        visible = masks[i] & ~covered
        covered |= masks[i]
        area = masks[i].sum()
        ys, xs = np.nonzero(visible)
        x1, y1, x2, y2 = _clip(scene.full[i], *masks[i].shape[::-1])
        if area == 0 or len(xs) < MIN_VISIBLE * area or min(x2 - x1, y2 - y1) < 4:
            continue
        keep.append(i)
        scene.visible.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
    keep.reverse()
    scene.visible.reverse()
    scene.labels = [scene.labels[i] for i in keep]
    scene.full = [scene.full[i] for i in keep]
    scene.head = [scene.head[i] for i in keep]


def _clip(box: list[float], width: int, height: int) -> list[float]:
    return [min(max(box[0], 0), width), min(max(box[1], 0), height), min(max(box[2], 0), width),
            min(max(box[3], 0), height)]


def _voc_xml(image_id: str, scene: Scene) -> str:
    height, width = scene.image.shape[:2]
    objects = []
    for label, full in zip(scene.labels, scene.full):
        x1, y1, x2, y2 = _clip(full, width, height)
        truncated = int(_clip(full, width, height) != full)
        objects.append(f"  <object>\n    <name>{CLASSES[label - 1]}</name>\n    <pose>Unspecified</pose>\n"
                       f"    <truncated>{truncated}</truncated>\n    <difficult>0</difficult>\n    <bndbox>\n"
                       f"      <xmin>{int(round(x1)) + 1}</xmin>\n      <ymin>{int(round(y1)) + 1}</ymin>\n"
                       f"      <xmax>{int(round(x2))}</xmax>\n      <ymax>{int(round(y2))}</ymax>\n    </bndbox>\n  </object>")
    return (f"<annotation>\n  <folder>synthetic</folder>\n  <filename>{escape(image_id)}.jpg</filename>\n"
            f"  <size>\n    <width>{width}</width>\n    <height>{height}</height>\n    <depth>3</depth>\n  </size>\n"
            + "\n".join(objects) + "\n</annotation>\n")


def _xywh(box: list[float]) -> list[float]:
    return [round(box[0], 2), round(box[1], 2), round(box[2] - box[0], 2), round(box[3] - box[1], 2)]


def generate(out: str | Path, train: int, test: int, seed: int = 0, size: int = 300, density: float = 6.0,
             val: int = 0, mask_fraction: float = 0.0, crowdhuman_cars: str = "mask") -> dict:
    """Write the dataset (see the module docstring); returns counts per split.

    Scene ``i`` of a split depends only on (seed, split, i, size, density), so a set made with
    more images of a split holds the smaller one's as a prefix; which persons ``mask_fraction``
    leaves unlabelled depends on (seed, split, i) too, not on the scenes' random draws.
    """
    if not 0.0 <= mask_fraction < 1.0:
        raise ValueError(f"mask_fraction must be in [0, 1), got {mask_fraction}")
    if crowdhuman_cars not in ("mask", "none"):
        raise ValueError(f"crowdhuman_cars must be 'mask' or 'none', got {crowdhuman_cars!r}")
    out = Path(out)
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main", "coco", "crowdhuman"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    counts = {}
    for split, number in (("train", train), ("val", val), ("test", test)):
        ids, images, annotations, odgt, odgt_full = [], [], [], [], []
        for index in range(number):
            scene = render_scene(np.random.default_rng([seed, _SPLIT_CODES[split], index]), size, density)
            image_id = f"{split}_{index:06d}"
            height, width = scene.image.shape[:2]
            cv2.imwrite(str(out / "JPEGImages" / f"{image_id}.jpg"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
            (out / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, scene))
            ids.append(image_id)
            images.append({"id": index + 1, "file_name": f"{image_id}.jpg", "width": width, "height": height})
            gtboxes = []
            unlabelled = np.random.default_rng([seed, _SPLIT_CODES[split], index, 1]).random(len(scene.labels))
            for label, full, vis, head in zip(scene.labels, scene.full, scene.visible, scene.head):
                clipped = _xywh(_clip(full, width, height))
                annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "bbox": clipped,
                                    "category_id": COCO_CATEGORY_IDS[label - 1], "iscrowd": 0,
                                    "area": round(clipped[2] * clipped[3], 2)})
                gtboxes.append({"tag": "person" if label == 1 else "mask", "fbox": _xywh(full), "vbox": _xywh(vis),
                                "hbox": _xywh(head), "extra": {"box_id": len(gtboxes), "ignore": 0}})
            if crowdhuman_cars == "none":
                gtboxes = [box for box in gtboxes if box["tag"] == "person"]
            odgt_full.append(json.dumps({"ID": image_id, "gtboxes": gtboxes}))
            for box in gtboxes:  # box_id: the object's index in the scene
                if box["tag"] == "person" and unlabelled[box["extra"]["box_id"]] < mask_fraction:
                    box["extra"] = {**box["extra"], "ignore": 1}
            odgt.append(json.dumps({"ID": image_id, "gtboxes": gtboxes}))
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        categories = [{"id": cid, "name": name, "supercategory": name} for cid, name in zip(COCO_CATEGORY_IDS, CLASSES)]
        (out / "coco" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
        (out / "crowdhuman" / f"annotation_{split}.odgt").write_text("".join(line + "\n" for line in odgt))
        if mask_fraction > 0:
            (out / "crowdhuman" / f"annotation_{split}_full.odgt").write_text("".join(line + "\n" for line in odgt_full))
        counts[split] = {"images": number, "objects": len(annotations)}
    images_link = out / "crowdhuman" / "Images"
    if not images_link.is_symlink() and not images_link.exists():
        images_link.symlink_to(Path("..") / "JPEGImages", target_is_directory=True)
    main = out / "ImageSets" / "Main"
    (main / "trainval.txt").write_text((main / "train.txt").read_text() + (main / "val.txt").read_text())
    masked = f", mask fraction {mask_fraction} (CrowdHuman files)" if mask_fraction else ""
    masked += ", no cars in the CrowdHuman files" if crowdhuman_cars == "none" else ""
    (out / "README.txt").write_text(f"repssd synthetic crowd dataset: seed {seed}, size {size}, density {density}{masked}; "
                                    f"{json.dumps(counts)}\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repssd.data.synthetic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--train", type=int, default=200, help="training images")
    parser.add_argument("--val", type=int, default=0, help="validation images (for choosing settings)")
    parser.add_argument("--test", type=int, default=50, help="test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="size and density together: " + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    parser.add_argument("--size", type=int, help="image width in pixels (height 0.75-1x); overrides the preset")
    parser.add_argument("--density", type=float, help="mean people per image; overrides the preset")
    parser.add_argument("--mask-fraction", type=float, default=0.0,
                        help="share of persons the CrowdHuman files leave unlabelled as ignore regions (0: none)")
    parser.add_argument("--crowdhuman-cars", choices=("mask", "none"), default="mask",
                        help="cars in the CrowdHuman files: 'mask' (ignore) regions or left out (background)")
    opts = parser.parse_args(argv)
    preset = PRESETS[opts.preset]
    opts.size = preset["size"] if opts.size is None else opts.size
    opts.density = preset["density"] if opts.density is None else opts.density
    problem = bad_output(opts.out, "--out")
    if problem:
        print(f"repssd.data.synthetic: {problem}", file=sys.stderr)
        return 2
    if min(opts.train, opts.val, opts.test) < 0 or opts.size < 64 or not opts.density > 0 \
            or not 0 <= opts.mask_fraction < 1:
        print("repssd.data.synthetic: --train/--val/--test must be >= 0, --size >= 64, --density > 0, "
              "--mask-fraction in [0, 1)", file=sys.stderr)
        return 2
    counts = generate(opts.out, opts.train, opts.test, opts.seed, opts.size, opts.density, val=opts.val,
                      mask_fraction=opts.mask_fraction, crowdhuman_cars=opts.crowdhuman_cars)
    print(f"wrote {opts.out}: " + ", ".join(f"{s}: {c['images']} images, {c['objects']} objects" for s, c in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
