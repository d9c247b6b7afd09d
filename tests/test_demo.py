"""The main job end to end at toy scale: make demo's steps, the ablation runner, the notebooks."""
import json
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from experiments import ablation
from repssd import demo
from repssd.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, train=8, test=3, seed=2, size=96)
    return root


def test_demo_trains_evaluates_and_draws(data, tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path / "demo"), "--data", str(data), "--max-iter", "3"]) == 0
    out = capsys.readouterr().out
    assert "crowd mAP" in out and "report:" in out and "demo finished" in out
    report = json.loads((tmp_path / "demo/eval/report.json").read_text())
    assert report["num_images"] == 3 and "crowd" in report
    assert (tmp_path / "demo/loss.png").exists() and len(list((tmp_path / "demo/examples").glob("*.jpg"))) == 3


@pytest.fixture(scope="module")
def ablation_dir(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    config = yaml.safe_load((ROOT / "experiments/synthetic_crowd.yaml").read_text())
    config["specs"] = ["multibox", "multibox+repgt"]
    config["seeds"] = [0, 1]
    config["train"].update(data_root=str(data), max_iter=2, batch_size=2, workers=0, checkpoint_every=1,
                           log_every=1)
    path = out / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert ablation.main(["--config", str(path), "--output-dir", str(out)]) == 0
    return out


def test_ablation_runner_writes_the_table_and_skips_finished_runs(ablation_dir, capsys):
    results = json.loads((ablation_dir / "results.json").read_text())
    assert set(results["table"]) == {"multibox", "multibox+repgt"} and len(results["runs"]) == 4
    row = results["table"]["multibox+repgt"]
    assert set(row) >= {"map", "crowd_map", "person_ap", "person_mr"} and row["seeds"] == [0, 1]
    assert "± " in (ablation_dir / "results.md").read_text() and (ablation_dir / "ablation.png").exists()
    before = (ablation_dir / "multibox/seed0/metrics.json").stat().st_mtime
    assert ablation.main(["--config", str(ablation_dir / "tiny.yaml"), "--output-dir", str(ablation_dir)]) == 0
    assert (ablation_dir / "multibox/seed0/metrics.json").stat().st_mtime == before  # finished: skipped


def test_bad_ablation_config_is_one_clear_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("specs: [multibox]\ntrain: {lerning_rate: 1}\n")
    assert ablation.main(["--config", str(path)]) == 2
    assert "unknown training option(s) lerning_rate" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["ablation.ipynb", "repulsion_explained.ipynb"])
def test_notebooks_execute_without_errors(name, ablation_dir, monkeypatch):
    monkeypatch.setenv("REPSSD_ABLATION_DIR", str(ablation_dir))
    book = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "display_data" for o in outputs)  # the plots were drawn
