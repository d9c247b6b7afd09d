"""VOCDetection on hand-written annotation files with real-world quirks and bad input."""
import cv2
import numpy as np
import pytest
import torch

from repssd.data import DatasetError, VOCDetection, read_classes, voc0712

GOOD = """<annotation>
  <filename>a.jpg</filename>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <object><name>person</name><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>
    <part><name>head</name><bndbox><xmin>5</xmin><ymin>2</ymin><xmax>12</xmax><ymax>9</ymax></bndbox></part>
  </object>
  <object><name> dog </name>
    <bndbox><xmin> 10.5 </xmin><ymin>5.25</ymin><xmax>60.0</xmax><ymax>47</ymax></bndbox>
  </object>
  <object><name>person</name><difficult>1</difficult>
    <bndbox><xmin>33</xmin><ymin>3</ymin><xmax>50</xmax><ymax>44</ymax></bndbox>
  </object>
</annotation>"""


def write_voc(root, annotations: dict, images=None, image_set="trainval"):
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id, xml in annotations.items():
        if xml is not None:
            (root / "Annotations" / f"{image_id}.xml").write_text(xml)
        if images is None or image_id in images:
            cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), np.full((48, 64, 3), 100, np.uint8))
    (root / "ImageSets" / "Main" / f"{image_set}.txt").write_text("\n".join(annotations) + "\n")
    return root


def test_quirks_float_coordinates_missing_difficult_whitespace_parts(tmp_path):
    ds = VOCDetection(write_voc(tmp_path, {"a": GOOD}))
    image, target = ds[0]
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    # 1-based VOC values minus 1; <part> boxes are not objects; floats and spaces parse.
    torch.testing.assert_close(target["boxes"], torch.tensor([[0.0, 1.0, 29.0, 39.0], [9.5, 4.25, 59.0, 46.0],
                                                              [32.0, 2.0, 49.0, 43.0]]))
    assert target["labels"].tolist() == [15, 12, 15]  # person, dog among the 20 VOC classes
    assert target["difficult"].tolist() == [False, False, True]
    assert target["ignore"].tolist() == [False, False, False] and target["size"].tolist() == [48, 64]
    assert ds.ids == ["a"] and ds.problems == []


def test_keep_difficult_false_drops_them(tmp_path):
    ds = VOCDetection(write_voc(tmp_path, {"a": GOOD}), keep_difficult=False)
    assert ds[0][1]["labels"].tolist() == [15, 12]


def test_custom_classes_and_unknown_names_are_reported(tmp_path):
    root = write_voc(tmp_path, {"a": GOOD})
    (root / "classes.txt").write_text("person\ncat\n")
    with pytest.warns(UserWarning, match="skipped 0 images and 1 objects"):
        ds = VOCDetection(root, classes=read_classes(root))
    assert ds.classes == ("person", "cat") and ds[0][1]["labels"].tolist() == [1, 1]
    assert "a.xml: object 1 (dog): unknown class 'dog'; classes: person, cat" in str(ds.problems[0])
    with pytest.raises(DatasetError, match="object 1 \\(dog\\): unknown class"):
        VOCDetection(root, classes=("person", "cat"), strict=True)


BAD_BOXES = """<annotation><size><width>64</width><height>48</height></size>
  <object><name>cat</name><bndbox><xmin>20</xmin><ymin>5</ymin><xmax>10</xmax><ymax>30</ymax></bndbox></object>
  <object><name>cat</name><bndbox><xmin>nan</xmin><ymin>5</ymin><xmax>10</xmax><ymax>30</ymax></bndbox></object>
  <object><name>cat</name><bndbox><xmin>100</xmin><ymin>5</ymin><xmax>120</xmax><ymax>30</ymax></bndbox></object>
  <object><name>cat</name><bndbox><xmin>5</xmin><ymin>5</ymin><ymax>30</ymax></bndbox></object>
  <object><name>cat</name><bndbox><xmin>50</xmin><ymin>5</ymin><xmax>90</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


def test_bad_boxes_are_named_and_skipped_or_raise(tmp_path):
    root = write_voc(tmp_path, {"b": BAD_BOXES})
    with pytest.warns(UserWarning, match="4 objects"):
        ds = VOCDetection(root)
    reasons = [str(p) for p in ds.problems]
    assert "object 0 (cat): box [19.0, 4.0, 9.0, 29.0] has x2 <= x1" in reasons[0]
    assert "object 1 (cat)" in reasons[1] and "NaN" in reasons[1]
    assert "object 2 (cat)" in reasons[2] and "outside the 64x48 image" in reasons[2]
    assert "object 3 (cat)" in reasons[3] and "not 4 numbers" in reasons[3]
    # the last box sticks out of the image: clipped, kept
    assert ds[0][1]["boxes"].tolist() == [[49.0, 4.0, 64.0, 29.0]]
    with pytest.raises(DatasetError, match="b.xml: object 0 \\(cat\\): box .* x2 <= x1"):
        VOCDetection(root, strict=True)


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><size><width>64</width><height>48</height></size><object><name>&lol3;</name></object></annotation>"""


def test_malformed_xml_entity_bomb_and_missing_files(tmp_path):
    annotations = {"a": GOOD, "bomb": BOMB, "broken": "<annotation><size>", "noxml": None,
                   "noimage": GOOD.replace("a.jpg", "noimage.jpg")}
    root = write_voc(tmp_path, annotations, images={"a", "bomb", "broken", "noxml"})
    with pytest.warns(UserWarning, match="skipped 4 images"):
        ds = VOCDetection(root)
    assert ds.ids == ["a"]
    text = "\n".join(str(p) for p in ds.problems)
    assert "bomb.xml: malformed XML (EntitiesForbidden" in text
    assert "broken.xml: malformed XML (ParseError" in text
    assert "noxml.xml: annotation file is missing" in text
    assert "noimage.jpg: image file is missing" in text
    with pytest.raises(DatasetError, match="bomb.xml: malformed XML"):
        VOCDetection(root, strict=True)


def test_corrupt_image_is_skipped_at_load_and_counted(tmp_path):
    root = write_voc(tmp_path, {"a": GOOD, "b": GOOD})
    (root / "JPEGImages" / "a.jpg").write_bytes(b"\xff\xd8 truncated")
    ds = VOCDetection(root)
    with pytest.warns(UserWarning, match="a.jpg: cannot decode the image"):
        image, target = ds[0]
    assert image.shape == (48, 64, 3)  # b's image stands in
    assert len(ds.problems) == 1 and ds.problems[0].skipped == "image"
    with pytest.raises(DatasetError, match="a.jpg: cannot decode"):
        VOCDetection(root, strict=True)[0]


def test_missing_layout_and_image_set_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a VOC-layout folder \\(no Annotations/"):
        VOCDetection(tmp_path)
    root = write_voc(tmp_path, {"a": GOOD}, image_set="train")
    with pytest.raises(DatasetError, match="test.txt: no such image set; this folder has: train"):
        VOCDetection(root, "test")


def test_voc0712_concatenates_years(tmp_path):
    write_voc(tmp_path / "VOC2007", {"a": GOOD})
    write_voc(tmp_path / "VOC2012", {"x": GOOD, "y": GOOD})
    ds = voc0712(tmp_path)
    assert len(ds) == 3 and ds[2][1]["labels"].tolist() == [15, 12, 15]
