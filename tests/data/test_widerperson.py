"""WiderPersonDetection on WiderPerson-format folders the tests write (64x48 JPEGs, <id>.jpg.txt annotations)."""
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from repssd.data import DatasetError, SSDTestTransform
from repssd.data.widerperson import WiderPersonDetection

W, H = 64, 48

ANNOTATIONS = {
    "000040": "6\n1 10 5 29 39\n2 30 10 40 30\n3 40 20 60 47\n4 0 0 20 10\n5 20 0 63 47\n1 50 40 45 45\n",
    "000041": "3\n1 5 5 20 30\n7 1 1 10 10\n1 2 3 x 5\n1 2 3 4\n",  # unknown class, two malformed lines
    "000042": "5\n1 5 5 20 30\n3 30 5 50 40\n",  # the count says 5, two boxes follow
    "000044": "1\n1 5 5 20 30\n",  # its image is missing
    "000045": "0\n",  # nobody in it
    "000046": "",
    "000047": "1\n1 5 5 20 30\n",  # its image is not an image
    "000050": "1 5 5 20 30\n",  # no count line
}
TRAIN = ["000040", "000041", "000042", "000043", "000044", "000045", "000046", "000047"]


@pytest.fixture
def root(tmp_path):
    for folder in ("Images", "Annotations"):
        (tmp_path / folder).mkdir()
    for image_id in [*TRAIN, "000048", "000049", "000050", "000100", "000101"]:
        if image_id != "000044":
            cv2.imwrite(str(tmp_path / "Images" / f"{image_id}.jpg"), np.full((H, W, 3), 90, np.uint8))
    (tmp_path / "Images" / "000047.jpg").write_bytes(b"not a jpeg")
    for image_id, text in ANNOTATIONS.items():
        (tmp_path / "Annotations" / f"{image_id}.jpg.txt").write_text(text)
    (tmp_path / "Annotations" / "000048.jpg.txt").write_bytes("1\n1 5 5 20 30\n".encode("utf-8-sig"))
    (tmp_path / "Annotations" / "000049.jpg.txt").write_bytes("1\r\n3 5 5 20 30\r\n".encode("utf-16"))
    (tmp_path / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (tmp_path / "val.txt").write_text("000048\n000049\r\n000050\n\n")
    (tmp_path / "test.txt").write_text("000100\n000101\n")
    (tmp_path / "ReadMe.txt").write_text("WiderPerson\n")
    return tmp_path


def ann(root, image_id):
    return root / "Annotations" / f"{image_id}.jpg.txt"


def test_classes_map_to_person_and_ignore(root):
    with pytest.warns(UserWarning, match="skipped 4 images and 6 objects"):
        ds = WiderPersonDetection(root)
    assert ds.classes == ("person",) and ds.ids == ["000040", "000041", "000042", "000045"]
    image, target = ds[0]
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    torch.testing.assert_close(target["boxes"], torch.tensor([
        [10.0, 5.0, 29.0, 39.0], [30.0, 10.0, 40.0, 30.0], [40.0, 20.0, 60.0, 47.0], [0.0, 0.0, 20.0, 10.0],
        [20.0, 0.0, 63.0, 47.0]]))  # as written: 0-based pixels
    assert target["labels"].tolist() == [1] * 5 and target["size"].tolist() == [H, W]
    assert target["ignore"].tolist() == [False, False, False, True, True]  # ignore region, crowd
    assert not target["difficult"].any() and "visibility" not in target and "visible" not in target
    torch.testing.assert_close(ds[1][1]["boxes"], torch.tensor([[5.0, 5.0, 20.0, 30.0]]))
    assert len(ds[3][1]["boxes"]) == 0  # "0": an image without people is kept


def test_person_classes_choose_who_counts(root):
    with pytest.warns(UserWarning):
        ds = WiderPersonDetection(root, person_classes=(1,))
    assert ds[0][1]["ignore"].tolist() == [False, True, True, True, True]
    with pytest.warns(UserWarning):
        ds = WiderPersonDetection(root, person_classes=[3, 1])
    assert ds[0][1]["ignore"].tolist() == [False, True, False, True, True] and ds.person_classes == (1, 3)
    for bad in ((), (1, 4), (5,)):
        with pytest.raises(ValueError, match="person_classes must be some of 1, 2, 3"):
            WiderPersonDetection(root, person_classes=bad)


def test_problems_name_file_and_line(root):
    with pytest.warns(UserWarning):
        ds = WiderPersonDetection(root)
    problems = [str(p) for p in ds.problems]
    a41 = ann(root, "000041")
    assert problems[:7] == [
        f"{ann(root, '000040')}:7: class 1 (pedestrian): box [50.0, 40.0, 45.0, 45.0] has x2 <= x1 or y2 <= y1 "
        "(object skipped)",
        f"{a41}:3: unknown class 7; WiderPerson classes are 1-5 (object skipped)",
        f"{a41}:4: malformed box line '1 2 3 x 5', not 'class x1 y1 x2 y2' (object skipped)",
        f"{a41}:5: malformed box line '1 2 3 4', not 'class x1 y1 x2 y2' (object skipped)",
        f"{a41}:1: says 3 boxes but has 4 box lines; the image keeps the boxes it has (object skipped)",
        f"{ann(root, '000042')}:1: says 5 boxes but has 2 box lines; the image keeps the boxes it has "
        "(object skipped)",
        f"{ann(root, '000043')}: annotation file is missing (image skipped)"]
    assert problems[7:9] == [f"{root / 'Images' / '000044.jpg'}: image file is missing (image skipped)",
                             f"{ann(root, '000046')}: empty annotation file (no box count) (image skipped)"]
    assert problems[9].startswith(f"{root / 'Images' / '000047.jpg'}: unreadable image (") and len(problems) == 10


def test_count_that_lies_keeps_the_boxes_unshifted(root):
    with pytest.warns(UserWarning):
        ds = WiderPersonDetection(root)
    _, target = ds[2]  # 000042: "5" then two boxes
    torch.testing.assert_close(target["boxes"], torch.tensor([[5.0, 5.0, 20.0, 30.0], [30.0, 5.0, 50.0, 40.0]]))
    assert target["ignore"].tolist() == [False, False]


def test_val_with_bom_utf16_and_no_count_line(root):
    with pytest.warns(UserWarning, match="skipped 0 images and 1 objects"):
        ds = WiderPersonDetection(root, "val")
    assert ds.ids == ["000048", "000049", "000050"]
    for index in range(3):
        torch.testing.assert_close(ds[index][1]["boxes"], torch.tensor([[5.0, 5.0, 20.0, 30.0]]))
    [problem] = ds.problems
    assert str(problem) == f"{ann(root, '000050')}:1: first line '1 5 5 20 30' is not the number of boxes (object skipped)"


def test_strict_raises_naming_file_and_line(root):
    with pytest.raises(DatasetError, match=re.escape(f"{ann(root, '000040')}:7: class 1 (pedestrian): box")):
        WiderPersonDetection(root, strict=True)
    (root / "mine.txt").write_text("000042\n")
    with pytest.raises(DatasetError, match=re.escape(f"{ann(root, '000042')}:1: says 5 boxes but has 2")):
        WiderPersonDetection(root, "mine", strict=True)


def test_test_split_and_unknown_splits(root):
    with pytest.raises(DatasetError, match="none of the 2 images in test.txt has an annotation file .*publishes "
                                           "none for its test split"):
        WiderPersonDetection(root, "test")
    with pytest.raises(DatasetError, match=re.escape(f"{root / 'trainval.txt'}: no such split file; this folder "
                                                     "has: test, train, val")):
        WiderPersonDetection(root, "trainval")
    (root / "Annotations" / "Images").mkdir()  # Images/ in it, but no Annotations/
    with pytest.raises(DatasetError, match="not a WiderPerson folder \\(no Annotations/"):
        WiderPersonDetection(root / "Annotations")


def test_ssd_test_transform(root):
    with pytest.warns(UserWarning):
        ds = WiderPersonDetection(root, transform=SSDTestTransform(300))
    image, target = ds[0]
    assert image.shape == (3, 300, 300) and image.dtype == torch.uint8
    torch.testing.assert_close(target["boxes"][0], torch.tensor([10 / W, 5 / H, 29 / W, 39 / H]))
    assert target["ignore"].tolist() == [False, False, False, True, True]


@pytest.mark.skipif(not os.environ.get("REPSSD_WIDERPERSON"), reason="set REPSSD_WIDERPERSON to a WiderPerson folder")
def test_real_widerperson():
    ds = WiderPersonDetection(Path(os.environ["REPSSD_WIDERPERSON"]), "val")
    assert len(ds) == 1000 and not [p for p in ds.problems if p.skipped == "image"]  # boxes: not yet checked
