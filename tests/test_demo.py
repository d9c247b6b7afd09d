import subprocess
import sys
from pathlib import Path

from repssd.demo import crowd_scene, main

ROOT = Path(__file__).resolve().parents[1]


def test_crowd_scene_boxes_are_valid_and_overlap():
    boxes = crowd_scene(10, seed=0)[0]
    assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= 1
    # neighbours overlap: a crowd, not a row of separate boxes
    assert (boxes[1:, 0] < boxes[:-1, 2]).any()


def test_demo_writes_a_report_with_every_spec(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.txt").read_text()
    for name, count in [("ssd300_voc", 8732), ("ssd512_voc", 24564), ("mobilenet_ssd300", 3000)]:
        assert f"{name}" in report and str(count) in report
    assert "not in repssd yet" in capsys.readouterr().out.lower()

