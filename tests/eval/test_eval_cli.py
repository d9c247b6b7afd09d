"""eval.py end to end on a generated synthetic set with a small random model."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import eval as eval_cli
from repssd.data.synthetic import generate
from repssd.models import build_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("evalrun")
    generate(base / "data", train=0, test=6, seed=1, size=128)
    torch.manual_seed(0)
    model = build_model("mb1_ssdlite", 3, width_mult=0.25)
    (base / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"model": model.state_dict()}, base / "run" / "checkpoints" / "last.pth")
    (base / "run" / "config.json").write_text(json.dumps({
        "model": "mb1_ssdlite", "model_options": {"width_mult": 0.25}, "dataset": "synthetic",
        "data_root": str(base / "data"), "test_split": "test"}))
    return base


def test_checkpoint_with_config_evaluates_and_writes_reports(run, capsys):
    assert eval_cli.main(["--weights", str(run / "run/checkpoints/last.pth"), "--crowd-subset", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "mAP (voc07)" in out and "crowd mAP" in out
    report = json.loads((run / "run/eval/report.json").read_text())
    assert report["num_images"] == 6 and "crowd" in report and report["dataset"] == "synthetic"
    assert {"person", "car"} >= set(report["ap"])
    assert (run / "run/eval/pr_curve.png").exists() and (run / "run/eval/report.md").exists()
    saved = json.loads((run / "run/eval/detections.json").read_text())
    assert len(saved["detections"]) == 6 and saved["detections"][0]["id"] == "test_000000"


def test_saved_detections_rescore_to_the_same_numbers(run, tmp_path):
    assert eval_cli.main(["--weights", str(run / "run/checkpoints/last.pth"), "--crowd-subset", "--workers", "0",
                          "--output-dir", str(tmp_path / "a")]) == 0
    assert eval_cli.main(["--detections", str(tmp_path / "a/detections.json"), "--dataset", "synthetic",
                          "--data-root", str(run / "data"), "--crowd-subset", "--output-dir", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / x / "report.json").read_text()) for x in "ab")
    assert a["map"] == b["map"] and a["crowd"]["map"] == b["crowd"]["map"]


@pytest.mark.parametrize("args, message", [
    ([], "give --weights"),
    (["--detections", "x.json"], "no dataset"),
    (["--detections", "x.json", "--dataset", "synthetic", "--data-root", "/nonexistent"], "data root does not exist"),
])
def test_usage_errors_are_one_line_with_status_2(args, message):
    done = subprocess.run([sys.executable, str(ROOT / "eval.py"), *args], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize("objects", ["one apart", "none", "no images"])
def test_crowd_subset_without_crowd_objects_is_not_applicable(run, tmp_path, capsys, objects):
    """A split with no crowd object (or no object, or no image) reports crowd mAP as n/a, 0 crowd boxes."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(run / "data", data, symlinks=True)
    ids = (data / "ImageSets/Main/test.txt").read_text().split()
    keep = [] if objects == "no images" else ids[:1]
    (data / "ImageSets/Main/test.txt").write_text("".join(f"{i}\n" for i in keep))
    for i in keep:  # one object (a person far from anything) or none
        xml = data / "Annotations" / f"{i}.xml"
        text = xml.read_text()
        head, first = text.split("<object>")[0], "<object>" + text.split("<object>")[1].split("</object>")[0] + "</object>"
        xml.write_text(head + (first if objects == "one apart" else "") + "</annotation>\n")
    code = eval_cli.main(["--weights", str(run / "run/checkpoints/last.pth"), "--crowd-subset", "--workers", "0",
                          "--data-root", str(data), "--output-dir", str(tmp_path / "out")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "crowd mAP            n/a   (0 crowd boxes" in out.out
    report = json.loads((tmp_path / "out/report.json").read_text())
    assert report["crowd"]["map"] is None and report["crowd"]["num_boxes"] == 0


def test_an_unreadable_image_leaves_both_detections_and_ground_truth(run, tmp_path, capsys):
    """A zero-byte JPEG in the test split: scored as if the split did not hold it, and named."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(run / "data", data, symlinks=True)
    ids = (data / "ImageSets/Main/test.txt").read_text().split()
    (data / "JPEGImages" / f"{ids[2]}.jpg").write_bytes(b"")
    weights = str(run / "run/checkpoints/last.pth")
    common = ["--weights", weights, "--crowd-subset", "--workers", "0", "--data-root", str(data)]
    with pytest.warns(UserWarning, match=f"{ids[2]}.jpg: cannot decode the image"):
        assert eval_cli.main([*common, "--output-dir", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert f"5 of 6 images scored (1 unreadable, left out: {ids[2]})" in out
    broken = json.loads((tmp_path / "a/report.json").read_text())
    # the same split without that image, scored directly
    (data / "ImageSets/Main/test.txt").write_text("".join(f"{i}\n" for i in ids if i != ids[2]))
    assert eval_cli.main([*common, "--output-dir", str(tmp_path / "b")]) == 0
    clean = json.loads((tmp_path / "b/report.json").read_text())
    assert broken["num_images"] == clean["num_images"] == 5 and broken["unreadable_images"] == [ids[2]]
    assert broken["map"] == clean["map"] and broken["ap"] == clean["ap"] and broken["npos"] == clean["npos"]
    assert broken["crowd"]["map"] == clean["crowd"]["map"]
    # re-scoring the saved detections keeps the image out too
    saved = json.loads((tmp_path / "a/detections.json").read_text())["detections"]
    assert saved[2] == {"id": ids[2], "unreadable": True}
    (data / "ImageSets/Main/test.txt").write_text("".join(f"{i}\n" for i in ids))
    assert eval_cli.main(["--detections", str(tmp_path / "a/detections.json"), "--dataset", "synthetic",
                          "--data-root", str(data), "--crowd-subset", "--output-dir", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c/report.json").read_text())["map"] == clean["map"]


def test_a_split_of_unreadable_images_is_one_line(run, tmp_path, capsys):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(run / "data", data, symlinks=True)
    for image in (data / "JPEGImages").glob("test_*.jpg"):
        image.write_bytes(b"")
    with pytest.warns(UserWarning):
        code = eval_cli.main(["--weights", str(run / "run/checkpoints/last.pth"), "--workers", "0",
                              "--data-root", str(data), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "none of the 6 images of synthetic test can be read" in err


def test_inference_keeps_every_image_in_its_own_place_and_training_pairs_stay_together(run, tmp_path):
    """predict_dataset: None exactly where the image is unreadable, the others as without it;
    training's fallback substitutes the next image with its own target."""
    import shutil
    import warnings
    from repssd.data import SSDTestTransform
    from repssd.data.factory import open_dataset
    from repssd.eval.inference import predict_dataset
    data = tmp_path / "data"
    shutil.copytree(run / "data", data, symlinks=True)
    model = build_model("mb1_ssdlite", 3, width_mult=0.25)
    clean = predict_dataset(model, open_dataset("synthetic", data, "test", SSDTestTransform(model.image_size)),
                            batch_size=1, progress=False)
    (data / "JPEGImages" / "test_000001.jpg").write_bytes(b"\xff\xd8 truncated")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = open_dataset("synthetic", data, "test", SSDTestTransform(model.image_size))
        broken = predict_dataset(model, dataset, batch_size=1, progress=False)  # same numerics per image
        assert broken[1] is None and all(b is not None for i, b in enumerate(broken) if i != 1)
        for i in (0, 2, 3, 4, 5):
            torch.testing.assert_close(broken[i]["boxes"], clean[i]["boxes"])
        raw = open_dataset("synthetic", data, "test")
        image, target = raw[1]  # the training fallback: the next image, with its own target
        expected_image, expected_target = raw.load(2)
        assert (image == expected_image).all() and torch.equal(target["boxes"], expected_target["boxes"])


@pytest.mark.parametrize("content, message", [("{not json", "unreadable training config"),
                                              ("[1, 2]", "not a training config (a JSON list, not an object)")])
def test_a_bad_config_beside_the_checkpoint_is_one_line(run, tmp_path, capsys, content, message):
    import shutil
    folder = tmp_path / "run"
    shutil.copytree(run / "run", folder)
    (folder / "config.json").write_text(content)
    weights = str(folder / "checkpoints/last.pth")
    assert eval_cli.main(["--weights", weights, "--dataset", "synthetic", "--data-root", str(run / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json" in err and message in err
    import detect
    assert detect.main(["--weights", weights, "--output-dir", str(tmp_path / "d"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize("option, message", [(["--batch-size", "0"], "--batch-size must be positive, got 0"),
                                             (["--workers", "-2"], "--workers must be 0 or more, got -2"),
                                             (["--slice", "0x10"], "--slice 0x10: expected S or WxH"),
                                             (["--slice", "auto", "--slice-overlap", "1.5"], "--slice-overlap must be"),
                                             (["--no-full-image"], "--no-full-image needs --slice")])
def test_eval_refuses_bad_option_values_up_front(run, tmp_path, capsys, option, message):
    out = tmp_path / "out"
    assert eval_cli.main(["--weights", str(run / "run/checkpoints/last.pth"), "--output-dir", str(out), *option]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not out.exists()


def test_a_checkpoint_whose_class_count_differs_from_its_config_is_refused(run, tmp_path, capsys):
    import shutil
    folder = tmp_path / "run"
    shutil.copytree(run / "run", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "class_names": ["person", "car", "bike"]}))
    weights = str(folder / "checkpoints/last.pth")
    message = "the checkpoint has 2 classes but the config.json beside it names 3 (person, car, bike)"
    assert eval_cli.main(["--weights", weights]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    import detect
    assert detect.main(["--weights", weights, "--output-dir", str(tmp_path / "d"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_coco_path_leaves_an_unreadable_image_out_too(run, tmp_path):
    import shutil
    import warnings
    from repssd.data import COCODetection, SSDTestTransform
    from repssd.eval import DetectionEvaluator
    from repssd.eval.inference import ground_truth_of, image_ids, predict_dataset
    data = tmp_path / "data"
    shutil.copytree(run / "data", data, symlinks=True)
    (data / "JPEGImages" / "test_000003.jpg").write_bytes(b"")
    model = build_model("mb1_ssdlite", 3, width_mult=0.25)
    dataset = COCODetection(data / "coco/instances_test.json", data / "JPEGImages", SSDTestTransform(model.image_size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detections = predict_dataset(model, dataset, batch_size=4, progress=False)
    assert [d is None for d in detections] == [False, False, False, True, False, False]
    evaluator = DetectionEvaluator(dataset.classes, crowd_subset=True)
    evaluator.process(detections, ground_truth_of(dataset), image_ids(dataset))
    report = evaluator.evaluate()
    assert report["num_images"] == 5 and report["unreadable_images"] == [image_ids(dataset)[3]]


def test_sliced_evaluation_scores_the_merged_tiles_and_blames_the_merge(run, tmp_path, capsys):
    weights = str(run / "run/checkpoints/last.pth")
    assert eval_cli.main(["--weights", weights, "--workers", "0", "--output-dir", str(tmp_path / "whole")]) == 0
    assert eval_cli.main(["--weights", weights, "--workers", "0", "--slice", "64", "--slice-overlap", "0.25", "--errors",
                          "--crowd-subset", "--output-dir", str(tmp_path / "sliced")]) == 0
    whole, sliced = (json.loads((tmp_path / x / "report.json").read_text()) for x in ("whole", "sliced"))
    assert sliced["slicing"]["size"] == [64, 64] and sliced["slicing"]["merge"] == "crowd"
    assert whole["slicing"] is None and sliced["map"] != whole["map"]
    errors = json.loads((tmp_path / "sliced/errors.json").read_text())
    assert {"merged_neighbour", "merged_other"} <= set(errors["thresholds"][0]["misses_by_cause"])
    assert "merged_neighbour" in capsys.readouterr().out
    assert eval_cli.main(["--detections", str(tmp_path / "sliced/detections.json"), "--slice", "64",
                          "--output-dir", str(tmp_path / "x")]) == 2
