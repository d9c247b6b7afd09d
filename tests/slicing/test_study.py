"""experiments/slicing_study.py end to end on generated data with a small random model."""
import json

import pytest
import torch

from experiments import slicing_study
from repssd.data.synthetic import generate
from repssd.models import build_model


@pytest.mark.parametrize("text,expected", [
    ("auto", "tiles auto, overlap 0.2, with the whole image, merge crowd (iou default)"),
    ("540@0.1-nofull:nms:ios:0.4", "tiles 540x540, overlap 0.1, without the whole image, merge nms (ios 0.4)"),
    ("800x600:greedy-nmm", "tiles 800x600, overlap 0.2, with the whole image, merge greedy-nmm (iou default)")])
def test_settings_parse(text, expected):
    assert slicing_study.parse_setting(text).describe() == expected
    assert slicing_study.parse_setting("full") is None


def test_study_runs_resumes_reports_and_compares(tmp_path, capsys):
    generate(tmp_path / "data", train=0, test=4, seed=3, size=128)
    torch.manual_seed(0)
    (tmp_path / "w").mkdir()
    torch.save({"model": build_model("mb1_ssdlite", 3, width_mult=0.25).state_dict()}, tmp_path / "w/last.pth")
    (tmp_path / "w/config.json").write_text(json.dumps({"model": "mb1_ssdlite", "model_options": {"width_mult": 0.25},
                                                        "class_names": ["person", "car"]}))
    out = tmp_path / "study.jsonl"
    args = ["--weights", str(tmp_path / "w/last.pth"), "--dataset", "synthetic", "--data-root", str(tmp_path / "data"),
            "--split", "test", "--out", str(out), "--settings", "full", "64:crowd", "64:nms"]
    assert slicing_study.main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["setting"] for r in rows] == ["full", "64:crowd", "64:nms"]
    assert rows[0]["passes_per_image"] == 1 and rows[1]["passes_per_image"] > 4  # 64-px tiles of ~128-px images + the image
    assert {"merged_neighbour", "suppressed_neighbour"} <= set(rows[1]["errors"]["score>=0.3"]["misses_by_cause"])
    capsys.readouterr()
    assert slicing_study.main(args) == 0 and capsys.readouterr().out == ""  # finished settings are skipped
    assert slicing_study.main(["--report", str(out)]) == 0
    assert "merge crowd" in capsys.readouterr().out
    assert slicing_study.main(["--compare", str(out), "64:crowd", "64:nms", "64:crowd", "64:crowd"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("| 64:crowd | 64:crowd | +0.0000 | [+0.0000, +0.0000]")
