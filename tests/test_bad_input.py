"""Bad input on the newest surfaces (issue 33): for each root cause of the sweep a variant it did not
try. The contract: one line naming the file or the flag, status 2; never a traceback; nothing the
user had is overwritten or lost; an output is whole or absent."""
import errno
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detect
import eval as eval_cli
import train as train_cli
from repssd.convert import WeightsError, load_model
from repssd.convert.__main__ import main as convert_main
from repssd.convert.tf_graph import TFGraphError, read_labels, write_checkpoint
from repssd.data.copypaste import parse_copy_paste
from repssd.data.factory import parse_data_options
from repssd.data.base import DatasetError
from repssd.data.transforms import parse_tile_crop
from repssd.engine.config import ConfigError, parse_options
from repssd.eval import citypersons
from repssd.files import save_atomic
from repssd.models import build_model
from repssd.options import parse_tile_size
from repssd.slicing import Slicing


def tiny_args(data, out, *extra):
    return ["--model", "mb1_ssdlite", "--width-mult", "0.25", "--dataset", "synthetic", "--data-root", str(data),
            "--train-split", "train", "--batch-size", "2", "--workers", "1", "--output-dir", str(out),
            "--log-every", "1", "--checkpoint-every", "2", "--no-eval-at-end", *extra]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    (run / "checkpoints").mkdir()
    torch.save({"model": build_model("mb1_ssdlite", 2, width_mult=0.25).state_dict()}, run / "checkpoints" / "last.pth")
    (run / "config.json").write_text(json.dumps({"model": "mb1_ssdlite", "model_options": {"width_mult": 0.25},
                                                 "class_names": ["person"]}))
    return run / "checkpoints" / "last.pth"


def picture(path: Path, size=(90, 120), seed: int = 0) -> Path:
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8))
    return path


def one_line(capsys, *parts: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert all(part in err for part in parts), err
    return err


# 1. lost data: outputs never replace an input
def test_detect_refuses_an_output_folder_that_holds_an_input_given_by_folder(weights, tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    original = picture(photos / "b.jpg").read_bytes()
    picture(photos / "b.png", seed=1)  # b.png's copy would be b.jpg
    monkeypatch.chdir(tmp_path)
    assert detect.main(["--weights", str(weights), "--output-dir", "./photos/", "photos", "--slice", "auto"]) == 2
    one_line(capsys, "--output-dir photos holds the input", "choose another --output-dir")
    assert (photos / "b.jpg").read_bytes() == original and sorted(p.name for p in photos.iterdir()) == ["b.jpg", "b.png"]


# 2. lost data: the converter writes whole files and never replaces one unasked
def test_write_checkpoint_keeps_the_old_file_when_the_disk_fills(tmp_path, monkeypatch):
    out = tmp_path / "model.pth"
    write_checkpoint({"w": torch.ones(3)}, {"model": "x"}, out)
    before = out.read_bytes(), out.with_suffix(".json").read_text()

    def full(obj, file):
        file.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(WeightsError, match=r"model\.pth: could not be written \(No space left on device\); what was "
                                           r"there is unchanged"):
        write_checkpoint({"w": torch.zeros(3)}, {"model": "y"}, out, overwrite=True)
    assert (out.read_bytes(), out.with_suffix(".json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.pth"]  # no temporaries left


@pytest.mark.parametrize("make, expected", [
    (lambda d: (d / "x.pth").mkdir(), "is a folder; --out names the checkpoint file"),
    (lambda d: (d / "x.pth").write_bytes(b"the user's weights"), "exists; pass --overwrite to replace it"),
    (lambda d: (d / "sub").write_text("a file"), "cannot be created"),
])
def test_convert_refuses_an_out_it_would_damage_before_converting(tmp_path, capsys, make, expected):
    make(tmp_path)
    out = tmp_path / ("sub/x.pth" if "cannot" in expected else "x.pth")
    assert convert_main(["tflite", str(tmp_path / "missing.tflite"), "--out", str(out)]) == 2  # before reading the file
    one_line(capsys, expected)
    if out.is_file():
        assert out.read_bytes() == b"the user's weights"


def test_save_atomic_leaves_no_half_file(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")
    (tmp_path / "a.pth").write_bytes(b"good")
    with pytest.raises(RuntimeError):
        save_atomic({"x": Unpicklable()}, tmp_path / "a.pth")
    assert (tmp_path / "a.pth").read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["a.pth"]


# 3. lost data: an unreadable batch
def test_sliced_detect_keeps_the_good_images_beside_an_unreadable_one(weights, tmp_path, capsys):
    good = picture(tmp_path / "good.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    assert detect.main(["--weights", str(weights), "--output-dir", str(out), "--slice", "64", "--batch-size", "1",
                        str(tmp_path / "empty.jpg"), str(good)]) == 1
    assert str(good) in json.loads((out / "detections.json").read_text())["detections"]
    before = (out / "detections.json").read_bytes()
    assert detect.main(["--weights", str(weights), "--output-dir", str(out), "--slice", "64",
                        str(tmp_path / "empty.jpg")]) == 1
    assert "none of the 1 inputs could be processed" in capsys.readouterr().err
    assert (out / "detections.json").read_bytes() == before  # the earlier record stays


# 4. silently wrong: thresholds out of range
@pytest.mark.parametrize("cli, flag, value", [(detect, "--conf-thresh", "-0.1"), (detect, "--nms", "nan"),
                                              (eval_cli, "--nms", "1.01"), (eval_cli, "--conf-thresh", "inf"),
                                              (eval_cli, "--crowd-iou", "2")])
def test_thresholds_are_range_checked(weights, tmp_path, capsys, cli, flag, value):
    args = ["--weights", str(weights), flag, value]
    args += [str(picture(tmp_path / "a.png"))] if cli is detect else ["--dataset", "synthetic", "--data-root", "x"]
    assert cli.main(args) == 2
    one_line(capsys, f"{flag} must be in")


# 5. silently wrong: class names that contain "item" and "id"
def test_a_plain_list_with_label_map_words_stays_a_list():
    assert read_labels("Idle item\nId badge\n", 3) == ["Idle item", "Id badge"]
    assert read_labels('item {\n id: 2\n name: "bag"\n}\n', 3) == ["class1", "bag"]  # a real label map


# 7. silently wrong: a resume with other flags
def test_resume_with_another_loss_is_refused_and_a_same_flag_resume_keeps_config_json(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.main(tiny_args(tiny_data, out, "--max-iter", "2")) == 0
    config = (out / "config.json").read_bytes()
    capsys.readouterr()
    assert train_cli.main(tiny_args(tiny_data, out, "--max-iter", "2", "--resume", "auto", "--loss",
                                    "multibox+repgt")) == 2
    one_line(capsys, "trained with --loss multibox, not multibox+repgt", "--resume-override")
    assert train_cli.main(tiny_args(tiny_data, out, "--max-iter", "2", "--resume", "auto", "--workers", "0")) == 0
    assert (out / "config.json").read_bytes() == config
    capsys.readouterr()
    assert train_cli.main(tiny_args(tiny_data, out, "--max-iter", "2", "--resume", "auto", "--batch-size", "4",
                                    "--resume-override")) == 0
    assert "done: the run had already reached iteration 2; nothing left to train" in capsys.readouterr().out


# 10. silently wrong: a key given twice
@pytest.mark.parametrize("parse, text", [
    (parse_options, "repgt_sigma=0,repgt_sigma=1"), (parse_copy_paste, "per_image=2-6,per-image=1"),
    (lambda t: parse_data_options("mot", t), "min_visibility=0.3,min-visibility=0.5"),
    (parse_tile_crop, "size=200,p=1,p=0")])
def test_an_option_given_twice_is_refused(parse, text):
    with pytest.raises((ValueError, ConfigError, DatasetError), match="given twice"):
        parse(text)


def test_classes_given_twice_in_another_case_are_refused(tmp_path, capsys):
    from tflite_writer import randomised, ssd_tflite
    path = ssd_tflite(randomised(build_model("ssd_mbv1_tf", 3, image_size=(64, 64))), tmp_path / "m.tflite")
    assert convert_main(["tflite", str(path), "--labels", "cat,dog", "--classes", "Dog,dog",
                         "--out", str(tmp_path / "m.pth")]) == 2
    one_line(capsys, "--classes: 'Dog' given twice")
    assert convert_main(["tflite", str(path), "--labels", "cat,cat", "--out", str(tmp_path / "m.pth")]) == 2
    one_line(capsys, "--labels: class name 'cat' given twice")


# 11. silently wrong: CityPersons setups without visibility
def test_citypersons_without_visibility_says_the_occlusion_subsets_do_not_apply():
    gt = [{"boxes": np.array([[10, 10, 40, 110.0]]), "labels": np.array([1])}]
    det = [{"boxes": np.array([[10, 10, 40, 110.0]]), "scores": np.array([0.9]), "labels": np.array([1])}]
    result = citypersons.evaluate(det, gt)
    assert "no visibility" in result["note"] and result["mr"]["Reasonable"] == 0.0
    assert all(result["mr"][name] != result["mr"][name] for name in ("Heavy", "Partial", "Bare"))  # nan: n/a
    with_visibility = citypersons.evaluate(det, [{**gt[0], "visibility": np.array([1.0])}])
    assert "note" not in with_visibility and with_visibility["mr"]["Bare"] == 0.0


# 13. tracebacks: infinite values
@pytest.mark.parametrize("parse, text", [(parse_copy_paste, "overlap=0.3-inf"), (parse_tile_crop, "size=100,p=inf"),
                                         (parse_tile_crop, "size=100,jitter=nan-2")])
def test_infinite_option_values_are_refused(parse, text):
    with pytest.raises(ValueError, match="not a (finite number|valid range)"):
        parse(text)


# 15. unclear messages: foreign model files and weights of another model
def test_a_frozen_graph_given_as_weights_gets_the_convert_command(tmp_path, capsys, weights):
    graph = tmp_path / "frozen_inference_graph.pb"
    graph.write_bytes(b"\x0a\x0bsome graph")
    assert detect.main(["--weights", str(graph), str(picture(tmp_path / "a.png"))]) == 2
    one_line(capsys, "a TensorFlow graph, not PyTorch weights", "python -m repssd.convert tf-graph")
    with pytest.raises(WeightsError, match=r"do not fit this model.*shape mismatches"):
        load_model(weights, "mb1_ssdlite", width_mult=0.5)


# 16. valid but extreme values
@pytest.mark.parametrize("text", [" 1_0", "+64", "6 4", "64x-1"])
def test_tile_sizes_are_digits_only(text):
    with pytest.raises(ValueError, match="tile size"):
        parse_tile_size(text)


def test_an_overlap_that_cuts_an_image_into_thousands_of_tiles_is_refused(weights, tmp_path, capsys):
    with pytest.raises(ValueError, match="cuts a 320x240 image into .* tiles \\(more than 1024\\)"):
        Slicing(size=40, overlap=0.95).tiles(240, 320, (300, 300), 0.1)
    image = picture(tmp_path / "a.png", size=(240, 320))
    assert detect.main(["--weights", str(weights), "--output-dir", str(tmp_path / "out"), "--slice", "40",
                        "--slice-overlap", "0.95", str(image)]) == 1
    err = capsys.readouterr().err
    assert f"{image}: --slice 40x40 at --slice-overlap 0.95" in err and "Traceback" not in err
