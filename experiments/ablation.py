"""Loss ablations: a grid of loss specs x seeds, trained and evaluated, one results table.

    python -m experiments.ablation --config experiments/synthetic_crowd.yaml [--output-dir DIR]

For every (spec, seed) the runner trains ``OUTPUT/<spec>/seed<k>`` (resuming an interrupted run,
skipping a finished one), evaluates it (VOC07 mAP, crowd mAP, and AP / MR^-2 of the person class)
and writes ``OUTPUT/results.json``, ``OUTPUT/results.md`` and ``OUTPUT/ablation.png``. The config
(YAML) names the specs, the seeds, the shared training options and, for the synthetic set, how to
generate it when it is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import yaml

from repssd.data import SSDTestTransform
from repssd.data.factory import class_names, open_dataset
from repssd.engine.config import ConfigError, TrainConfig
from repssd.eval import DetectionEvaluator
from repssd.eval.inference import ground_truth_of, predict_dataset

__all__ = ["load_ablation", "run_one", "summarise", "main"]


def load_ablation(path: Path) -> dict:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the ablation config ({err})") from None
    if not isinstance(config, dict) or not config.get("specs") or not isinstance(config.get("train"), dict):
        raise ConfigError(f"{path}: needs 'specs' (a list of loss specs) and 'train' (training options)")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(config["train"]) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown training option(s) {', '.join(unknown)}")
    config.setdefault("seeds", [0])
    config.setdefault("output_dir", f"runs/ablation_{path.stem}")
    return config


def run_dir(out: Path, spec: str, seed: int) -> Path:
    return out / spec / f"seed{seed}"


def run_one(config: dict, spec: str, seed: int, out: Path) -> dict:
    """Train (or resume) and evaluate one run; returns its metrics (cached in ``metrics.json``)."""
    from repssd.engine.trainer import Trainer

    folder = run_dir(out, spec, seed)
    done = folder / "metrics.json"
    if done.exists():
        return json.loads(done.read_text())
    train = TrainConfig(**{**config["train"], "loss": spec, "seed": seed, "output_dir": str(folder),
                           "resume": "auto", "eval_at_end": False})
    train.validate()
    trainer = Trainer(train)
    trainer.fit()
    dataset = open_dataset(train.dataset, train.data_root, train.test_split, SSDTestTransform(trainer.image_size))
    detections = predict_dataset(trainer.model, dataset, batch_size=train.batch_size, workers=0, progress=False)
    evaluator = DetectionEvaluator(class_names(dataset), "crowdhuman", crowd_subset=True,
                                   crowd_iou=config.get("crowd_iou", 0.1))
    evaluator.process(detections, ground_truth_of(dataset))
    report = evaluator.evaluate()
    metrics = {"spec": spec, "seed": seed, "map": report["map"], "crowd_map": report["crowd"]["map"],
               "ap": report["ap"], "crowd_ap": report["crowd"]["ap"], "person_ap": report["crowdhuman"]["ap"],
               "person_mr": report["crowdhuman"]["mr"], "crowd_boxes": report["crowd"]["num_boxes"],
               "iterations": trainer.iteration}
    done.write_text(json.dumps(metrics, indent=1))
    return metrics


def summarise(runs: list[dict], specs: list[str]) -> dict:
    """Mean and standard deviation over seeds of every metric, per spec."""
    table = {}
    for spec in specs:
        mine = [r for r in runs if r["spec"] == spec]
        if not mine:
            continue
        row = {"seeds": [r["seed"] for r in mine]}
        for key in ("map", "crowd_map", "person_ap", "person_mr"):
            values = np.array([r[key] for r in mine], dtype=float)
            row[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
        classes = sorted({c for r in mine for c in r["ap"]})
        row["ap"] = {c: float(np.mean([r["ap"].get(c, np.nan) for r in mine])) for c in classes}
        row["crowd_ap"] = {c: float(np.mean([r["crowd_ap"].get(c, np.nan) for r in mine])) for c in classes}
        table[spec] = row
    return table


def markdown(table: dict, title: str) -> str:
    lines = [f"# {title}", "", "| loss | mAP | crowd mAP | person AP | person MR^-2 | seeds |",
             "| --- | --- | --- | --- | --- | --- |"]
    for spec, row in table.items():
        cells = [f"{row[k]['mean']:.4f} ± {row[k]['std']:.4f}" for k in ("map", "crowd_map", "person_ap", "person_mr")]
        lines.append(f"| {spec} | " + " | ".join(cells) + f" | {len(row['seeds'])} |")
    return "\n".join(lines) + "\n\n(mean ± standard deviation over seeds; MR^-2: lower is better)\n"


def plot(table: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = list(table)
    x = np.arange(len(specs))
    fig, ax = plt.subplots(figsize=(1.8 * len(specs) + 2, 4))
    for offset, key, label in ((-0.2, "map", "mAP"), (0.2, "crowd_map", "crowd mAP")):
        ax.bar(x + offset, [table[s][key]["mean"] for s in specs], 0.4, yerr=[table[s][key]["std"] for s in specs],
               label=label, capsize=3)
    ax.set_xticks(x, specs, rotation=15)
    ax.set(ylabel="AP (VOC07)", title="loss ablation")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ensure_data(config: dict) -> None:
    """Generate the synthetic set the config points at when it is missing."""
    generate = config.get("generate")
    root = Path(config["train"].get("data_root", "data/synthetic"))
    if generate and not (root / "ImageSets").exists():
        from repssd.data.synthetic import generate as make
        print(f"generating the synthetic crowd set in {root} ...")
        make(root, **generate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.ablation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path)
    opts = parser.parse_args(argv)
    try:
        config = load_ablation(opts.config)
    except ConfigError as err:
        print(f"experiments.ablation: {err}", file=sys.stderr)
        return 2
    out = opts.output_dir or Path(config["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    ensure_data(config)
    runs = []
    for spec in config["specs"]:
        for seed in config["seeds"]:
            print(f"== {spec}, seed {seed}")
            runs.append(run_one(config, spec, seed, out))
    table = summarise(runs, config["specs"])
    (out / "results.json").write_text(json.dumps({"config": config, "runs": runs, "table": table}, indent=1))
    (out / "results.md").write_text(markdown(table, f"Ablation: {opts.config.stem}"))
    plot(table, out / "ablation.png")
    print(markdown(table, f"Ablation: {opts.config.stem}"))
    print(f"results: {out / 'results.md'}, {out / 'results.json'}, {out / 'ablation.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
