"""detect.py end to end on generated media: images, a folder, a video, and bad inputs."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detect
from repssd.models import build_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = build_model("mb1_ssdlite", 3, width_mult=0.25)
    (run / "checkpoints").mkdir()
    torch.save({"model": model.state_dict()}, run / "checkpoints" / "last.pth")
    (run / "config.json").write_text(json.dumps({"model": "mb1_ssdlite", "model_options": {"width_mult": 0.25},
                                                 "class_names": ["person", "bag"]}))
    return run / "checkpoints" / "last.pth"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    (folder / "photos").mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / "photos" / f"p{i}.png"), rng.integers(0, 255, (80 + 10 * i, 120, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "single.jpg"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for _ in range(5):
        writer.write(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    writer.release()
    return folder


def test_images_folder_and_video_are_annotated_and_recorded(weights, media, tmp_path, capsys):
    out = tmp_path / "out"
    code = detect.main(["--weights", str(weights), "--output-dir", str(out), "--conf-thresh", "0.2",
                        str(media / "photos"), str(media / "single.jpg"), str(media / "clip.avi")])
    assert code == 0
    for name in ("p0.jpg", "p1.jpg", "p2.jpg", "single.jpg", "clip.mp4"):
        assert (out / name).stat().st_size > 0
    record = json.loads((out / "detections.json").read_text())
    assert record["model"] == "mb1_ssdlite"
    image = record["detections"][str(media / "photos" / "p1.png")]
    assert image and all(d["name"] in ("person", "bag") and d["score"] >= 0.2 for d in image)
    assert all(0 <= d["box"][0] <= d["box"][2] <= 120 and 0 <= d["box"][3] <= 90 for d in image)
    video = record["detections"][str(media / "clip.avi")]
    assert [f["frame"] for f in video] == [0, 1, 2, 3, 4]
    written = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert "5 of 5 inputs done" in capsys.readouterr().out


def test_bad_inputs_are_one_line_each_and_the_rest_still_run(weights, media, tmp_path, capsys):
    out = tmp_path / "out"
    code = detect.main(["--weights", str(weights), "--output-dir", str(out), str(media / "missing.png"),
                        str(media / "broken.jpg"), str(media / "single.jpg"), "7"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert any("missing.png: no such file or folder" in line for line in err)
    assert any("broken.jpg: cannot decode the image" in line for line in err)
    assert any(line.endswith("7: cannot open the camera") for line in err)
    assert len(err) == 3
    assert (out / "single.jpg").exists()


def test_unusable_weights_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"junk")
    done = subprocess.run([sys.executable, str(ROOT / "detect.py"), "--weights", str(bad), "x.jpg"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "w.pth: not a readable PyTorch weights file" in done.stderr


def test_labels_file_must_fit_the_model(weights, media, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    assert detect.main(["--weights", str(weights), "--labels", str(labels), str(media / "single.jpg")]) == 2
    assert "3 names, but the model has 2 classes" in capsys.readouterr().err


def png_claiming(width, height):
    """A PNG whose header claims ``width`` x ``height`` pixels (OpenCV and PIL refuse such sizes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_an_image_claiming_too_many_pixels_is_one_unreadable_input_and_the_rest_run(weights, media, tmp_path,
                                                                                      capsys):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming(60000, 60000))
    out = tmp_path / "out"
    code = detect.main(["--weights", str(weights), "--output-dir", str(out), str(huge), str(media / "single.jpg"),
                        str(media / "photos")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "huge.png: cannot decode the image (more pixels than OpenCV decodes)" in err[0]
    recorded = json.loads((out / "detections.json").read_text())["detections"]
    assert len(recorded) == 4 and not any("huge" in name for name in recorded)  # the valid inputs after it ran


@pytest.mark.parametrize("option, message", [(["--batch-size", "0"], "--batch-size must be positive, got 0"),
                                             (["--top-k", "-1"], "--top-k must be positive, got -1"),
                                             (["--max-frames", "0"], "--max-frames must be positive, got 0"),
                                             (["--slice", "0"], "--slice 0: expected S or WxH"),
                                             (["--slice", "-64"], "--slice -64: expected S or WxH"),
                                             (["--slice", "big"], "--slice big: expected S, WxH"),
                                             (["--slice", "64", "--slice-overlap", "1"], "--slice-overlap must be in [0, 1)"),
                                             (["--slice", "64", "--slice-overlap", "-0.5"], "--slice-overlap must be in"),
                                             (["--slice", "64", "--merge-thresh", "0"], "--merge-thresh must be in (0, 1]"),
                                             (["--slice", "64", "--merge-metric", "ios"], "--merge-metric ios: the crowd"),
                                             (["--merge", "nms"], "--merge needs --slice")])
def test_bad_option_values_are_refused_up_front(weights, media, tmp_path, capsys, option, message):
    out = tmp_path / "out"
    assert detect.main(["--weights", str(weights), "--output-dir", str(out), str(media / "single.jpg"), *option]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not out.exists()  # nothing left behind


def test_export_refuses_an_opset_it_cannot_write(weights, tmp_path, capsys):
    from repssd import export
    target = tmp_path / "m.onnx"
    assert export.main(["--weights", str(weights), "--output", str(target), "--opset", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--opset must be in 11..20" in err and not target.exists()


def test_output_paths_under_a_file_are_one_line(weights, media, tmp_path, capsys, tiny_data):
    """train / detect --output-dir, export --output, synthetic --out whose parent is a regular file."""
    import train as train_cli
    from repssd import export
    from repssd.data import synthetic
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    runs = [
        lambda: detect.main(["--weights", str(weights), "--output-dir", str(blocker / "out"), str(media / "single.jpg")]),
        lambda: train_cli.main(["--model", "mb1_ssdlite", "--dataset", "synthetic", "--data-root", str(tiny_data),
                                "--max-iter", "1", "--output-dir", str(blocker / "run")]),
        lambda: export.main(["--weights", str(weights), "--output", str(blocker / "m.onnx")]),
        lambda: synthetic.main(["--out", str(blocker / "data"), "--train", "1", "--test", "1"]),
    ]
    for run in runs:
        assert run() == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"cannot be created, {blocker} is a file" in err, err


def test_slicing_runs_on_images_folders_and_videos(weights, media, tmp_path, capsys):
    out = tmp_path / "out"
    code = detect.main(["--weights", str(weights), "--output-dir", str(out), "--conf-thresh", "0.2", "--slice", "48",
                        "--slice-overlap", "0.25", "--merge", "greedy-nmm", "--merge-metric", "ios",
                        str(media / "photos"), str(media / "clip.avi")])
    assert code == 0
    record = json.loads((out / "detections.json").read_text())
    assert record["slicing"].startswith("tiles 48x48, overlap 0.25, with the whole image, merge greedy-nmm (ios")
    image = record["detections"][str(media / "photos" / "p1.png")]
    assert image and all(0 <= d["box"][0] <= d["box"][2] <= 120 and 0 <= d["box"][3] <= 90 for d in image)
    assert len(record["detections"][str(media / "clip.avi")]) == 5
    assert "sliced inference: tiles 48x48" in capsys.readouterr().out
