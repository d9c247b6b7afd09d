"""The main job end to end at toy scale: make demo's steps, the ablation runner, the notebooks."""
import json
from pathlib import Path

import nbformat
import numpy as np
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
    reference = tmp_path / "reference.json"
    common = ["--data", str(data), "--max-iter", "3", "--reference", str(reference)]
    assert demo.main(["--out", str(tmp_path / "mb"), "--loss", "multibox", "--write-reference", *common]) == 0
    capsys.readouterr()
    assert json.loads(reference.read_text())["loss"] == "multibox"
    assert demo.main(["--out", str(tmp_path / "demo"), *common]) == 0
    out = capsys.readouterr().out
    assert "crowd mAP" in out and "report:" in out and "demo finished" in out
    report = json.loads((tmp_path / "demo/eval/report.json").read_text())
    assert report["num_images"] == 3 and "crowd" in report
    assert (tmp_path / "demo/loss.png").exists() and len(list((tmp_path / "demo/examples").glob("*.jpg"))) == 3
    # the closing table: this run next to the reference, labelled, with the same recipe
    summary = json.loads((tmp_path / "demo/summary.json").read_text())
    assert summary["loss"] == "multibox+repgt" and summary["map"] == report["map"]
    assert "multibox+repgt (this run)" in out and "multibox (reference, from a file)" in out
    assert "the same recipe" in out and "--write-reference" in out
    assert "DIFFERENT RECIPE" in demo.closing_table({**summary, "iterations": 4}, reference)
    assert "not found" in demo.closing_table(summary, tmp_path / "missing.json")


def tiny_train(config, data):
    config["train"].update(data_root=str(data), max_iter=2, batch_size=2, workers=0, checkpoint_every=1, log_every=1)
    return config


@pytest.fixture(scope="module")
def ablation_dir(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    config = tiny_train(yaml.safe_load((ROOT / "experiments/synthetic_crowd.yaml").read_text()), data)
    config["specs"] = ["multibox", "multibox+repgt"]
    config["seeds"] = [0, 1]
    path = out / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert ablation.main(["--config", str(path), "--output-dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def sweep_dir(data, tmp_path_factory):
    """The shipped sweep config at toy scale: 3 cells, 2 seeds to select on val, 3 for the final."""
    out = tmp_path_factory.mktemp("sweep")
    generate(out / "data", train=6, val=3, test=3, seed=2, size=96)
    config = tiny_train(yaml.safe_load((ROOT / "experiments/synthetic_sweep.yaml").read_text()), out / "data")
    config["cells"] = {k: config["cells"][k] for k in ("multibox", "repgt_paper", "repgt_excess_s0_w1")}
    config.update(seeds=[0, 1], final_seeds=[0, 1, 2], num_finalists=1, bootstrap_samples=20,
                  select_train={"max_iter": 1})
    path = out / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert ablation.main(["--config", str(path), "--output-dir", str(out)]) == 0
    return out


def test_ablation_runner_writes_the_table_and_skips_finished_runs(ablation_dir, capsys):
    results = json.loads((ablation_dir / "results.json").read_text())
    final = results["stages"]["final"]
    assert set(final["table"]) == {"multibox", "multibox+repgt"} and len(final["runs"]) == 4
    row = final["table"]["multibox+repgt"]
    assert set(row) >= {"map", "crowd_map", "person_ap", "person_mr", "paired"} and row["seeds"] == [0, 1]
    assert set(final["comparisons"]["multibox+repgt"]) >= {"map", "crowd_map", "person_mr"}
    assert "± " in (ablation_dir / "results.md").read_text() and (ablation_dir / "ablation.png").exists()
    before = (ablation_dir / "multibox/seed0/metrics_test.json").stat().st_mtime
    assert ablation.main(["--config", str(ablation_dir / "tiny.yaml"), "--output-dir", str(ablation_dir)]) == 0
    assert (ablation_dir / "multibox/seed0/metrics_test.json").stat().st_mtime == before  # finished: skipped


def test_sweep_selects_on_val_and_tests_the_finalists_once(sweep_dir):
    results = json.loads((sweep_dir / "results.json").read_text())
    select, final = results["stages"]["select"], results["stages"]["final"]
    assert select["split"] == "val" and final["split"] == "test"
    assert set(select["table"]) == {"multibox", "repgt_paper", "repgt_excess_s0_w1"}
    # selection: the baseline plus the eligible cell of highest val crowd mAP
    table, floor = select["table"], select["table"]["multibox"]["map"]["mean"] - select["table"]["multibox"]["map"]["std"]
    eligible = [c for c in table if c != "multibox" and table[c]["map"]["mean"] >= floor]
    best = max(eligible, key=lambda c: table[c]["crowd_map"]["mean"])
    assert select["finalists"] == ["multibox", best]
    # the test split was scored for the finalists only, with the final schedule and 3 seeds
    tested = sorted(p.relative_to(sweep_dir).parts[:3] for p in sweep_dir.rglob("metrics_test.json"))
    assert tested == sorted(("final", c, f"seed{s}") for c in select["finalists"] for s in range(3))
    assert not list((sweep_dir / "select").rglob("metrics_test.json"))
    assert all(r["iterations"] == 1 for r in select["runs"]) and all(r["iterations"] == 2 for r in final["runs"])
    comparison = final["comparisons"][best]
    assert comparison["map"]["low"] <= comparison["map"]["diff"] <= comparison["map"]["high"]
    # error counts at score >= 0.5, bootstrapped over the same images: the totals are the runs' own
    errors = comparison["errors"]
    assert set(errors) == {"fp", "crowd", "missed", "suppressed_neighbour"}
    rows = {c: [r for r in final["runs"] if r["cell"] == c] for c in select["finalists"]}
    for key, total in (("fp", lambda e: e["fp"]), ("missed", lambda e: e["misses"]),
                       ("crowd", lambda e: e["fp_by_category"]["crowd"])):
        assert errors[key]["a"] == pytest.approx(np.mean([total(r["errors"]["score>=0.5"]) for r in rows[best]]))
        assert errors[key]["b"] == pytest.approx(np.mean([total(r["errors"]["score>=0.5"]) for r in rows["multibox"]]))
        assert errors[key]["low"] <= errors[key]["diff"] <= errors[key]["high"]
    assert final["table"][best]["paired"]["seeds"] == [0, 1, 2]
    text = (sweep_dir / "results.md").read_text()
    assert "Selection on the validation split" in text and "paired bootstrap over 3 images" in text


def test_published_results_rebuild_the_tables_without_checkpoints(sweep_dir, tmp_path):
    ablation.publish(sweep_dir, tmp_path / "pub", ("test",))
    assert not list((tmp_path / "pub").rglob("*.pth")) and (tmp_path / "pub/results.md").exists()
    assert (tmp_path / "pub/final/multibox/seed2/error_records_test.json.gz").exists()
    assert (tmp_path / "pub/final/multibox/seed2/outcomes_test.npz").exists()
    # the runner, pointed at the published copy, rebuilds everything from it (nothing to train)
    assert ablation.main(["--config", str(sweep_dir / "tiny.yaml"), "--output-dir", str(tmp_path / "pub")]) == 0
    again = json.loads((tmp_path / "pub/results.json").read_text())
    original = json.loads((sweep_dir / "results.json").read_text())
    assert again["stages"]["final"]["comparisons"] == original["stages"]["final"]["comparisons"]
    assert not list((tmp_path / "pub").rglob("*.pth"))


def test_final_stage_adopts_selection_runs_that_train_alike(sweep_dir, tmp_path, capsys):
    """select_train changing nothing: final seeds that were selection seeds are not trained again."""
    config = yaml.safe_load((sweep_dir / "tiny.yaml").read_text())
    config.update(select_train={"max_iter": 2}, seeds=[0], final_seeds=[0, 1], finalists=["repgt_paper"])
    config["cells"] = {k: config["cells"][k] for k in ("multibox", "repgt_paper")}
    path = tmp_path / "alike.yaml"
    path.write_text(yaml.safe_dump(config))
    assert ablation.main(["--config", str(path), "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    for cell in ("multibox", "repgt_paper"):
        adopted, trained = (tmp_path / "out/final" / cell / f"seed{s}" for s in (0, 1))
        record = json.loads((adopted / "config.json").read_text())
        assert record["adopted_from"] == str(tmp_path / "out/select" / cell / "seed0")
        assert record["output_dir"] == str(adopted) and "adopted_from" not in json.loads((trained / "config.json").read_text())
        source = tmp_path / "out/select" / cell / "seed0/checkpoints/last.pth"
        assert (adopted / "checkpoints/last.pth").read_bytes() == source.read_bytes()
        assert (adopted / "metrics_test.json").exists() and not list((tmp_path / "out/select" / cell).rglob("metrics_test.json"))
        assert f"== {cell}, seed 0: the selection run trains as the final one would" in out
    # a select_train that differs (the sweep fixture's 1 iteration vs 2) adopts nothing
    assert not ablation._selection_is_final(yaml.safe_load((sweep_dir / "tiny.yaml").read_text()))
    assert not any("adopted_from" in p.read_text() for p in (sweep_dir / "final").rglob("config.json"))


def test_a_fine_tuning_study_scores_its_starting_weights_untrained(ablation_dir, data, tmp_path):
    """A no_training cell scores train.weights as they are; other cells may set training options."""
    start = ablation_dir / "multibox" / "seed0"
    config = yaml.safe_load((ablation_dir / "tiny.yaml").read_text())
    config.pop("specs")
    config.update(seeds=[0], baseline="pretrained",
                  cells={"pretrained": {"loss": "multibox", "no_training": True},
                         "finetune_fbn": {"loss": "multibox", "freeze_bn": True}})
    config["train"]["weights"] = str(start / "checkpoints" / "last.pth")
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(config))
    assert ablation.main(["--config", str(path), "--output-dir", str(tmp_path / "out")]) == 0
    pretrained = json.loads((tmp_path / "out/pretrained/seed0/metrics_test.json").read_text())
    assert pretrained["iterations"] == 0 and not (tmp_path / "out/pretrained/seed0/checkpoints").exists()
    assert pretrained["map"] == json.loads((start / "metrics_test.json").read_text())["map"]  # the same model
    tuned = json.loads((tmp_path / "out/finetune_fbn/seed0/config.json").read_text())
    assert tuned["freeze_bn"] is True and tuned["weights"] == config["train"]["weights"]
    path.write_text(yaml.safe_dump({**config, "cells": {"a": {"loss": "multibox", "no_training": True}},
                                    "train": {**config["train"], "weights": None}}))
    assert ablation.main(["--config", str(path)]) == 2


def test_bad_ablation_config_is_one_clear_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("specs: [multibox]\ntrain: {lerning_rate: 1}\n")
    assert ablation.main(["--config", str(path)]) == 2
    assert "unknown training option(s) lerning_rate" in capsys.readouterr().err
    # every cell's loss is checked before the first run trains
    path.write_text("cells: {a: {loss: multibox}, b: {loss: multibox+repgt, loss_options: repgt_sigmaa=1}}\n"
                    "train: {max_iter: 1}\noutput_dir: " + str(tmp_path / "never") + "\n")
    assert ablation.main(["--config", str(path)]) == 2
    assert "cell 'b': unknown loss option 'repgt_sigmaa'" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("name", ["ablation.ipynb", "repulsion_explained.ipynb", "crowd_study.ipynb"])
def test_notebooks_execute_without_errors(name, sweep_dir, monkeypatch):
    monkeypatch.setenv("REPSSD_ABLATION_DIR", str(sweep_dir))
    book = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "display_data" for o in outputs)  # the plots were drawn


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "experiments").glob("*.yaml")))
def test_every_experiment_config_loads_and_its_training_options_validate(name):
    from repssd.engine.config import TrainConfig
    import torch
    import yaml as yaml_module
    raw = yaml_module.safe_load((ROOT / "experiments" / name).read_text())
    if str(raw["train"].get("device", "auto")).startswith("cuda") and not torch.cuda.is_available():
        # a GPU config on a CPU machine: refused up front, in one line, before anything trains
        with pytest.raises(ablation.ConfigError, match="--device cuda: no CUDA device"):
            ablation.load_ablation(ROOT / "experiments" / name)
        return
    config = ablation.load_ablation(ROOT / "experiments" / name)
    train = TrainConfig(**config["train"])
    train.validate()
    if train.dataset == "crowdhuman":  # trains with its ignore regions handled
        assert train.ignore_regions and train.ignore_iof == 0.5


def test_false_positive_counts_split_by_ignore_regions():
    from experiments.false_positives import confident_outcomes
    box = lambda x, y: [x, y, x + 10, y + 10]  # noqa: E731
    gt = [{"boxes": [box(0, 0), [100, 100, 200, 200]], "labels": [1, 1], "ignore": [False, True]}]
    det = [{"boxes": [box(0, 0), box(120, 120), box(195, 150), box(300, 300), box(4, 4), box(1, 0)],
            "scores": [0.9, 0.8, 0.7, 0.6, 0.5, 0.2], "labels": [1] * 6}]
    # TP; inside the region (ignored); half inside it (IoA .5: a false positive near it); far away;
    # on the object again (IoU 36/164); below the score threshold
    assert confident_outcomes(det, gt, 0.3) == {"tp": 1, "on_ignore": 1, "fp_near_ignore": 1, "fp_near_object": 1,
                                                "fp_background": 1, "recall": 1.0}


def test_the_runner_checks_every_cell_before_training_the_first(tmp_path):
    """A bad option in the last cell stops the runner before the first cell trains."""
    text = (ROOT / "experiments/synthetic_sweep.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    for cell, message in [("zz: {loss: multibox+repgt, loss_options: \"repgt_sigma=2\"}", "repgt_sigma must be in"),
                          ("zz: {loss: multibox, loss_warmup: -3}", "loss warm-up must be >= 0"),
                          ("zz: {loss: multibox, ignore_regions: true, loss_weights: \"conf=x\"}", "bad loss weight")]:
        bad.write_text(text.replace("select_train:", f"  {cell}\nselect_train:"))
        with pytest.raises(ablation.ConfigError, match=f"cell 'zz': {message}"):
            ablation.load_ablation(bad)
    bad.write_text(text.replace("  lr: 0.05", "  lr: -1"))
    with pytest.raises(ablation.ConfigError, match="--lr must be positive"):
        ablation.load_ablation(bad)


def test_summaries_carry_a_metric_that_does_not_apply_as_nan():
    from experiments.report import _mean_std
    stat = _mean_std([None, None])
    assert np.isnan(stat["mean"]) and _mean_std([0.5, 0.7])["mean"] == pytest.approx(0.6)


def test_finalists_per_spec_with_references_and_extra_finalists():
    from experiments.report import select_finalists

    def row(loss, m, crowd):
        return {"loss": loss, "map": {"mean": m, "std": 0.01}, "crowd_map": {"mean": crowd, "std": 0.0}}

    table = {"mb": row("multibox", 0.30, 0.20), "ref": row("multibox", 0.10, 0.10), "g1": row("multibox+repgt", 0.30, 0.21),
             "g2": row("multibox+repgt", 0.295, 0.25), "g3": row("multibox+repgt", 0.20, 0.30),  # g3: mAP too low
             "b1": row("multibox+repgt+repbox", 0.31, 0.19)}
    config = {"baseline": "mb", "references": ["ref"], "finalist_specs": ["multibox+repgt", "multibox+repgt+repbox"]}
    assert select_finalists(config, table) == ["mb", "ref", "g2", "b1"]
    assert select_finalists({**config, "extra_finalists": ["g1", "g2"]}, table) == ["mb", "ref", "g2", "b1", "g1"]
    with pytest.raises(ValueError, match="extra_finalists: nope"):
        select_finalists({**config, "extra_finalists": ["nope"]}, table)


def test_localisation_study_rebuilds_the_runs_ap_from_their_error_records(sweep_dir, tmp_path, capsys):
    from experiments import crowd_localisation
    out = tmp_path / "loc.json"
    assert crowd_localisation.main(["--config", str(sweep_dir / "tiny.yaml"), "--output-dir", str(sweep_dir),
                                    "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["split"] == "test" and "Localisation, final" in capsys.readouterr().out
    for row in result["runs"]:
        metrics = json.loads((sweep_dir / "final" / row["cell"] / f"seed{row['seed']}/metrics_test.json").read_text())
        assert row["ap50_voc07"] == pytest.approx(metrics["ap"]["person"], abs=1e-12)  # the rebuild is exact
        assert row["ap50"] >= row["ap75"] and 0 <= row["ap50_95"] <= row["ap50"]
        assert row["tp"] == 0 or 0.5 <= row["tp_iou"] <= 1
    cell = next(iter(result["comparisons"]))
    comp = result["comparisons"][cell]
    assert comp["seeds"] == [0, 1, 2] and comp["bootstrap_ap75"]["low"] <= comp["bootstrap_ap75"]["diff"] <= comp["bootstrap_ap75"]["high"]
    # published copies keep the records gzipped: the same numbers from there
    ablation.publish(sweep_dir, tmp_path / "pub", ("test",))
    assert crowd_localisation.main(["--config", str(sweep_dir / "tiny.yaml"), "--output-dir", str(tmp_path / "pub"),
                                    "--out", str(tmp_path / "pub.json")]) == 0
    assert json.loads((tmp_path / "pub.json").read_text())["runs"] == result["runs"]


def test_an_evaluation_set_can_slice(ablation_dir, data, tmp_path):
    """A named evaluation set with ``slicing`` scores the run on merged tiles; its error analysis
    takes the tiles' detections as candidates (merged-away misses counted)."""
    config = yaml.safe_load((ablation_dir / "tiny.yaml").read_text())
    config.pop("specs")
    config["train"]["weights"] = str(ablation_dir / "multibox" / "seed0" / "checkpoints" / "last.pth")
    config.update(seeds=[0, 1], baseline="pretrained", cells={"pretrained": {"loss": "multibox", "no_training": True}},
                  evaluations={"sliced": {"dataset": "synthetic", "data_root": str(data), "split": "test",
                                          "slicing": {"size": 64, "overlap": 0.25, "merge": "crowd"}}},
                  merge_sweep=["nms", "crowd"])
    config["train"]["test_split"] = "sliced"
    path = tmp_path / "sliced.yaml"
    path.write_text(yaml.safe_dump(config))
    assert ablation.main(["--config", str(path), "--output-dir", str(tmp_path / "out")]) == 0
    sliced = json.loads((tmp_path / "out/pretrained/seed0/metrics_sliced.json").read_text())
    whole = json.loads((ablation_dir / "multibox/seed0/metrics_test.json").read_text())
    assert "merged_neighbour" in sliced["errors"]["score>=0.5"]["misses_by_cause"]
    assert sliced["map"] != whole["map"]  # the same weights, scored on tiles
    # the merge sweep scores the same tiles with each merge; its crowd entry is the run's own setting
    merges = json.loads((tmp_path / "out/pretrained/seed0/merge_sliced.json").read_text())["merge"]
    assert list(merges) == ["nms", "crowd"] and merges["crowd"]["map"] == pytest.approx(sliced["map"])
    assert "Tile merge sweep" in (tmp_path / "out/results.md").read_text()
    # the same weights whatever the seed: seed 1's scores are seed 0's, copied rather than scored again
    again = json.loads((tmp_path / "out/pretrained/seed1/metrics_sliced.json").read_text())
    assert again["seed"] == 1 and {**again, "seed": 0} == sliced
    assert (tmp_path / "out/pretrained/seed1/outcomes_sliced.npz").read_bytes() == \
        (tmp_path / "out/pretrained/seed0/outcomes_sliced.npz").read_bytes()
