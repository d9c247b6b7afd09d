"""PennFudanDetection on PennFudanPed-format folders the tests write (64x48 PNGs, masks, annotations)."""
import importlib.util
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from repssd.data import DatasetError, PennFudanDetection, SSDTestTransform
from repssd.data.factory import DATASET_KINDS, open_dataset
from repssd.data.pennfudan_splits import SPLITS, TEST, TRAIN, VAL
from repssd.inputs import InputError

W, H = 64, 48


def annotation(stem, boxes, count=None, size_line=None):
    """A PASCAL Annotation Version 1.00 text as in PennFudanPed; ``boxes``: (x1, y1, x2, y2) 1-based
    inclusive, or a str for a raw bounding-box line. Object k's bounding box is on line 11 + 5 (k - 1)."""
    names = " ".join('"PASpersonWalking"' for _ in boxes)
    lines = ["# Compatible with PASCAL Annotation Version 1.00",
             f'Image filename : "PennFudanPed/PNGImages/{stem}.png"',
             size_line if size_line is not None else f"Image size (X x Y x C) : {W} x {H} x 3",
             'Database : "The Penn-Fudan-Pedestrian Database"',
             f"Objects with ground truth : {len(boxes) if count is None else count} {{ {names} }}",
             "# Note there may be some objects not included in the ground truth list for they are severe-occluded",
             "# or have very small size.",
             "# Top left pixel co-ordinates : (1, 1)"]
    for k, box in enumerate(boxes, 1):
        line = box if isinstance(box, str) else (f'Bounding box for object {k} "PASpersonWalking" (Xmin, Ymin) - '
                                                 f"(Xmax, Ymax) : ({box[0]}, {box[1]}) - ({box[2]}, {box[3]})")
        lines += [f'# Details for pedestrian {k} ("PASpersonWalking")',
                  f'Original label for object {k} "PASpersonWalking" : "PennFudanPed"', line,
                  f'Pixel mask for object {k} "PASpersonWalking" : "PennFudanPed/PedMasks/{stem}_mask.png"', ""]
    return "\n".join(lines) + "\n"


def mask_of(boxes):
    """A mask with value k inside object k's (valid) 1-based inclusive box."""
    mask = np.zeros((H, W), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes, 1):
        mask[min(y1, y2) - 1:max(y1, y2), min(x1, x2) - 1:max(x1, x2)] = k
    return mask


def write_pennfudan(root, entries, image=True, masks=True):
    """``entries``: {stem: (annotation text, mask array or None)}."""
    for folder in ("Annotation", "PNGImages", "PedMasks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for stem, (text, mask) in entries.items():
        (root / "Annotation" / f"{stem}.txt").write_text(text)
        if image:
            cv2.imwrite(str(root / "PNGImages" / f"{stem}.png"), np.full((H, W, 3), 90, np.uint8))
        if masks and mask is not None:
            cv2.imwrite(str(root / "PedMasks" / f"{stem}_mask.png"), mask)
    return root


A_BOXES = [(11, 6, 30, 40), (40, 30, 35, 10), (45, 8, 60, 45)]  # the middle one has x2 < x1: skipped
B_BOXES = [(1, 1, 64, 48)]


@pytest.fixture
def folder(tmp_path):
    return write_pennfudan(tmp_path / "PennFudanPed", {
        "PennPed00001": (annotation("PennPed00001", B_BOXES), mask_of(B_BOXES)),
        "FudanPed00001": (annotation("FudanPed00001", A_BOXES), mask_of(A_BOXES)),
    })


def test_boxes_are_1_based_inclusive_made_0_based(folder):
    with pytest.warns(UserWarning, match="skipped 0 images and 1 objects"):
        ds = PennFudanDetection(folder)
    assert ds.classes == ("person",) and ds.ids == ["FudanPed00001", "PennPed00001"]
    image, target = ds[0]
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    # (11, 6)-(30, 40) -> (10, 5)-(29, 39); (45, 8)-(60, 45) -> (44, 7)-(59, 44)
    torch.testing.assert_close(target["boxes"], torch.tensor([[10.0, 5.0, 29.0, 39.0], [44.0, 7.0, 59.0, 44.0]]))
    assert target["labels"].tolist() == [1, 1] and target["labels"].dtype == torch.int64
    assert not target["difficult"].any() and not target["ignore"].any() and target["size"].tolist() == [H, W]
    assert "masks" not in target
    torch.testing.assert_close(ds[1][1]["boxes"], torch.tensor([[0.0, 0.0, 63.0, 47.0]]))  # the whole image
    [problem] = ds.problems
    assert str(problem).startswith(f"{folder / 'Annotation' / 'FudanPed00001.txt'}:16: object 2: box")


def test_masks_follow_object_numbers_past_a_skipped_box(folder):
    with pytest.warns(UserWarning):
        ds = PennFudanDetection(folder, masks=True)
    _, target = ds.load(0)
    mask = cv2.imread(str(folder / "PedMasks" / "FudanPed00001_mask.png"), cv2.IMREAD_UNCHANGED)
    masks = target["masks"]
    assert masks.dtype == torch.bool and masks.shape == (2, H, W)  # objects 1 and 3; object 2 was skipped
    assert torch.equal(masks[0], torch.from_numpy(mask == 1)) and torch.equal(masks[1], torch.from_numpy(mask == 3))
    assert masks[0].sum() == 35 * 20 and masks[1].sum() == 38 * 16
    assert masks[0, 5, 10] and masks[0, 39, 29] and not masks[0, 40, 29]  # the box's last pixels are in it
    assert ds.load(1)[1]["masks"].shape == (1, H, W) and ds.load(1)[1]["masks"].all()


def test_missing_mask_is_an_input_error_naming_it(folder):
    (folder / "PedMasks" / "PennPed00001_mask.png").unlink()
    (folder / "train.txt").write_text("PennPed00001\n")
    ds = PennFudanDetection(folder, split="train", masks=True)
    with pytest.raises(InputError, match=re.escape(str(folder / "PedMasks" / "PennPed00001_mask.png"))):
        ds.load(0)
    assert "masks" not in PennFudanDetection(folder, split="train").load(0)[1]  # masks=False never reads it


def test_masks_refused_with_an_ssd_transform(folder):
    with pytest.raises(ValueError, match="does not move target"):
        PennFudanDetection(folder, transform=SSDTestTransform(300), masks=True)


def test_root_split_file_overrides_the_shipped_split(tmp_path):
    entries = {stem: (annotation(stem, [(2, 2, 20, 30)]), None) for stem in VAL}
    root = write_pennfudan(tmp_path, entries, masks=False)
    shipped = PennFudanDetection(root, split="val")
    assert shipped.ids == list(VAL) and not shipped.problems
    (root / "val.txt").write_text(f"{VAL[3]}\n\n{VAL[0]}\n")
    assert PennFudanDetection(root, split="val").ids == [VAL[3], VAL[0]]
    (root / "mine.txt").write_text(f"{VAL[1]}\n")
    assert PennFudanDetection(root, split="mine").ids == [VAL[1]]
    assert PennFudanDetection(root).ids == sorted(VAL)
    with pytest.raises(DatasetError, match=r"nope\.txt: no such split file.*known: all, train, val, test"):
        PennFudanDetection(root, split="nope")


def test_count_line_that_lies_is_a_problem_and_the_boxes_stay(tmp_path):
    root = write_pennfudan(tmp_path, {"FudanPed00002": (annotation("FudanPed00002", B_BOXES, count=3), None)})
    with pytest.warns(UserWarning, match="skipped 0 images and 1 objects"):
        ds = PennFudanDetection(root)
    assert len(ds[0][1]["boxes"]) == 1
    [problem] = ds.problems
    assert str(problem).startswith(f"{root / 'Annotation' / 'FudanPed00002.txt'}:5: says 3 objects with ground "
                                   "truth but has 1 'Bounding box' lines")


def test_malformed_lines_name_file_and_line(tmp_path):
    bad = 'Bounding box for object 2 "PASpersonWalking" (Xmin, Ymin) - (Xmax, Ymax) : (10, x) - (20, 30)'
    root = write_pennfudan(tmp_path, {
        "FudanPed00003": (annotation("FudanPed00003", [(11, 6, 30, 40), bad]), None),
        "FudanPed00004": (annotation("FudanPed00004", B_BOXES, size_line="Image size (X x Y x C) : big"), None),
        "FudanPed00005": (annotation("FudanPed00005", B_BOXES).replace(f"Image size (X x Y x C) : {W} x {H} x 3\n",
                                                                       ""), None),
    })
    with pytest.warns(UserWarning, match="skipped 2 images and 1 objects"):
        ds = PennFudanDetection(root)
    assert ds.ids == ["FudanPed00003"] and len(ds[0][1]["boxes"]) == 1
    annotations = root / "Annotation"
    assert [str(p) for p in ds.problems] == [
        f"{annotations / 'FudanPed00003.txt'}:16: object 2: malformed bounding box line {bad!r} (object skipped)",
        f"{annotations / 'FudanPed00004.txt'}:3: malformed size line 'Image size (X x Y x C) : big' (image skipped)",
        f"{annotations / 'FudanPed00005.txt'}: no 'Image size (X x Y x C) : W x H x C' line (image skipped)"]


def test_missing_image_is_skipped_and_counted(folder):
    (folder / "PNGImages" / "PennPed00001.png").unlink()
    with pytest.warns(UserWarning, match="skipped 1 images and 1 objects"):
        ds = PennFudanDetection(folder)
    assert ds.ids == ["FudanPed00001"]
    missing = f"{folder / 'PNGImages' / 'PennPed00001.png'}: image file is missing (image skipped)"
    assert missing in map(str, ds.problems)


def test_strict_raises_naming_file_and_line(folder, tmp_path):
    with pytest.raises(DatasetError, match=re.escape(f"{folder / 'Annotation' / 'FudanPed00001.txt'}:16: object 2")):
        PennFudanDetection(folder, strict=True)
    root = write_pennfudan(tmp_path / "lies", {"PennPed00002": (annotation("PennPed00002", B_BOXES, count=2), None)})
    with pytest.raises(DatasetError, match=re.escape(f"{root / 'Annotation' / 'PennPed00002.txt'}:5: says 2")):
        PennFudanDetection(root, strict=True)


def test_not_a_pennfudan_folder(tmp_path):
    (tmp_path / "Annotation").mkdir()
    with pytest.raises(DatasetError, match="not a PennFudanPed folder \\(no PNGImages/"):
        PennFudanDetection(tmp_path)


def test_open_dataset_pennfudan(folder):
    assert "pennfudan" in DATASET_KINDS
    (folder / "train.txt").write_text("PennPed00001\n")
    ds = open_dataset("pennfudan", folder, "train", transform=SSDTestTransform(32))
    assert isinstance(ds, PennFudanDetection) and ds.ids == ["PennPed00001"]
    image, target = ds[0]
    assert image.shape == (3, 32, 32)
    torch.testing.assert_close(target["boxes"], torch.tensor([[0.0, 0.0, 63 / 64, 47 / 48]]))
    assert open_dataset("pennfudan", folder, "train", masks=True).load(0)[1]["masks"].shape == (1, H, W)


def test_shipped_splits_partition_170_ids_and_regenerate():
    assert (len(TRAIN), len(VAL), len(TEST)) == (100, 20, 50) and list(SPLITS) == ["train", "val", "test"]
    ids = TRAIN + VAL + TEST
    assert len(set(ids)) == 170 and all(re.fullmatch(r"(Fudan|Penn)Ped\d{5}", i) for i in ids)
    assert sum(i.startswith("Fudan") for i in ids) == 74  # the database: 74 Fudan + 96 Penn images
    script = Path(__file__).resolve().parents[2] / "data" / "make_pennfudan_splits.py"
    spec = importlib.util.spec_from_file_location("make_pennfudan_splits", script)
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    parts = maker.split_ids(list(ids))  # the seeded permutation reproduces the shipped module exactly
    assert {name: tuple(p) for name, p in parts.items()} == SPLITS
    assert maker.module_text(parts) == (Path(__file__).resolve().parents[2] / "repssd" / "data" /
                                        "pennfudan_splits.py").read_text()


@pytest.mark.skipif(not os.environ.get("REPSSD_PENNFUDAN"), reason="set REPSSD_PENNFUDAN to a PennFudanPed folder")
def test_real_pennfudanped():
    root = Path(os.environ["REPSSD_PENNFUDAN"])
    ds = PennFudanDetection(root, masks=True)
    assert len(ds) == 170 and sum(len(r.boxes) for r in ds.records) == 423 and not ds.problems
    assert sorted(ds.ids) == sorted(TRAIN + VAL + TEST)
    for index in range(len(ds)):  # each object's mask is non-empty and lies wholly in its box
        image, target = ds.load(index)
        masks = target["masks"]
        assert masks.shape == (len(target["boxes"]), *image.shape[:2]) and masks.flatten(1).any(1).all()
        for (x1, y1, x2, y2), mask in zip(target["boxes"].int().tolist(), masks):
            assert mask[y1:y2 + 1, x1:x2 + 1].sum() == mask.sum()
    people = {name: sum(len(r.boxes) for r in PennFudanDetection(root, name).records) for name in SPLITS}
    assert people == {"train": 246, "val": 51, "test": 126}
