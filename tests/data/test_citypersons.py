"""CityPersonsDetection on Cityscapes-layout folders the tests write: anno_<split>.mat (scipy.io.savemat,
the published cell array of structs), gtBboxCityPersons JSON and tiny 64x32 PNGs."""
import json
import re

import cv2
import numpy as np
import pytest
import scipy.io
import torch

from repssd.data import DatasetError, SSDTestTransform, SSDTrainTransform
from repssd.data.citypersons import CityPersonsDetection
from repssd.data.factory import open_dataset

W, H = 64, 32
CITY = "aachen"
A, B, C = (f"{CITY}_000000_00001{k}_leftImg8bit.png" for k in range(3))
#            class  x1  y1  w   h   id     x1v y1v wv  hv
ROWS_A = [[1, 10, 4, 8, 20, 24000, 12, 4, 6, 10],   # pedestrian, 3/8 visible
          [0, 2, 2, 4, 4, 0, 2, 2, 4, 4],           # ignore region
          [2, 58, 2, 10, 28, 25000, 58, 2, 8, 28],  # rider past the right edge: kept as annotated
          [3, 30, 10, 6, 8, 26000, 30, 10, 6, 8],   # sitting person
          [4, 40, 10, 5, 10, 27000, 40, 10, 5, 10],  # other person
          [5, 20, 6, 12, 20, 28000, 0, 0, 0, 0]]    # person group: no visible box in the file
ROWS_B = [[1, 5, 2, 10, 24, 24001, 5, 2, 10, 24]]   # an unoccluded pedestrian, 24 px tall


def image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((H, W, 3), 90, np.uint8))


def cells(entries):
    """The .mat's 1xN cell array of structs; ``entries``: (cityname, im_name, bbs rows) or any object."""
    out = np.empty((1, len(entries)), dtype=object)
    for k, entry in enumerate(entries):
        out[0, k] = ({"cityname": entry[0], "im_name": entry[1], "bbs": np.asarray(entry[2], dtype=np.float64)}
                     if isinstance(entry, tuple) else entry)
    return out


def write_mat(root, split, entries, images=None, variable=None):
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    path = root / "annotations" / f"anno_{split}.mat"
    scipy.io.savemat(str(path), {variable or f"anno_{split}_aligned": cells(entries)})
    for name in images if images is not None else [e[1] for e in entries]:
        image(root / "leftImg8bit" / split / CITY / name)
    return path


@pytest.fixture
def root(tmp_path):
    write_mat(tmp_path, "train", [(CITY, A, ROWS_A), (CITY, B, ROWS_B), (CITY, C, np.zeros((0, 0)))])
    return tmp_path


def test_classes_boxes_visible_parts_and_visibility(root):
    ds = CityPersonsDetection(root)
    assert ds.classes == ("person",) and ds.ids == [A[:-16], B[:-16], C[:-16]] and not ds.problems
    img, target = ds[0]
    assert img.shape == (H, W, 3) and target["size"].tolist() == [H, W]
    # xywh -> xyxy with no 1-pixel shift; the rider (58 + 10 = 68) reaches past the 64-px edge and is
    # kept as annotated, as the official evaluation matches against it
    torch.testing.assert_close(target["boxes"], torch.tensor(
        [[10, 4, 18, 24], [2, 2, 6, 6], [58, 2, 68, 30], [30, 10, 36, 18], [40, 10, 45, 20], [20, 6, 32, 26]],
        dtype=torch.float32))
    assert target["labels"].tolist() == [1] * 6
    assert target["ignore"].tolist() == [False, True, True, True, True, True]  # only pedestrians are people
    torch.testing.assert_close(target["visible"], torch.tensor(
        [[12, 4, 18, 14], [2, 2, 6, 6], [58, 2, 64, 30], [30, 10, 36, 18], [40, 10, 45, 20], [20, 6, 32, 26]],
        dtype=torch.float32))  # the group has no visible box: its full box stands in
    # w_vis * h_vis / (w * h) on the annotated (unclipped) boxes, 0 for the group, as val_gt.json's vis_ratio
    torch.testing.assert_close(target["visibility"], torch.tensor([60 / 160, 1, 224 / 280, 1, 1, 0]))
    assert ds.records[0].classes == [1, 0, 2, 3, 4, 5]
    assert ds[2][1]["boxes"].shape == (0, 4) and ds[2][1]["visible"].shape == (0, 4)  # a 0x0 bbs: no people


def test_ssd_test_transform(root):
    ds = CityPersonsDetection(root, transform=SSDTestTransform(300))
    img, target = ds[1]
    assert img.shape == (3, 300, 300)
    torch.testing.assert_close(target["boxes"], torch.tensor([[5 / W, 2 / H, 15 / W, 26 / H]]))
    torch.testing.assert_close(target["visible"], target["boxes"])
    assert target["visibility"].tolist() == [1.0] and target["labels"].tolist() == [1]
    torch.manual_seed(0)
    train = CityPersonsDetection(root, transform=SSDTrainTransform(64))
    for _ in range(5):  # per-box entries stay aligned through crops that drop boxes
        img, target = train[0]
        assert img.shape == (3, 64, 64) and len(target["visible"]) == len(target["visibility"]) == len(target["boxes"])


def test_filter_turns_small_or_occluded_pedestrians_into_ignore(root):
    def ignore(**options):
        ds = CityPersonsDetection(root, **options)
        return [r.ignore[r.classes.index(1)] for r in ds.records[:2]]  # pedestrian of A (h 20, vis .375), of B

    assert ignore() == [False, False]
    assert ignore(filter="reasonable") == [True, True]  # both under 50 px
    assert ignore(filter=(20, 0.3)) == [False, False]
    assert ignore(filter=(20, 0.5)) == [True, False]  # A's is 3/8 visible
    assert ignore(filter=(21, 0.0)) == [True, False]  # heights 20 and 24
    assert ignore(filter=(25, 0.0)) == [True, True]
    with pytest.raises(ValueError, match="filter must be None, 'reasonable'"):
        CityPersonsDetection(root, filter="all")


def test_bad_rows_are_problems_naming_file_image_and_row(tmp_path):
    rows = [[1, 10, 4, 0, 20, 1, 10, 4, 0, 20],  # zero width
            [np.nan] * 10,
            [7, 10, 4, 8, 20, 1, 10, 4, 8, 20],  # unknown class
            [1.5, 10, 4, 8, 20, 1, 10, 4, 8, 20],
            [1, 10, 4, 8, 20, 1, 10, 4, -8, 20],  # negative visible width
            [1, 70, 4, 8, 20, 1, 70, 4, 8, 20],  # wholly right of the image
            [1, 10, 4, 8, 20, 1, 10, 4, 8, 20]]  # fine
    mat = write_mat(tmp_path, "train", [(CITY, A, rows)])
    with pytest.warns(UserWarning, match="skipped 0 images and 6 objects"):
        ds = CityPersonsDetection(tmp_path)
    assert ds.records[0].boxes == [[10, 4, 18, 24]]
    assert [str(p).split(": ")[:2] for p in ds.problems] == [[str(mat), f"{A} row {n}"] for n in range(1, 7)]
    reasons = " | ".join(p.reason for p in ds.problems)
    for text in ("x2 <= x1", "NaN", "unknown class 7", "unknown class 1.5", "negative size", "outside the 64x32"):
        assert text in reasons


def test_bad_images_are_skipped_and_counted(tmp_path):
    mat = write_mat(tmp_path, "train", [(CITY, A, ROWS_A), (CITY, B, ROWS_B), (CITY, C, [[1, 2, 3]]),
                                        (CITY, A, ROWS_B), {"cityname": CITY}, (CITY, "d.png", ROWS_B),
                                        {"cityname": CITY, "im_name": "e.png", "bbs": "oops"}],
                    images=[A, C, "e.png"])
    (tmp_path / "leftImg8bit" / "train" / CITY / "d.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipped 6 images and 0 objects"):
        ds = CityPersonsDetection(tmp_path)
    assert ds.ids == [A[:-16]]
    assert [str(p) for p in ds.problems] == [
        f"{tmp_path / 'leftImg8bit' / 'train' / CITY / B}: image file is missing (image skipped)",
        f"{mat}: {C}: bbs is a 1x3 matrix, not an Nx10 matrix of numbers [class, x1, y1, w, h, id, x1_vis, y1_vis, "
        "w_vis, h_vis] (image skipped)",
        f"{mat}: {A}: second entry for this image (image skipped)",
        f"{mat}: cell 5: not a struct with cityname, im_name (text) and bbs (image skipped)",
        f"{ds.problems[4].file}: {ds.problems[4].reason} (image skipped)",
        f"{mat}: e.png: bbs is a str, not an Nx10 matrix of numbers [class, x1, y1, w, h, id, x1_vis, y1_vis, "
        "w_vis, h_vis] (image skipped)"]
    assert ds.problems[4].file.endswith("d.png") and ds.problems[4].reason.startswith("unreadable image")


def test_strict_raises_the_first_problem(tmp_path):
    mat = write_mat(tmp_path, "train", [(CITY, A, [[1, 10, 4, 8, 20, 1, 10, 4, 8, 20], [np.nan] * 10])])
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(mat))}: {re.escape(A)} row 2: row \[nan"):
        CityPersonsDetection(tmp_path, strict=True)


def test_unreadable_mat_files_name_the_file(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "anno_train.mat").write_text("class,x1,y1\n1,2,3\n")
    with pytest.raises(DatasetError, match=r"anno_train\.mat: not a readable MATLAB \.mat file"):
        CityPersonsDetection(tmp_path)
    path = tmp_path / "two.mat"
    scipy.io.savemat(str(path), {"a": cells([(CITY, A, ROWS_B)]), "b": np.zeros(2)})
    with pytest.raises(DatasetError, match=r"two\.mat: no variable 'anno_train_aligned' \(it holds a, b\)"):
        CityPersonsDetection(tmp_path, annotations=path)
    with pytest.raises(DatasetError, match=r"nope\.mat: no such annotation file"):
        CityPersonsDetection(tmp_path, annotations=tmp_path / "nope.mat")
    with pytest.raises(DatasetError, match=r"no CityPersons annotations for split 'val'"):
        CityPersonsDetection(tmp_path, split="val")


def test_annotations_option_and_single_entry_mat(tmp_path):
    """One image with one row: squeeze_me makes a bare struct and a vector of them; both still read."""
    write_mat(tmp_path, "val", [(CITY, B, ROWS_B)])
    other = tmp_path / "mine.mat"
    scipy.io.savemat(str(other), {"anno_test_aligned": cells([(CITY, B, ROWS_B)])})  # the one variable is used
    for ds in (CityPersonsDetection(tmp_path, "val"), CityPersonsDetection(tmp_path, "val", annotations=other)):
        assert ds.ids == [B[:-16]] and ds.records[0].boxes == [[5, 2, 15, 26]] and not ds.problems


def test_check_images_false_reads_annotations_alone(tmp_path):
    write_mat(tmp_path, "train", [(CITY, A, ROWS_A)], images=[])
    ds = CityPersonsDetection(tmp_path, check_images=False)
    record = ds.records[0]
    assert not ds.problems and (record.width, record.height) == (2048, 1024)
    assert record.boxes[2] == [58, 2, 68, 30]  # inside a 2048-wide image: nothing clipped


def write_json(root, split, stem, objects, text=None):
    path = root / "gtBboxCityPersons" / split / CITY / f"{stem}_gtBboxCityPersons.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else json.dumps({"imgHeight": H, "imgWidth": W, "objects": objects}))
    return path


def test_json_variant(tmp_path):
    objects = [{"label": "pedestrian", "bbox": [10, 4, 8, 20], "bboxVis": [12, 4, 6, 10], "instanceId": 24000},
               {"label": "person group", "bbox": [20, 6, 12, 20], "bboxVis": [20, 6, 12, 20], "instanceId": 0},
               {"label": "car", "bbox": [1, 1, 5, 5], "bboxVis": [1, 1, 5, 5], "instanceId": 0},
               {"label": "rider", "bbox": [1, 1, 5], "bboxVis": [1, 1, 5, 5], "instanceId": 1},
               {"label": "person (other)", "bbox": [40, 10, 5, 10], "bboxVis": [40, 10, 5, 10], "instanceId": 2}]
    good = write_json(tmp_path, "val", A[:-16], objects)
    broken = write_json(tmp_path, "val", B[:-16], None, text='{"objects": [')
    write_json(tmp_path, "val", C[:-16], [])  # its image is missing
    for name in (A, B):
        image(tmp_path / "leftImg8bit" / "val" / CITY / name)
    with pytest.warns(UserWarning, match="skipped 2 images and 2 objects"):
        ds = CityPersonsDetection(tmp_path, "val")
    _, target = ds[0]
    assert ds.ids == [A[:-16]] and ds.records[0].classes == [1, 5, 4]
    assert target["boxes"].tolist() == [[10, 4, 18, 24], [20, 6, 32, 26], [40, 10, 45, 20]]
    assert target["ignore"].tolist() == [False, True, True] and target["visibility"][0] == 60 / 160
    assert [str(p).split(": ")[:2] for p in ds.problems[:2]] == [[str(good), "object 3 (car)"],
                                                                 [str(good), "object 4 (rider)"]]
    assert "unknown label 'car'" in ds.problems[0].reason and "not [x, y, w, h]" in ds.problems[1].reason
    assert ds.problems[2].file == str(broken) and "malformed gtBboxCityPersons JSON" in ds.problems[2].reason
    assert ds.problems[3].file.endswith(C) and ds.problems[3].reason == "image file is missing"
    write_mat(tmp_path, "val", [(CITY, B, ROWS_B)])  # a .mat, when there is one, wins
    assert CityPersonsDetection(tmp_path, "val").ids == [B[:-16]]


def test_factory_opens_it(root):
    ds = open_dataset("citypersons", root, "train", filter=(20, 0.3))
    assert isinstance(ds, CityPersonsDetection) and len(ds) == 3
