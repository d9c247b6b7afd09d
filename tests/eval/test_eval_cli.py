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
