"""The dataset table (repssd.data.factory), loader options, and the pedestrian fields the
transforms carry (visible boxes, visibility)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from repssd.data import CrowdHumanDetection, DatasetError, SSDTestTransform, SSDTrainTransform
from repssd.data.factory import DATASET_KINDS, TRAINING_ONLY, open_dataset, parse_data_options


def test_every_kind_says_how_it_opens_and_is_scored():
    assert {"voc", "voc0712", "coco", "crowdhuman", "synthetic", "folder", "pennfudan", "citypersons", "mot",
            "widerperson"} <= set(DATASET_KINDS)
    for kind in DATASET_KINDS.values():
        assert callable(kind.open) and kind.layout and kind.classes and kind.metric and kind.default_split


def test_unknown_kind_and_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset kind 'kitti'; known: voc, "):
        open_dataset("kitti", tmp_path, "train")
    with pytest.raises(DatasetError, match="nowhere: data root does not exist"):
        open_dataset("mot", tmp_path / "nowhere", "all")


def test_data_options_are_parsed_by_the_kinds_table():
    assert parse_data_options("mot", "frame_stride=5,min_visibility=0.25") == {"frame_stride": 5, "min_visibility": 0.25}
    assert parse_data_options("widerperson", "person_classes=1+2") == {"person_classes": (1, 2)}
    assert parse_data_options("citypersons", "filter=reasonable") == {"filter": "reasonable"}
    assert parse_data_options("citypersons", "filter=50/0.65") == {"filter": (50.0, 0.65)}
    assert parse_data_options("voc", "keep-difficult=yes") == {"keep_difficult": True}
    assert parse_data_options("mot", "", frame_stride=3) == {"frame_stride": 3}  # --frame-stride
    assert parse_data_options("mot", "frame_stride=2", frame_stride=None) == {"frame_stride": 2}  # None: not given


def test_training_only_options_stay_out_of_the_test_set():
    assert set(TRAINING_ONLY) == {"keep_difficult", "filter"}
    assert parse_data_options("citypersons", "filter=reasonable", training=False) == {}
    assert parse_data_options("voc", "", training=False, keep_difficult=False) == {}


@pytest.mark.parametrize("kind, text, given, message", [
    ("voc", "frame_stride=2", {}, "voc has no option 'frame_stride'; its options: keep_difficult"),
    ("coco", "box=vbox", {}, "coco has no option 'box'; its options: none"),
    ("mot", "frame_stride", {}, "'frame_stride' is not key=value"),
    ("mot", "frame_stride=two", {}, "frame_stride=two: invalid literal"),
    ("voc", "", {"frame_stride": 2}, "--frame-stride is for datasets that have it \\(mot\\), not voc"),
    ("kitti", "", {}, "unknown dataset kind 'kitti'"),
])
def test_bad_data_options_are_one_line(kind, text, given, message):
    with pytest.raises(DatasetError, match=message):
        parse_data_options(kind, text, **given)


def _pedestrian_target():
    return {"boxes": torch.tensor([[10.0, 10, 60, 90], [100, 20, 150, 80], [170, 10, 171, 12]]),
            "labels": torch.tensor([1, 1, 1]), "difficult": torch.zeros(3, dtype=torch.bool),
            "ignore": torch.tensor([False, False, True]), "size": torch.tensor([100, 200]),
            "visible": torch.tensor([[10.0, 10, 60, 50], [100, 20, 150, 80], [170, 10, 171, 12]]),
            "visibility": torch.tensor([0.5, 1.0, 0.25])}


def test_train_transform_moves_visible_boxes_with_their_boxes():
    image = np.random.default_rng(0).integers(0, 255, (100, 200, 3), dtype=np.uint8)
    target = _pedestrian_target()
    for seed in range(30):
        torch.manual_seed(seed)
        _, out = SSDTrainTransform(300, min_size=2)(image, target)
        n = len(out["boxes"])
        assert out["visible"].shape == (n, 4) and out["visibility"].shape == out["labels"].shape == (n,)
        # person 0 shows its top half (visibility 0.5), the others all of their box: each visible box
        # and visibility stays with its own box through crop, zoom-out and flip
        for box, visible, visibility in zip(out["boxes"], out["visible"], out["visibility"]):
            assert (visible[:2] >= box[:2] - 1e-6).all() and (visible[2:] <= box[2:] + 1e-6).all()
            if visibility == 0.5:
                torch.testing.assert_close(visible[[0, 2]], box[[0, 2]])
                assert visible[1] == box[1] or visible[1] == 0  # same top, unless cropped above it
                assert visible[3] < box[3] - 1e-3
            else:
                torch.testing.assert_close(visible, box)


def test_test_transform_normalises_visible_boxes():
    image = np.zeros((100, 200, 3), np.uint8)
    _, out = SSDTestTransform(300)(image, _pedestrian_target())
    torch.testing.assert_close(out["visible"][0], torch.tensor([0.05, 0.1, 0.3, 0.5]))
    torch.testing.assert_close(out["visibility"], torch.tensor([0.5, 1.0, 0.25]))


def test_crowdhuman_targets_carry_visible_boxes_and_visibility(tmp_path):
    (tmp_path / "Images").mkdir()
    Image.new("RGB", (100, 80)).save(tmp_path / "Images/a.jpg")
    lines = [{"ID": "a", "gtboxes": [
        {"tag": "person", "fbox": [10, 10, 20, 40], "vbox": [10, 10, 20, 10], "extra": {}},  # top quarter visible
        {"tag": "person", "fbox": [90, 0, 20, 40], "vbox": [85, 0, 10, 40], "extra": {}},    # vbox sticks out left
        {"tag": "mask", "fbox": [50, 50, 10, 10], "vbox": [50, 50, 10, 10]}]}]
    (tmp_path / "annotation_val.odgt").write_text("".join(json.dumps(line) + "\n" for line in lines))
    image, target = CrowdHumanDetection(tmp_path / "annotation_val.odgt", tmp_path / "Images")[0]
    torch.testing.assert_close(target["visibility"], torch.tensor([0.25, 0.25, 1.0]))
    torch.testing.assert_close(target["visible"][0], torch.tensor([10.0, 10, 30, 20]))
    torch.testing.assert_close(target["visible"][1], torch.tensor([90.0, 0, 95, 40]))  # within the clipped box
