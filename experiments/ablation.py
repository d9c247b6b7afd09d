"""Loss ablations and validated sweeps: cells (a loss spec with its options) x seeds, trained,
evaluated, compared with the baseline.

    python -m experiments.ablation --config experiments/synthetic_sweep.yaml [--output-dir DIR] [--stage select|final]

A config names ``cells`` (``name: {loss, ...}``: a loss spec and any other training options
that differ between cells, e.g. ``loss_options``, ``loss_weights``, ``freeze_bn``; with
``no_training: true`` a cell scores the ``train.weights`` it would start from, as they are: the
pretrained baseline of a fine-tuning study; a plain list ``specs`` of loss specs also works),
``seeds``, the shared ``train`` options and, for
the synthetic set, how to ``generate`` it when missing (into ``generate.root``, default
``train.data_root``). Every run lives in ``OUTPUT/<cell>/seed<k>``
and is resumed if interrupted, skipped if finished; its evaluation on a split is cached as
``metrics_<split>.json`` (with ``outcomes_<split>.npz`` for the bootstrap).

With ``select_split`` (e.g. ``val``) the runner works in two stages:

1. **select** (runs in ``OUTPUT/select/``, with ``train`` updated by ``select_train``, e.g. a
   shorter schedule): every cell x ``seeds``, scored on ``select_split`` only. Finalists: the
   ``baseline`` plus the ``finalists`` named in the config, or (``finalists: auto``) the
   ``num_finalists`` cells of highest crowd mAP among those whose mAP is not below the
   baseline's by more than one standard deviation. Every cell is also compared with the
   baseline by a paired bootstrap over the selection images (seeds paired).
2. **final** (``OUTPUT/final/``, the ``train`` options): the finalists x ``final_seeds``, scored once on
   ``train.test_split``, with each finalist's paired difference from the baseline over seeds and
   a paired bootstrap over test images (95% intervals of the mAP and crowd-mAP differences).
   When ``select_train`` changes nothing (both stages train alike), the final stage adopts each
   finished selection run of the same cell and seed instead of training it again.

Without ``select_split`` there is one stage: every cell x ``seeds`` on ``train.test_split``.
Writes ``OUTPUT/results.json``, ``OUTPUT/results.md`` and ``OUTPUT/ablation.png``.

Evaluation sets other than the training data's own splits are named under ``evaluations``
(``name: {dataset, data_root, split, data_options, frame_stride, image_size, slicing}``; ``image_size``
scores the trained weights at another input size, ``slicing`` (``{size, overlap, full_image, merge,
metric, thresh}``, repssd.slicing.Slicing's fields) scores them on overlapping tiles of each image,
merged; the error decomposition then takes the tiles' detections as candidates). ``select_split`` and ``test_split`` may name
one; ``test_splits`` (a list) scores the finalists on each, the first being the primary one.
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import yaml

from repssd.convert import load_model
from repssd.data import SSDTestTransform
from repssd.data.factory import class_names, open_dataset, parse_data_options
from repssd.data.synthetic import generate as make_synthetic
from repssd.engine.config import ConfigError, TrainConfig, parse_options
from repssd.engine.trainer import Trainer
from repssd.eval import DetectionEvaluator
from repssd.eval.bootstrap import Outcomes, detection_outcomes
from repssd.eval.errors import analyse, image_counts
from repssd.eval.inference import ground_truth_of, image_ids, predict_dataset, predict_sliced, predict_with_candidates
from repssd.losses import build_criterion, parse_weights
from repssd.models import size_option
from repssd.postprocess import postprocess_options
from repssd.slicing import Slicing

from .report import compare_final, markdown, plot, select_finalists, summarise

__all__ = ["load_ablation", "run_one", "evaluate_run", "main"]

RESERVED = ("seed", "output_dir", "resume", "eval_at_end")  # the runner sets these per run
ERROR_SCORES, ERROR_FPPI = (0.5,), (0.1, 1.0)  # where each run's errors are decomposed (repssd.eval.errors)


def load_ablation(path: Path) -> dict:
    """The config, with ``cells`` normalised and every cell's loss checked before any training."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the ablation config ({err})") from None
    if not isinstance(config, dict) or not (config.get("specs") or config.get("cells")) \
            or not isinstance(config.get("train"), dict):
        raise ConfigError(f"{path}: needs 'cells' (or 'specs', a list of loss specs) and 'train' (training options)")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted((set(config["train"]) | set(config.get("select_train", {}))) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown training option(s) {', '.join(unknown)}")
    cells = config.get("cells") or {spec: {"loss": spec} for spec in config["specs"]}
    for name, cell in cells.items():
        if not isinstance(cell, dict) or not cell.get("loss") or set(cell) - (known | {"no_training"}) \
                or set(cell) & set(RESERVED):
            raise ConfigError(f"{path}: cell {name!r} must be a mapping with 'loss' and optionally other training "
                              f"options (not {', '.join(RESERVED)}) or no_training")
        if cell.get("no_training") and not {**config["train"], **cell}.get("weights"):
            raise ConfigError(f"{path}: cell {name!r} has no_training but no weights to score")
        cell = {k: v for k, v in cell.items() if k != "no_training"}
        try:
            build_criterion(cell["loss"], parse_weights(str(cell.get("loss_weights", ""))),
                            warmup=int(cell.get("loss_warmup", 0)),
                            **parse_options(str(cell.get("loss_options", ""))))
            for train in (config["train"], {**config["train"], **config.get("select_train", {})}):
                TrainConfig(**{**train, **cell}).validate()  # every run's options, before the first one trains
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{path}: cell {name!r}: {err}") from None
    config["cells"] = cells
    config.setdefault("seeds", [0])
    config.setdefault("final_seeds", config["seeds"])
    config.setdefault("baseline", next(iter(cells)))
    config.setdefault("output_dir", f"runs/ablation_{path.stem}")
    if config["baseline"] not in cells:
        raise ConfigError(f"{path}: baseline {config['baseline']!r} is not a cell")
    for key in ("references", "extra_finalists"):
        unknown = [c for c in config.get(key, []) if c not in cells]
        if unknown:
            raise ConfigError(f"{path}: {key}: {', '.join(map(repr, unknown))} not a cell")
    return config


def run_dir(out: Path, cell: str, seed: int) -> Path:
    return out / cell / f"seed{seed}"


def run_one(config: dict, cell: str, seed: int, out: Path, train: dict):
    """Train (or resume) one run with the training options ``train``; returns the trained
    :class:`~repssd.engine.trainer.Trainer` (None when the run had finished before)."""
    folder = run_dir(out, cell, seed)
    options = {k: v for k, v in config["cells"][cell].items() if k != "no_training"}
    train = TrainConfig(**{**train, **options, "seed": seed, "output_dir": str(folder), "resume": "auto",
                           "eval_at_end": False})
    train.validate()
    if (folder / "checkpoints" / "last.pth").exists() and (folder / "done").exists():
        return None
    trainer = Trainer(train)
    trainer.fit()
    (folder / "done").write_text(f"{trainer.iteration}\n")
    return trainer


def evaluate_run(config: dict, cell: str, seed: int, out: Path, split: str, train: dict) -> dict:
    """Train if needed, then score the run on ``split`` (cached): VOC07 mAP, crowd mAP, person
    AP / MR^-2, and the detection outcomes the bootstrap needs."""
    folder = run_dir(out, cell, seed)
    done = folder / f"metrics_{split}.json"
    if done.exists() or _scored_before(config, cell, seed, out, f"metrics_{split}.json",
                                       f"outcomes_{split}.npz", f"errors_{split}.json"):
        return json.loads(done.read_text())
    model, post, dataset, slicing = _scored(config, cell, seed, out, split, train)
    if slicing is not None:
        detections, candidates = predict_sliced(model, dataset, slicing, batch_size=train.get("batch_size", 16),
                                                progress=False, with_candidates=True, **post)
    else:
        detections, candidates = predict_with_candidates(model, dataset, batch_size=train.get("batch_size", 16),
                                                         workers=0, progress=False, **post)
    ground_truth = ground_truth_of(dataset)
    errors = analyse(detections, candidates, ground_truth, nms_thresh=post["nms_thresh"],
                     score_thresholds=ERROR_SCORES, fppi=ERROR_FPPI, ids=image_ids(dataset))
    (folder / f"errors_{split}.json").write_text(json.dumps(errors))
    crowd_iou = config.get("crowd_iou", 0.1)
    evaluator = DetectionEvaluator(class_names(dataset), "crowdhuman", crowd_subset=True, crowd_iou=crowd_iou)
    evaluator.process(detections, ground_truth, image_ids(dataset))
    report = evaluator.evaluate()
    plain, crowd = (detection_outcomes(detections, ground_truth, crowd_iou=c) for c in (None, crowd_iou))
    np.savez_compressed(folder / f"outcomes_{split}.npz", **{f"{prefix}_{k}": getattr(o, k) for prefix, o in
                                                            (("all", plain), ("crowd", crowd)) for k in Outcomes.__annotations__})
    metrics = {"cell": cell, "seed": seed, "split": split, "map": report["map"], "crowd_map": report["crowd"]["map"],
               "ap": report["ap"], "crowd_ap": report["crowd"]["ap"], "person_ap": report["crowdhuman"]["ap"],
               "person_mr": report["crowdhuman"]["mr"], "person_ji": report["crowdhuman"]["ji"], "crowd_boxes": report["crowd"]["num_boxes"],
               "num_images": report["num_images"], "iterations": int((folder / "done").read_text()),
               "errors": {row["name"]: {k: row[k] for k in ("score_threshold", "fppi", "tp", "fp", "fp_by_category",
                                                           "misses", "misses_by_cause", "npos")}
                          for row in errors["thresholds"]}}
    done.write_text(json.dumps(metrics, indent=1))
    return metrics


def _scored_before(config: dict, cell: str, seed: int, out: Path, *names: str) -> bool:
    """A ``no_training`` cell scores the same weights whatever the seed: copy another seed's
    files ``names`` (the seed in JSON files rewritten) instead of scoring again. Returns whether
    it did."""
    if not config["cells"][cell].get("no_training"):
        return False
    folder = run_dir(out, cell, seed)
    for other in sorted((out / cell).glob("seed*")):
        if other != folder and all((other / name).exists() for name in names):
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                if name.endswith(".json"):
                    record = json.loads((other / name).read_text())
                    if isinstance(record, dict) and "seed" in record:
                        record["seed"] = seed
                    (folder / name).write_text(json.dumps(record, indent=1))
                else:
                    shutil.copy2(other / name, folder / name)
            (folder / "done").write_text("0\n")
            return True
    return False


def nms_sweep(config: dict, cell: str, seed: int, out: Path, split: str, train: dict, kind: str = "nms") -> dict:
    """The run scored on ``split`` at each value of ``config["<kind>_sweep"]`` (cached in
    ``<kind>_<split>.json``): mAP, crowd mAP, person AP and MR^-2 per value. ``kind`` ``"nms"``:
    NMS IoU thresholds; ``"merge"``: the tile merges of a sliced evaluation set (nms, greedy-nmm,
    crowd; the merge threshold follows each one's default)."""
    folder = run_dir(out, cell, seed)
    done = folder / f"{kind}_{split}.json"
    if done.exists() or _scored_before(config, cell, seed, out, done.name):
        return json.loads(done.read_text())
    model, post, dataset, slicing = _scored(config, cell, seed, out, split, train)
    if kind == "merge" and slicing is None:
        raise ConfigError(f"merge_sweep needs a sliced evaluation set; {split!r} has no slicing")
    ground_truth, sweep = ground_truth_of(dataset), {"cell": cell, "seed": seed, "split": split, kind: {}}
    for value in config[f"{kind}_sweep"]:
        options = {**post, "batch_size": train.get("batch_size", 16), "progress": False}
        tiles = slicing
        if kind == "nms":
            options["nms_thresh"] = float(value)
        else:
            tiles = replace(slicing, merge=str(value), metric="iou", thresh=None)
        if tiles is None:
            detections = predict_dataset(model, dataset, workers=0, **options)
        else:
            detections = predict_sliced(model, dataset, tiles, **options)
        evaluator = DetectionEvaluator(class_names(dataset), "crowdhuman", crowd_subset=True,
                                       crowd_iou=config.get("crowd_iou", 0.1))
        evaluator.process(detections, ground_truth, image_ids(dataset))
        report = evaluator.evaluate()
        sweep[kind][str(value)] = {"map": report["map"], "crowd_map": report["crowd"]["map"],
                                   "person_ap": report["crowdhuman"]["ap"], "person_mr": report["crowdhuman"]["mr"]}
    done.write_text(json.dumps(sweep, indent=1))
    return sweep


def _scored(config: dict, cell: str, seed: int, out: Path, split: str, train: dict):
    """(model, post-processing options, dataset, slicing or None) to score run (cell, seed) on
    ``split``: trained if needed, then at the evaluation set's input size and slicing (see
    :func:`evaluation_set`)."""
    model, post = _trained_model(config, cell, seed, out, train)
    options = {**train, **config["cells"][cell]}
    weights = Path(options["weights"]) if options.get("no_training") else \
        run_dir(out, cell, seed) / "checkpoints" / "last.pth"
    model, dataset = evaluation_set(config, split, train, model, weights)
    return model, post, dataset, evaluation_slicing(config, split)


def evaluation_slicing(config: dict, split: str):
    """The :class:`repssd.slicing.Slicing` an evaluation set asks for (its ``slicing`` entry), or None."""
    spec = ((config.get("evaluations") or {}).get(split) or {}).get("slicing")
    return None if spec is None else Slicing(**spec)


def evaluation_set(config: dict, split: str, train: dict, model, weights: Path):
    """(model, dataset) of the evaluation ``split``: a named entry of ``config["evaluations"]`` (its
    own data; with an ``image_size``, the same ``weights`` loaded at that input size), else that
    split of the training data, with the training data's options less the training-only ones."""
    spec = (config.get("evaluations") or {}).get(split)
    if spec is None:
        spec = {"dataset": train.get("dataset", "synthetic"), "data_root": train.get("data_root", "data/synthetic"),
                "split": split, "data_options": train.get("data_options"), "frame_stride": train.get("frame_stride")}
    if spec.get("image_size"):
        model, _ = load_model(weights, **size_option(spec["image_size"], train.get("anchor_reference")))
    options = parse_data_options(spec["dataset"], spec.get("data_options"), training=False,
                                 frame_stride=spec.get("frame_stride"))
    return model, open_dataset(spec["dataset"], spec["data_root"], spec["split"],
                               SSDTestTransform(model.input_size), **options)


def _trained_model(config: dict, cell: str, seed: int, out: Path, train: dict):
    """(the run's model, its post-processing options): trained (or resumed) here, read back when
    it had finished before, or the starting weights themselves for a ``no_training`` cell."""
    folder = run_dir(out, cell, seed)
    options = {**train, **config["cells"][cell]}
    if options.get("no_training"):
        folder.mkdir(parents=True, exist_ok=True)
        model, saved = load_model(options["weights"], options.get("model"))
        (folder / "done").write_text("0\n")
        return model, postprocess_options(saved)
    trainer = run_one(config, cell, seed, out, train)
    if trainer is None:
        model, saved = load_model(folder / "checkpoints" / "last.pth")
        return model, postprocess_options(saved)
    return trainer.model, trainer.postprocess


def load_outcomes(out: Path, cell: str, seed: int, split: str) -> dict[str, Outcomes]:
    """``{"all": Outcomes, "crowd": Outcomes}`` saved by :func:`evaluate_run`."""
    with np.load(run_dir(out, cell, seed) / f"outcomes_{split}.npz") as data:
        return {prefix: Outcomes(**{k: data[f"{prefix}_{k}"] for k in Outcomes.__annotations__})
                for prefix in ("all", "crowd")}


def load_error_records(out: Path, cell: str, seed: int, split: str) -> list[dict] | None:
    """The per-image error records of the run on ``split`` (:func:`repssd.eval.errors.analyse`): from
    ``errors_<split>.json`` or, published, ``error_records_<split>.json.gz``; None where neither has them."""
    folder = run_dir(out, cell, seed)
    errors, packed = folder / f"errors_{split}.json", folder / f"error_records_{split}.json.gz"
    records = json.loads(errors.read_text()).get("records") if errors.exists() else None
    if records is None and packed.exists():
        with gzip.open(packed, "rt") as stream:
            records = json.load(stream)
    return records


def load_error_counts(out: Path, cell: str, seed: int, split: str, score_threshold: float = ERROR_SCORES[0]):
    """Per-image error counts of the run on ``split`` (:func:`repssd.eval.errors.image_counts`) from
    its error records; None where they are not kept."""
    records = load_error_records(out, cell, seed, split)
    return None if records is None else image_counts(records, score_threshold)


def ensure_data(config: dict) -> None:
    """Generate the synthetic set the config points at when it is missing."""
    generate = dict(config.get("generate") or {})
    root = Path(generate.pop("root", config["train"].get("data_root", "data/synthetic")))
    if generate and not (root / "ImageSets").exists():
        print(f"generating the synthetic crowd set in {root} ...")
        make_synthetic(root, **generate)


def _stage(config: dict, cells: list[str], seeds: list[int], split: str, out: Path, train: dict) -> list[dict]:
    runs = []
    for cell in cells:
        for seed in seeds:
            print(f"== {cell}, seed {seed} ({split}, {out})", flush=True)
            runs.append(evaluate_run(config, cell, seed, out, split, train))
    return runs


def _final(config: dict, cells: list[str], seeds: list[int], out: Path) -> dict:
    """The final stage on every test split: ``{"final": primary, "final_<split>": others}``."""
    stages = {}
    splits = config.get("test_splits") or [config["train"].get("test_split", "test")]
    for k, split in enumerate(splits):
        runs = _stage(config, cells, seeds, split, out, config["train"])
        stages["final" if k == 0 else f"final_{split}"] = {
            "split": split, "runs": runs, "table": summarise(runs, cells, config),
            "comparisons": compare_final(config, out, cells, seeds, split, load_outcomes, load_error_counts)}
        for kind in ("nms", "merge"):
            if k == 0 and config.get(f"{kind}_sweep"):  # on the primary test split
                stages["final"][f"{kind}_sweep"] = [nms_sweep(config, cell, seed, out, split, config["train"], kind)
                                                    for cell in cells for seed in seeds]
    return stages


def run_stages(config: dict, out: Path, stage: str | None = None) -> dict:
    """Run the stages the config asks for (see the module docstring); returns the results."""
    cells, select_split = list(config["cells"]), config.get("select_split")
    results: dict = {"config": config, "stages": {}}
    if select_split is None:
        results["stages"].update(_final(config, cells, config["seeds"], out))
        return results
    runs = _stage(config, cells, config["seeds"], select_split, out / "select",
                  {**config["train"], **config.get("select_train", {})})
    table = summarise(runs, cells, config)
    finalists = select_finalists(config, table)
    results["stages"]["select"] = {"split": select_split, "runs": runs, "table": table, "finalists": finalists,
                                   "comparisons": compare_final(config, out / "select", cells, config["seeds"],
                                                                select_split, load_outcomes, load_error_counts)}
    if stage == "select":
        return results
    if _selection_is_final(config):
        for cell in finalists:
            for seed in config["final_seeds"]:
                adopt_run(config, cell, seed, out / "select", out / "final")
    results["stages"].update(_final(config, finalists, config["final_seeds"], out / "final"))
    return results


def _selection_is_final(config: dict) -> bool:
    """Whether ``select_train`` changes none of the ``train`` options: then a selection run is the
    final run of the same cell and seed, trained already."""
    train = config["train"]
    return all(k in train and train[k] == v for k, v in (config.get("select_train") or {}).items())


RUN_RECORDS = ("config.json", "log.jsonl", "log.csv", "loss.png", "diagnostics.png")  # and "done", last


def adopt_run(config: dict, cell: str, seed: int, select_out: Path, final_out: Path) -> bool:
    """Reuse the finished selection run (cell, seed) as the final run when the two train alike
    (:func:`_selection_is_final`): its last checkpoint and records are copied (the checkpoint
    hard-linked where the file system allows) instead of training again. The test splits are still
    scored only here, in the final stage. Returns whether the run was adopted."""
    source, target = run_dir(select_out, cell, seed), run_dir(final_out, cell, seed)
    weights = source / "checkpoints" / "last.pth"
    if config["cells"][cell].get("no_training") or (target / "done").exists() \
            or not (source / "done").exists() or not weights.exists():
        return False
    (target / "checkpoints").mkdir(parents=True, exist_ok=True)
    copy = target / "checkpoints" / "last.pth"
    copy.unlink(missing_ok=True)
    try:
        copy.hardlink_to(weights)
    except OSError:
        shutil.copy2(weights, copy)
    for name in RUN_RECORDS:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    record = json.loads((target / "config.json").read_text())
    record.update(output_dir=str(target), adopted_from=str(source))
    (target / "config.json").write_text(json.dumps(record, indent=1))
    shutil.copy2(source / "done", target / "done")  # last: a half-copied run is not finished
    print(f"== {cell}, seed {seed}: the selection run trains as the final one would; adopted from {source}",
          flush=True)
    return True


PUBLISHED_FILES = ("config.json", "log.jsonl", "done", "metrics_*.json", "outcomes_*.npz", "nms_*.json",
                   "merge_*.json")


def publish(out: Path, target: Path, record_splits: tuple[str, ...] = ()) -> None:
    """Copy what the results stand on (tables, plot, each run's config, log, metrics, detection
    outcomes, error counts and NMS sweep; no checkpoints) to ``target``, e.g. a folder committed
    with the code; the per-image error records of the final runs on ``record_splits``
    (the config's ``publish_records``). Copied back
    into an output folder, it lets the runner rebuild the tables and bootstrap without retraining."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.md", "ablation.png"):
        if (out / name).exists():
            shutil.copy2(out / name, target / name)
    for pattern in PUBLISHED_FILES:
        for file in out.rglob(pattern):
            if file.parent.name.startswith("seed") and (file.parent / "done").exists():  # finished runs only
                (target / file.parent.relative_to(out)).mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target / file.relative_to(out))
    for file in out.rglob("errors_*.json"):  # counts and curves; per-image records (gzipped): record_splits, final
        if file.parent.name.startswith("seed") and (file.parent / "done").exists():
            errors = json.loads(file.read_text())
            records = errors.pop("records", [])
            (target / file.parent.relative_to(out)).mkdir(parents=True, exist_ok=True)
            (target / file.relative_to(out)).write_text(json.dumps(errors))
            if "final" in file.relative_to(out).parts and file.stem.removeprefix("errors_") in record_splits:
                name = file.name.replace("errors_", "error_records_") + ".gz"
                with gzip.open(target / file.parent.relative_to(out) / name, "wt") as stream:
                    json.dump(records, stream)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.ablation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path)
    parser.add_argument("--stage", choices=("select", "final"), help="stop after the selection stage, or run both "
                        "(final; the default)")
    parser.add_argument("--publish", type=Path, help="copy the results and every run's logs, metrics and "
                        "outcomes (no checkpoints) here, e.g. experiments/results/NAME")
    opts = parser.parse_args(argv)
    try:
        config = load_ablation(opts.config)
    except ConfigError as err:
        print(f"experiments.ablation: {err}", file=sys.stderr)
        return 2
    out = opts.output_dir or Path(config["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    ensure_data(config)
    results = run_stages(config, out, opts.stage)
    text = markdown(results, f"Ablation: {opts.config.stem}")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(text)
    plot(results, out / "ablation.png")
    print(text)
    print(f"results: {out / 'results.md'}, {out / 'results.json'}, {out / 'ablation.png'}")
    if opts.publish:
        publish(out, opts.publish, tuple(config.get("publish_records", ())))
        print(f"published to {opts.publish}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
