import json

import cv2
import numpy as np
import pytest
import torch

from repssd.data import COCODetection, CrowdHumanDetection, DatasetError


def image(folder, name, h=40, w=60):
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / name), np.full((h, w, 3), 80, np.uint8))


COCO = {
    "images": [{"id": 7, "file_name": "a.jpg", "width": 60, "height": 40},
               {"id": 9, "file_name": "empty.jpg", "width": 60, "height": 40},
               {"id": 11, "file_name": "missing.jpg", "width": 60, "height": 40}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 18, "bbox": [1.5, 2, 10, 20], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [20, 5, 30, 30], "iscrowd": 1},
        {"id": 3, "image_id": 7, "category_id": 5, "bbox": [0, 0, 5, 5], "iscrowd": 0},
        {"id": 4, "image_id": 7, "category_id": 1, "bbox": [10, 10, 0, 5], "iscrowd": 0},
        {"id": 5, "image_id": 7, "category_id": 1, "bbox": [10, 10, 5], "iscrowd": 0},
    ],
    "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
}


def test_coco_ids_map_to_contiguous_labels_with_crowd_as_ignore(tmp_path):
    image(tmp_path / "img", "a.jpg")
    image(tmp_path / "img", "empty.jpg")
    (tmp_path / "ann.json").write_text(json.dumps(COCO))
    with pytest.warns(UserWarning, match="skipped 1 images and 3 objects"):
        ds = COCODetection(tmp_path / "ann.json", tmp_path / "img")
    assert ds.classes == ("person", "dog") and ds.category_ids == (1, 18)
    assert ds.ids == ["7", "9"]
    _, target = ds[0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[1.5, 2.0, 11.5, 22.0], [20.0, 5.0, 50.0, 35.0]]))
    assert target["labels"].tolist() == [2, 1] and target["ignore"].tolist() == [False, True]
    assert len(ds[1][1]["boxes"]) == 0  # an image without annotations is kept
    text = "\n".join(map(str, ds.problems))
    assert "annotation 3: unknown category_id 5" in text and "annotation 4: box" in text
    assert "annotation 5: bbox [10, 10, 5] is not [x, y, w, h]" in text and "missing.jpg: image file is missing" in text


@pytest.mark.parametrize("content, message", [
    (None, "no such annotation file"), ("{not json", "not valid JSON"),
    ('{"annotations": []}', "not a COCO detection file"),
    ('{"images": [{"id": 1}], "categories": [], "annotations": [{"id": 1}]}', "malformed COCO entry"),
])
def test_coco_unreadable_files_are_named(tmp_path, content, message):
    path = tmp_path / "ann.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=f"ann.json: {message}"):
        COCODetection(path, tmp_path)


def odgt_line(image_id, boxes):
    return json.dumps({"ID": image_id, "gtboxes": boxes})


def test_crowdhuman_fbox_vbox_masks_ignore_and_clipping(tmp_path):
    image(tmp_path / "Images", "x.jpg", h=50, w=80)
    lines = [odgt_line("x", [
        {"tag": "person", "fbox": [-5, 10, 30, 60], "vbox": [0, 10, 20, 30], "extra": {"ignore": 0}},
        {"tag": "person", "fbox": [40, 5, 10, 20], "vbox": [40, 5, 10, 10], "extra": {"ignore": 1}},
        {"tag": "mask", "fbox": [60, 0, 20, 20], "vbox": [60, 0, 20, 20]},
        {"tag": "person", "fbox": [100, 5, 10, 20], "vbox": [1, 1, 1, 1]},
    ]), "", "{broken json", odgt_line("missing", [])]
    (tmp_path / "a.odgt").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="skipped 2 images and 1 objects"):
        full = CrowdHumanDetection(tmp_path / "a.odgt", tmp_path / "Images")
    _, target = full[0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[0.0, 10.0, 25.0, 50.0], [40.0, 5.0, 50.0, 25.0],
                                                              [60.0, 0.0, 80.0, 20.0]]))
    assert target["ignore"].tolist() == [False, True, True] and target["labels"].tolist() == [1, 1, 1]
    text = "\n".join(map(str, full.problems))
    assert "a.odgt:3: malformed odgt line" in text and "missing.jpg: image file is missing" in text
    assert "a.odgt:1: gtbox 3 (person): box [100.0, 5.0, 110.0, 25.0] lies outside" in text
    with pytest.warns(UserWarning):
        visible = CrowdHumanDetection(tmp_path / "a.odgt", tmp_path / "Images", box="vbox")
    assert visible[0][1]["boxes"][0].tolist() == [0.0, 10.0, 20.0, 40.0] and len(visible[0][1]["boxes"]) == 4
    with pytest.raises(DatasetError, match="a.odgt:1: gtbox 3"):
        CrowdHumanDetection(tmp_path / "a.odgt", tmp_path / "Images", strict=True)


def test_an_image_claiming_too_many_pixels_is_an_unreadable_image_not_a_crash(tmp_path):
    from test_detect_cli import png_claiming
    image(tmp_path / "Images", "ok.jpg")
    (tmp_path / "Images" / "huge.jpg").write_bytes(png_claiming(60000, 60000))
    box = {"tag": "person", "fbox": [1, 1, 20, 20], "extra": {"ignore": 0}}
    (tmp_path / "a.odgt").write_text(odgt_line("huge", [box]) + "\n" + odgt_line("ok", [box]) + "\n")
    with pytest.warns(UserWarning, match="skipped 1 images"):
        data = CrowdHumanDetection(tmp_path / "a.odgt", tmp_path / "Images")
    assert data.ids == ["ok"] and "huge.jpg: unreadable image" in str(data.problems[0])
    # read after indexing (a COCO / VOC file gives the size itself): the decode refuses it in one line
    from repssd.inputs import InputError, read_image_rgb
    with pytest.raises(InputError, match="huge.jpg: cannot decode the image \\(more pixels than OpenCV decodes\\)"):
        read_image_rgb(tmp_path / "Images" / "huge.jpg")


def test_coco_annotations_of_unknown_images_are_recorded_not_dropped_silently(tmp_path):
    image(tmp_path / "img", "a.jpg")
    data = {"images": [{"id": 7, "file_name": "a.jpg", "width": 60, "height": 40}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 10, 20], "iscrowd": 0},
                            {"id": 2, "image_id": 99, "category_id": 1, "bbox": [1, 2, 10, 20], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "a.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="skipped 0 images and 1 objects"):
        coco = COCODetection(tmp_path / "a.json", tmp_path / "img")
    assert len(coco.records[0].boxes) == 1
    assert "annotation 2: image_id 99 is not in 'images'" in str(coco.problems[0])
    with pytest.raises(DatasetError, match="image_id 99 is not in 'images'"):
        COCODetection(tmp_path / "a.json", tmp_path / "img", strict=True)


@pytest.mark.parametrize("gtboxes", [{"tag": "person"}, "person", 3])
def test_crowdhuman_gtboxes_that_is_not_a_list_is_recorded(tmp_path, gtboxes):
    image(tmp_path / "Images", "x.jpg")
    (tmp_path / "a.odgt").write_text(odgt_line("x", gtboxes) + "\n")
    with pytest.warns(UserWarning, match="1 objects"):
        data = CrowdHumanDetection(tmp_path / "a.odgt", tmp_path / "Images")
    assert data.ids == ["x"] and "gtboxes is a" in str(data.problems[0]) and "not a list" in str(data.problems[0])


def test_a_non_utf8_odgt_is_a_dataset_error_naming_the_file(tmp_path):
    (tmp_path / "a.odgt").write_bytes(b'{"ID": "x", "gtboxes": []}\n\xff\xfe\x00garbage\n')
    with pytest.raises(DatasetError, match="a.odgt: not UTF-8 text"):
        CrowdHumanDetection(tmp_path / "a.odgt", tmp_path / "Images")
