"""train.py and eval.py end to end on a small tree of each pedestrian format (CityPersons,
MOTChallenge, WiderPerson, PennFudanPed): training reads it, eval.py scores it with VOC AP, the
crowd subset, CityPersons' miss rates and the CrowdHuman metrics, and stats describes it."""
import json

import pytest

import eval as eval_cli
import train as train_cli
from pedestrian_trees import WRITERS
from repssd.data.stats import main as stats_main


@pytest.fixture(scope="module", params=sorted(WRITERS))
def trained(request, tmp_path_factory):
    kind = request.param
    base = tmp_path_factory.mktemp(kind)
    root, train_split, test_split = WRITERS[kind](base / "data")
    out = base / "run"
    argv = ["--model", "mb1_ssdlite", "--width-mult", "0.25", "--dataset", kind, "--data-root", str(root),
            "--train-split", train_split, "--test-split", test_split, "--batch-size", "2", "--workers", "0",
            "--max-iter", "2", "--output-dir", str(out), "--log-every", "1", "--no-eval-at-end"]
    if kind == "mot":  # frames in the MOT layout train on windows at the sliced-inference scale
        argv += ["--frame-stride", "2", "--tile-crop", "size=48,jitter=0.8-1.25"]
    assert train_cli.main(argv) == 0
    return kind, root, out


def test_train_and_eval_with_every_pedestrian_metric(trained, capsys):
    kind, root, out = trained
    weights = str(out / "checkpoints/last.pth")
    for metric in ("citypersons", "crowdhuman"):
        assert eval_cli.main(["--weights", weights, "--crowd-subset", "--metric", metric, "--workers", "0",
                              "--conf-thresh", "0.0", "--output-dir", str(out / metric)]) == 0
        report = json.loads((out / metric / "report.json").read_text())
        assert report["dataset"] == kind and set(report["ap"]) == {"person"}
        # two overlapping people in every test image: the crowd subset is theirs
        assert report["crowd"]["num_boxes"] == 2 * report["num_images"] > 0
        if metric == "citypersons":
            mr = report["citypersons"]["mr"]
            assert set(mr) == {"Reasonable", "Reasonable_small", "Heavy", "All", "Partial", "Bare"}
            assert all(v is None or 0.0 <= v <= 1.0 for v in mr.values()) and mr["All"] is not None
        else:
            assert 0.0 <= report["crowdhuman"]["mr"] <= 1.0
    printed = capsys.readouterr().out
    assert "CityPersons MR^-2" in printed and "Reasonable" in printed and "CrowdHuman" in printed
    if kind == "mot":  # the stride is saved with the run and applies to its test set: 2 of the 4 frames
        assert json.loads((out / "config.json").read_text())["frame_stride"] == 2
        assert json.loads((out / "config.json").read_text())["tile_crop"] == "size=48,jitter=0.8-1.25"
        assert report["num_images"] == 2


def test_stats_describe_every_pedestrian_format(trained, capsys):
    kind, root, _ = trained
    assert stats_main([kind, str(root)]) == 0
    out = capsys.readouterr().out
    assert "persons/img" in out and "crowd boxes:" in out
    if kind in ("citypersons", "mot"):  # the formats that annotate visibility
        assert "visibility of the persons" in out


def test_a_data_option_the_kind_lacks_is_one_line(tmp_path, capsys):
    root, train_split, _ = WRITERS["widerperson"](tmp_path / "data")
    argv = ["--model", "mb1_ssdlite", "--dataset", "widerperson", "--data-root", str(root), "--max-iter", "1",
            "--output-dir", str(tmp_path / "run"), "--frame-stride", "3"]
    assert train_cli.main(argv) == 2
    assert "--frame-stride is for datasets that have it (mot), not widerperson" in capsys.readouterr().err
    assert stats_main(["widerperson", str(root), "--data-options", "box=vbox"]) == 2
    assert "widerperson has no option 'box'; its options: person_classes" in capsys.readouterr().err
