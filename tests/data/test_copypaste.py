"""Crowd copy-paste: placement (counts, IoU with an anchor, ignore regions), back-to-front pixels,
exact visibility on a hand-built scene, reproducibility, the person bank's held-out check, the
chain into SSDTrainTransform, COCO masks, and the train.py / stats options. Synthetic images only."""
import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import train as train_cli
from repssd.data import DatasetError, PennFudanDetection, SSDTrainTransform
from repssd.data import stats as stats_cli
from repssd.data.coco import COCODetection, decode_segmentation
from repssd.data.copypaste import (Compose, CrowdCopyPaste, Cutout, DropKeys, PersonBank, Placement,
                                   copy_paste_then, paste_people, parse_copy_paste)
from repssd.engine.config import ConfigError, parse_config
from repssd.engine.trainer import Trainer

from pedestrian_trees import pennfudan

RED, GREEN, BLUE = (200, 0, 0), (0, 200, 0), (0, 0, 200)


def cutout(height, width, colour, source="s0"):
    """A uniformly coloured person whose mask fills its box (so resizing keeps alpha at 1)."""
    return Cutout(np.full((height, width, 3), colour, np.uint8), np.ones((height, width), bool), source)


def bank(count=4, height=40, width=16):
    return PersonBank([cutout(height, width, (40 * k + 40, 255 - 40 * k, 100), f"s{k}") for k in range(count)])


def scene(boxes, width=240, height=160, ignore=(), masks=True, colours=None):
    """A black image with people drawn as filled boxes; target with their masks (optionally)."""
    image = np.zeros((height, width, 3), np.uint8)
    full = np.zeros((len(boxes), height, width), bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        if k not in ignore:
            image[y1:y2, x1:x2] = colours[k] if colours else (120, 120, 120)
        full[k, y1:y2, x1:x2] = True
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
              "labels": torch.ones(len(boxes), dtype=torch.int64),
              "difficult": torch.zeros(len(boxes), dtype=torch.bool),
              "ignore": torch.tensor([k in ignore for k in range(len(boxes))], dtype=torch.bool),
              "size": torch.tensor([height, width])}
    if masks:
        target["masks"] = torch.from_numpy(full)
    return image, target


def iou(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("masks", [True, False])
def test_pasted_people_stand_next_to_an_anchor_at_the_asked_overlap(masks):
    image, target = scene([(100, 60, 124, 120)], masks=masks)
    paste = CrowdCopyPaste(bank(), per_image=(3, 3), overlap=(0.3, 0.6), scale=(0.9, 1.1), min_visibility=0)
    for seed in range(8):
        torch.manual_seed(seed)
        out, result = paste(image, target)
        boxes = result["boxes"].numpy()
        assert out.shape == image.shape and out.dtype == np.uint8
        assert len(boxes) == 4 and result["labels"].tolist() == [1] * 4 and not result["ignore"].any()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 240).all() and (boxes[:, 3] <= 160).all()
        for j in range(1, 4):
            earlier = [(iou(boxes[j], boxes[k]), k) for k in range(j)]
            # some earlier person is its anchor: IoU in overlap and height within scale (1 px rounding)
            assert any(0.3 <= v <= 0.6 and 0.9 * (boxes[k, 3] - boxes[k, 1]) - 1 <= boxes[j, 3] - boxes[j, 1]
                       <= 1.1 * (boxes[k, 3] - boxes[k, 1]) + 1 for v, k in earlier)
            assert all(iou(boxes[j], boxes[k]) <= 0.6 for k in range(4) if k != j)  # no near-duplicates
            if not masks:  # annotated people stay background: pasted ones stand in front of them
                assert iou(boxes[j], boxes[0]) == 0 or boxes[j, 3] >= boxes[0, 3]
        assert ("masks" in result) == masks and len(result["visible"]) == len(result["visibility"]) == 4


def test_hand_built_scene_composes_back_to_front_with_exact_visibility():
    # annotated A (feet 60) with its mask; pasted B in front (feet 65), pasted C behind (feet 55)
    image, target = scene([(30, 20, 50, 60)], width=100, height=80, colours=[RED])
    b = Placement(cutout(50, 20, BLUE), (40, 15, 60, 65))
    c = Placement(cutout(30, 20, GREEN), (15, 25, 35, 55))
    out, result = paste_people(image, target, [b, c])
    assert (out[20:60, 40:50] == BLUE).all()  # B hides A's right half
    assert (out[25:55, 30:35] == RED).all()  # A is redrawn over C, which stands behind it
    assert (out[25:55, 15:30] == GREEN).all() and (out[15:65, 50:60] == BLUE).all() and (out[5, 5] == 0).all()
    assert result["boxes"].tolist() == [[30, 20, 50, 60], [40, 15, 60, 65], [15, 25, 35, 55]]
    assert result["visible"].tolist() == [[30, 20, 40, 60], [40, 15, 60, 65], [15, 25, 30, 55]]
    assert result["visibility"].tolist() == [0.5, 1.0, 0.75]  # 400/800, 1000/1000, 450/600
    assert result["labels"].tolist() == [1, 1, 1] and not result["ignore"].any() and not result["difficult"].any()
    masks = result["masks"].numpy()
    assert masks.shape == (3, 80, 100) and masks.sum((1, 2)).tolist() == [400, 1000, 450]
    assert masks[0, 20:60, 30:40].all() and not (masks.sum(0) > 1).any()  # visible masks: disjoint
    # without masks A is background (pasted ones in front): its box stands in for its silhouette
    _, flat = paste_people(image, {k: v for k, v in target.items() if k != "masks"}, [b])
    assert flat["visible"].tolist()[0] == [30, 20, 40, 60] and flat["visibility"].tolist() == [0.5, 1.0]
    assert "masks" not in flat
    # hidden below min_visibility by pasting: an ignore region, not a positive nobody can see
    _, hidden = paste_people(image, target, [b, c], min_visibility=0.6)
    assert hidden["ignore"].tolist() == [True, False, False]


@pytest.mark.parametrize("masks", [True, False])
def test_the_nearer_person_wins_every_overlapping_pixel(masks):
    colours = [(250, 10, 10), (10, 250, 10)]
    image, target = scene([(60, 40, 84, 110), (150, 50, 170, 105)], masks=masks, colours=colours)
    people = PersonBank([cutout(40, 16, (20 + 30 * k, 30, 255 - 30 * k), f"s{k}") for k in range(6)])
    paste = CrowdCopyPaste(people, per_image=(4, 6), overlap=(0.2, 0.7))
    for seed in range(6):
        placements = paste.place(target, image.shape[:2], np.random.default_rng(seed))
        out, result = paste_people(image, target, placements)
        colour = np.array(colours + [p.cutout.pixels[0, 0] for p in placements])
        boxes = result["boxes"].numpy().astype(int)
        # painter's rule, independently: each pixel shows the person with the lowest feet (ties:
        # the later one) among those whose box (= mask here) holds it
        owner = np.full(image.shape[:2], -1)
        for k in sorted(range(len(boxes)), key=lambda k: (boxes[k, 3], k)):
            owner[boxes[k, 1]:boxes[k, 3], boxes[k, 0]:boxes[k, 2]] = k
        assert len(placements) >= 3 and np.array_equal(out[owner >= 0], colour[owner[owner >= 0]])
        assert (out[owner < 0] == 0).all()


def test_ignore_regions_are_left_alone_and_never_mostly_covered():
    image, target = scene([(0, 0, 120, 160), (110, 60, 134, 120)], ignore=(0,))
    paste = CrowdCopyPaste(bank(), per_image=(4, 4), overlap=(0.3, 0.6))
    for seed in range(6):
        torch.manual_seed(seed)
        _, result = paste(image, target)
        assert result["boxes"][0].tolist() == [0, 0, 120, 160] and result["ignore"][0]
        assert result["visibility"][0] == 1 and result["visible"][0].tolist() == [0, 0, 120, 160]
        assert torch.equal(result["masks"][0], target["masks"][0])
        for box in result["boxes"][2:].numpy():
            inside = max(0, min(box[2], 120) - box[0]) * (box[3] - box[1])
            assert inside <= 0.5 * (box[2] - box[0]) * (box[3] - box[1])


def test_same_seed_same_image_and_target():
    image, target = scene([(100, 60, 124, 120)])
    paste = CrowdCopyPaste(bank(), feather=1.0)
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        runs.append(paste(image, target))
    (a, ta), (b, tb), (c, tc) = runs
    assert np.array_equal(a, b) and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not np.array_equal(a, c)


def test_p_zero_pastes_nobody_but_adds_visibility():
    image, target = scene([(100, 60, 124, 120)])
    out, result = CrowdCopyPaste(bank(), p=0.0)(image, target)
    assert np.array_equal(out, image) and result["boxes"].tolist() == [[100, 60, 124, 120]]
    assert result["visibility"].tolist() == [1.0] and result["visible"].tolist() == [[100, 60, 124, 120]]


def test_an_image_without_people_gets_people_anywhere():
    image, target = scene([])
    _, result = CrowdCopyPaste(bank(), per_image=(2, 2))(image, target)
    assert len(result["boxes"]) == 2 and result["masks"].shape == (2, 160, 240)


class FakeDataset:
    """One 100x80 image: a good person, one touching the border, one with a tiny mask."""

    classes = ("person",)
    records = [SimpleNamespace(id="img7")]

    def load(self, index):
        image, target = scene([(10, 10, 30, 70), (70, 20, 100, 80), (40, 10, 60, 70)], width=100, height=80)
        target["masks"][2] = False
        target["masks"][2, 30:40, 45:50] = True  # 50 px in a 20x60 box
        return image, target


def test_bank_keeps_whole_people_and_refuses_held_out_ids(tmp_path):
    people = PersonBank.from_dataset(FakeDataset())
    assert len(people) == 1 and people[0].pixels.shape == (60, 20, 3) and people[0].mask.all()
    assert people.sources == {"img7"}
    people.check_held_out(["img1", "img2"], "test")
    with pytest.raises(DatasetError, match="1 test images \\(e.g. img7\\)"):
        people.check_held_out(["img7"], "test")
    root, train, test = pennfudan(tmp_path / "pf")
    people = PersonBank.from_dataset(PennFudanDetection(root, train, masks=True))
    # the tree's first person is half hidden by the second (nearer): left out
    assert len(people) == 4 and people.sources == {"FudanPed00001", "FudanPed00002"}
    people.check_held_out(PennFudanDetection(root, test).ids)
    with pytest.raises(DatasetError, match="masks=True"):
        PersonBank.from_dataset(PennFudanDetection(root, train))
    with pytest.raises(ValueError, match="empty"):
        CrowdCopyPaste(PersonBank([]))


def test_chained_before_the_ssd_transform_targets_stay_consistent(tmp_path):
    image, target = scene([(100, 60, 124, 120), (0, 0, 40, 40)], ignore=(1,))
    chain = copy_paste_then(CrowdCopyPaste(bank(), per_image=(3, 5)), SSDTrainTransform(64, zoom_out=1.0))
    assert isinstance(chain, Compose) and isinstance(chain.transforms[1], DropKeys)
    for seed in range(5):
        torch.manual_seed(seed)
        tensor, result = chain(image, target)
        assert tensor.shape == (3, 64, 64) and "masks" not in result
        n = len(result["boxes"])
        assert all(len(result[k]) == n for k in ("labels", "difficult", "ignore", "visibility", "visible"))
        assert (result["boxes"] >= 0).all() and (result["boxes"] <= 1).all()
        inside = (result["visible"][:, :2] >= result["boxes"][:, :2] - 1e-5).all(1) & \
                 (result["visible"][:, 2:] <= result["boxes"][:, 2:] + 1e-5).all(1)
        assert inside.all()
    root, train, _ = pennfudan(tmp_path / "pf")
    ds = PennFudanDetection(root, train, masks=True)
    ds.transform = copy_paste_then(CrowdCopyPaste(PersonBank.from_dataset(ds)), SSDTrainTransform(64))
    tensor, result = ds[0]
    assert tensor.shape == (3, 64, 64) and len(result["visibility"]) == len(result["boxes"])


def test_options_parse_and_fail_in_one_line():
    assert parse_copy_paste("per_image=2-6, overlap=0.3-0.7,p=1.0,flip=false,scale=1") == {
        "per_image": (2, 6), "overlap": (0.3, 0.7), "p": 1.0, "flip": False, "scale": (1.0, 1.0)}
    assert parse_copy_paste("") == {}
    for text, message in [("per_image=6-2", "per_image=6-2: needs 0 <= A <= B"), ("density=3", "unknown option"),
                          ("overlap=a-b", "overlap=a-b: not a valid range"), ("p", "'p' is not key=value"),
                          ("overlap=0.5-1.0", "needs 0 <= A <= B < 1")]:
        with pytest.raises(ValueError, match=message):
            parse_copy_paste(text)


def write_coco(root):
    """An 8x6 image: a person polygon, a crowd region in uncompressed RLE, a person in compressed RLE."""
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((6, 8, 3), np.uint8))
    crowd = np.zeros((6, 8), np.uint8)
    crowd[3:6, 5:8] = 1
    runs = _runs(crowd)
    person = np.zeros((6, 8), np.uint8, order="F")
    person[0:2, 0:2] = 1
    compressed = mask_utils.encode(person)
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 6}],
            "categories": [{"id": 1, "name": "person"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 1, 3, 3], "iscrowd": 0,
                 "segmentation": [[2, 1, 5, 1, 5, 4, 2, 4]]},
                {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 3, 3, 3], "iscrowd": 1,
                 "segmentation": {"counts": runs, "size": [6, 8]}},
                {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "iscrowd": 0,
                 "segmentation": {"counts": compressed["counts"].decode(), "size": [6, 8]}}]}
    (root / "a.json").write_text(json.dumps(data))
    return root / "a.json", root / "images", crowd.astype(bool), person.astype(bool)


def _runs(mask):
    """COCO's uncompressed RLE: alternating 0 / 1 run lengths in column-major order, from 0s."""
    flat, runs, value, count = mask.flatten(order="F"), [], 0, 0
    for pixel in flat:
        if pixel != value:
            runs.append(count)
            value, count = pixel, 0
        count += 1
    return runs + [count]


def test_coco_masks_decode_polygons_and_rle(tmp_path):
    annotation, images, crowd, person = write_coco(tmp_path)
    ds = COCODetection(annotation, images, masks=True)
    _, target = ds.load(0)
    masks = target["masks"].numpy()
    polygon = np.zeros((6, 8), bool)
    polygon[1:4, 2:5] = True  # pycocotools' rasterisation of the square (2,1)-(5,4)
    assert masks.shape == (3, 6, 8) and masks.dtype == bool
    assert np.array_equal(masks[0], polygon) and np.array_equal(masks[1], crowd) and np.array_equal(masks[2], person)
    assert target["ignore"].tolist() == [False, True, False]  # the crowd stays an ignore region, with its mask
    assert "masks" not in COCODetection(annotation, images).load(0)[1]
    assert not decode_segmentation([[1, 2, 3, 4]], 6, 8).any() and not decode_segmentation(None, 6, 8).any()
    assert not decode_segmentation({"counts": [48], "size": [4, 12]}, 6, 8).any()  # another size
    with pytest.raises(ValueError, match="does not move target\\['masks'\\]"):
        COCODetection(annotation, images, SSDTrainTransform(64), masks=True)
    people = PersonBank.from_dataset(ds, min_height=1, border=0)
    assert len(people) == 2 and people.sources == {"1"}  # the crowd region is not a person to paste


def train_args(root, out, *extra):
    return ["--model", "mb1_ssdlite", "--width-mult", "0.25", "--dataset", "pennfudan", "--data-root", str(root),
            "--train-split", "train", "--test-split", "test", "--batch-size", "2", "--workers", "0",
            "--output-dir", str(out), "--log-every", "1", "--checkpoint-every", "2", "--no-eval-at-end",
            "--max-iter", "2", *extra]


def test_train_with_copy_paste_end_to_end(tmp_path):
    root, _, _ = pennfudan(tmp_path / "pf")
    trainer = Trainer(parse_config(train_args(root, tmp_path / "run", "--copy-paste", "per_image=1-2")))
    paste = trainer.train_set.transform.transforms[0]
    assert isinstance(paste, CrowdCopyPaste) and paste.bank.sources <= set(trainer.train_set.ids)
    record = trainer.fit()
    assert record["iter"] == 2 and np.isfinite(record["loss"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["copy_paste"] == "per_image=1-2"
    with pytest.raises(ConfigError, match="--copy-paste: the person bank holds people of 2 --test-split 'train'"):
        Trainer(parse_config(train_args(root, tmp_path / "leak", "--copy-paste", "p=1", "--test-split", "train")))


@pytest.mark.parametrize("option, message", [
    ("per_image=6-2", "--copy-paste: per_image=6-2: needs 0 <= A <= B"),
    ("crowd=yes", "--copy-paste: unknown option 'crowd'"),
])
def test_train_copy_paste_errors_are_one_line(tmp_path, capsys, option, message):
    root, _, _ = pennfudan(tmp_path / "pf")
    assert train_cli.main(train_args(root, tmp_path / "run", "--copy-paste", option)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_train_copy_paste_needs_a_dataset_with_masks(tiny_data, tmp_path, capsys):
    argv = train_args(tiny_data, tmp_path / "run", "--copy-paste", "per_image=2")
    argv[argv.index("pennfudan")] = "synthetic"
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--copy-paste needs instance masks, which --dataset synthetic does not give" in err
    assert err.count("\n") == 1


def test_stats_after_copy_paste(tmp_path, capsys, tiny_data):
    root, _, _ = pennfudan(tmp_path / "pf")
    assert stats_cli.main(["pennfudan", str(root), "--split", "train", "--copy-paste", "per_image=2-2",
                           "--samples", "3"]) == 0
    text = capsys.readouterr().out
    assert "images: 3" in text and "this set" in text and "visibility of the persons" in text
    assert stats_cli.main(["synthetic", str(tiny_data), "--split", "train", "--copy-paste", "p=1"]) == 2
    err = capsys.readouterr().err
    assert "needs instance masks" in err and err.count("\n") == 1


def test_distant_group_is_pasted_at_the_asked_heights_and_anchored_on_itself():
    # one large annotated person; the group (height 20-30 px, scale 1) must not stand next to it
    image, target = scene([(100, 20, 160, 150)], masks=True)
    paste = CrowdCopyPaste(bank(height=60, width=24), per_image=(4, 4), overlap=(0.3, 0.6), scale=(1.0, 1.0),
                           height=(20, 30), min_visibility=0)
    for seed in range(6):
        torch.manual_seed(seed)
        _, result = paste(image, target)
        pasted = result["boxes"].numpy()[1:]
        assert len(pasted) >= 2
        heights = pasted[:, 3] - pasted[:, 1]
        assert ((heights >= 19) & (heights <= 31)).all()  # U(height), next ones at scale 1 (1 px rounding)
        for j in range(1, len(pasted)):  # each later member stands next to an earlier member
            assert any(0.3 <= iou(pasted[j], pasted[k]) <= 0.6 for k in range(j))
        assert all(iou(box, result["boxes"].numpy()[0]) <= 0.6 for box in pasted)
    assert parse_copy_paste("height=40-160")["height"] == (40.0, 160.0)
    with pytest.raises(ValueError, match="height"):
        parse_copy_paste("height=0-10")
