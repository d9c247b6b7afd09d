"""The synthetic crowd dataset: deterministic, crowded, the same scenes in three formats."""
import hashlib

import numpy as np
import pytest
import torch

from repssd.data import COCODetection, CrowdHumanDetection, VOCDetection, collate, read_classes, SSDTestTransform
from repssd.data.stats import dataset_stats, format_stats, main as stats_main
from repssd.data.synthetic import generate, main, render_scene


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, train=12, test=4, seed=3, size=160)
    return root


def digest(folder):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_generation_is_deterministic_and_prefix_stable(tmp_path, synthetic):
    generate(tmp_path / "again", train=12, test=4, seed=3, size=160)
    assert digest(tmp_path / "again") == digest(synthetic)
    generate(tmp_path / "fewer", train=5, test=1, seed=3, size=160)
    for i in range(5):  # scene i does not depend on how many are generated
        name = f"JPEGImages/train_{i:06d}.jpg"
        assert (tmp_path / "fewer" / name).read_bytes() == (synthetic / name).read_bytes()
    generate(tmp_path / "other", train=2, test=0, seed=4, size=160)
    assert (tmp_path / "other/JPEGImages/train_000000.jpg").read_bytes() != (synthetic / "JPEGImages/train_000000.jpg").read_bytes()


def test_scenes_are_crowded_with_two_classes():
    rng = np.random.default_rng(0)
    labels, crowd, total = set(), 0, 0
    from repssd.eval.crowd import crowd_mask
    for _ in range(30):
        scene = render_scene(rng, size=200)
        labels |= set(scene.labels)
        mask = crowd_mask(torch.tensor(scene.full), torch.tensor(scene.labels))
        crowd, total = crowd + int(mask.sum()), total + len(scene.labels)
        assert len(scene.visible) == len(scene.full) == len(scene.head) == len(scene.labels)
        for full, vis in zip(scene.full, scene.visible):  # visible parts lie within the full extent
            assert vis[0] >= np.floor(full[0]) - 1 and vis[2] <= np.ceil(full[2]) + 1
    assert labels == {1, 2} and 0.3 < crowd / total < 0.9


def test_three_formats_hold_the_same_objects(synthetic):
    voc = VOCDetection(synthetic, "train", classes=read_classes(synthetic))
    coco = COCODetection(synthetic / "coco/instances_train.json", synthetic / "JPEGImages")
    crowdhuman = CrowdHumanDetection(synthetic / "crowdhuman/annotation_train.odgt", synthetic / "JPEGImages")
    assert voc.classes == coco.classes == ("person", "car") and len(voc) == len(coco) == len(crowdhuman) == 12
    assert not voc.problems and not coco.problems and not crowdhuman.problems
    for i in range(12):
        v, c, h = voc.records[i], coco.records[i], crowdhuman.records[i]
        assert v.labels == c.labels
        # VOC stores 1-based inclusive whole pixels (loaded minus 1), COCO continuous xywh
        np.testing.assert_allclose(np.array(v.boxes) + [0, 0, 1, 1], c.boxes, atol=0.51)
        persons = [b for b, label in zip(c.boxes, c.labels) if label == 1]
        cars = [b for b, label in zip(c.boxes, c.labels) if label == 2]
        np.testing.assert_allclose([b for b, ig in zip(h.boxes, h.ignore) if not ig], np.array(persons).reshape(-1, 4),
                                   atol=0.02)
        assert sum(h.ignore) == len(cars)  # cars are CrowdHuman "mask" regions
    # the crowdhuman folder is a CrowdHuman layout of its own (Images/ links to the JPEGs)
    from repssd.data.factory import open_dataset
    folder = open_dataset("crowdhuman", synthetic / "crowdhuman", "train")
    assert [r.boxes for r in folder.records] == [r.boxes for r in crowdhuman.records]


def test_loads_into_a_training_batch(synthetic):
    ds = VOCDetection(synthetic, "test", classes=read_classes(synthetic), transform=SSDTestTransform(96))
    batch = collate([ds[i] for i in range(4)])
    assert batch["images"].shape == (4, 3, 96, 96) and batch["images"].dtype == torch.uint8
    assert batch["gt_boxes"].shape[:2] == batch["gt_labels"].shape == batch["gt_valid"].shape
    assert batch["gt_valid"].sum() == sum(len(ds.records[i].boxes) for i in range(4))


def test_stats_cli(synthetic, capsys):
    assert stats_main(["voc", str(synthetic), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "images: 12" in out and "crowd boxes:" in out and "boxes per image:" in out
    stats = dataset_stats(VOCDetection(synthetic, "train", classes=read_classes(synthetic)))
    assert sum(stats["boxes"].values()) == sum(len(r.boxes) for r in VOCDetection(synthetic, "train", classes=read_classes(synthetic)).records)
    assert stats_main(["coco", str(synthetic / "coco/instances_test.json")]) == 2
    assert "needs --images" in capsys.readouterr().err


def test_generator_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "d"), "--train", "2", "--test", "1", "--size", "96"]) == 0
    assert "train: 2 images" in capsys.readouterr().out
    assert (tmp_path / "d/ImageSets/Main/trainval.txt").read_text().split() == ["train_000000", "train_000001"]
    assert main(["--out", str(tmp_path / "e"), "--size", "10"]) == 2


def test_val_split_in_every_format_and_in_trainval(tmp_path):
    root = tmp_path / "v"
    counts = generate(root, train=3, test=2, seed=3, size=160, val=2)
    assert counts["val"]["images"] == 2
    ids = (root / "ImageSets/Main/val.txt").read_text().split()
    assert ids == ["val_000000", "val_000001"]
    assert (root / "ImageSets/Main/trainval.txt").read_text().split() == [f"train_{i:06d}" for i in range(3)] + ids
    voc = VOCDetection(root, "val", classes=read_classes(root))
    coco = COCODetection(root / "coco/instances_val.json", root / "JPEGImages")
    crowdhuman = CrowdHumanDetection(root / "crowdhuman/annotation_val.odgt", root / "JPEGImages")
    assert len(voc) == len(coco) == len(crowdhuman) == 2 and not voc.problems
    # val scenes are their own: not copies of train or test scenes, and adding them changes nothing else
    images = {p.name: p.read_bytes() for p in (root / "JPEGImages").iterdir()}
    assert images["val_000000.jpg"] not in (images["train_000000.jpg"], images["test_000000.jpg"])
    generate(tmp_path / "noval", train=3, test=2, seed=3, size=160)
    assert (tmp_path / "noval/JPEGImages/test_000001.jpg").read_bytes() == images["test_000001.jpg"]


def test_dense_preset_is_denser(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "dense"), "--train", "0", "--test", "12", "--preset", "dense"]) == 0
    assert main(["--out", str(tmp_path / "default"), "--train", "0", "--test", "12"]) == 0
    assert main(["--out", str(tmp_path / "nan"), "--density", "nan"]) == 2
    assert not (tmp_path / "nan").exists()  # refused before anything is written
    capsys.readouterr()
    per_image = {}
    for name in ("dense", "default"):
        ds = VOCDetection(tmp_path / name, "test", classes=read_classes(tmp_path / name))
        per_image[name] = dataset_stats(ds)
    assert per_image["dense"]["persons_per_image"] > 1.5 * per_image["default"]["persons_per_image"]
    assert per_image["dense"]["pairs_03"] > per_image["default"]["pairs_03"]


def test_crowd_statistics_by_hand(tmp_path, capsys):
    """Persons per image, same-class pairs with IoU > 0.3 / 0.5, occlusion shares from vbox / fbox."""
    from PIL import Image
    (tmp_path / "img").mkdir()
    Image.new("RGB", (100, 100)).save(tmp_path / "img/a.jpg")
    Image.new("RGB", (100, 100)).save(tmp_path / "img/b.jpg")
    person = lambda f, v: {"tag": "person", "fbox": f, "vbox": v, "extra": {}}  # noqa: E731
    lines = [{"ID": "a", "gtboxes": [person([0, 0, 10, 10], [0, 0, 10, 10]),        # bare (visible 1.0)
                                     person([2, 0, 10, 10], [2, 0, 5, 10]),         # IoU 80/120 with the first; 0.5
                                     person([50, 50, 10, 10], [50, 50, 2, 10]),     # heavy (0.2)
                                     {"tag": "mask", "fbox": [0, 0, 10, 10], "vbox": [0, 0, 10, 10]}]},
             {"ID": "b", "gtboxes": [person([0, 0, 10, 10], [0, 0, 10, 4]),         # IoU 40/160 with the next; 0.4
                                     person([6, 0, 10, 10], [6, 0, 10, 10])]}]      # bare
    odgt = tmp_path / "a.odgt"
    odgt.write_text("".join(__import__("json").dumps(line) + "\n" for line in lines))
    stats = dataset_stats(CrowdHumanDetection(odgt, tmp_path / "img"))
    assert stats["persons_per_image"] == 2.5  # 5 persons (the mask region is not one) in 2 images
    assert stats["pairs_03"] == 0.5 and stats["pairs_05"] == 0.5  # one pair (IoU 2/3) over 2 images
    assert stats_main(["crowdhuman", str(odgt), "--images", str(tmp_path / "img")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("this set")).split()
    assert row[2:] == ["2.50", "0.50", "0.50", "40.0%", "40.0%", "20.0%"]
    assert "CrowdHuman" in out and "22.64" in out


def test_mask_fraction_leaves_persons_unlabelled_in_the_crowdhuman_files_only(tmp_path):
    from repssd.data.factory import open_dataset
    generate(tmp_path / "m", train=6, test=2, mask_fraction=0.4)
    generate(tmp_path / "p", train=6, test=2)
    masked = open_dataset("crowdhuman", tmp_path / "m/crowdhuman", "train")
    full = open_dataset("crowdhuman", tmp_path / "m/crowdhuman", "train_full")
    plain = open_dataset("crowdhuman", tmp_path / "p/crowdhuman", "train")
    persons = sum(1 for r in full.records for ig in r.ignore if not ig)
    hidden = sum(1 for r in masked.records for ig in r.ignore if ig) - sum(1 for r in full.records for ig in r.ignore if ig)
    assert 0.2 * persons < hidden < 0.6 * persons
    for m, f, p in zip(masked.records, full.records, plain.records):
        assert m.boxes == f.boxes == p.boxes and f.ignore == p.ignore  # same scenes, full labels as before
        assert all(mi or not fi for mi, fi in zip(m.ignore, f.ignore))  # masking only adds ignore flags
    voc = [(tmp_path / d / "Annotations/train_000001.xml").read_text() for d in ("m", "p")]
    assert voc[0] == voc[1]  # VOC (and COCO) label everyone
    with pytest.raises(ValueError, match="mask_fraction must be in"):
        generate(tmp_path / "x", train=1, test=1, mask_fraction=1.0)
    # CrowdHuman's policy: people only; cars left out are background, the same persons masked
    generate(tmp_path / "n", train=6, test=2, mask_fraction=0.4, crowdhuman_cars="none")
    people = open_dataset("crowdhuman", tmp_path / "n/crowdhuman", "train")
    for n, m, f in zip(people.records, masked.records, full.records):
        persons = [(box, ig) for box, ig, car in zip(m.boxes, m.ignore, f.ignore) if not car]
        assert list(zip(n.boxes, n.ignore)) == persons
    assert sum(len(r.boxes) for r in people.records) < sum(len(r.boxes) for r in masked.records)  # cars gone
