"""What repulsion does to the boxes themselves: localisation at stricter IoU, from the error records.

    python -m experiments.crowd_localisation --config experiments/crowd_finetune.yaml \\
           [--stage final] [--split crowd_test] [--output-dir runs/crowd_finetune] [--out FILE]

Detection counts at IoU 0.5 (AP, crowd errors, NMS-suppressed people) can stay put while the boxes
move: RepGT pushes a box away from the neighbour it overlaps, which tightens it on its own person.
This reads the per-image records the runner keeps for every scored run (``errors_<split>.json`` in
the output folder, or the published ``error_records_<split>.json.gz``: every kept detection and GT
box), rebuilds detections and ground truth from them (AP at IoU 0.5 reproduces the run's own
person AP, checked) and reports per run:

- ``ap50``, ``ap75``: AP of the person class at IoU 0.5 and 0.75, the area under the precision /
  recall curve (VOC2010+; VOC07's 11 points are too coarse at the low recall of IoU 0.75 here);
  ``ap50_95``: its mean over IoU 0.5, 0.55, ..., 0.95 (the COCO thresholds, not COCO's 101 points);
  ``ap50_voc07``: the runner's own metric, to check the rebuild;
- ``tp_iou``: mean IoU of the true positives at score >= 0.5 with their own person;
- ``tp_iog``: their mean largest IoG (intersection over the GT's area) with another person: the
  overlap RepGT charges.

and, for each cell against the baseline over the same seeds, paired differences and a paired image
bootstrap of AP75 and AP50:95 (:func:`repssd.eval.bootstrap.paired_bootstrap`). Writes
``localisation_<stage>_<split>.json`` next to the published results (``--out`` to change).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from repssd.boxes import box_iou, pairwise_iog
from repssd.eval import voc
from repssd.eval.bootstrap import Outcomes, detection_outcomes, paired_bootstrap

from .ablation import load_ablation, load_error_records, run_dir

IOUS = np.round(np.arange(0.5, 0.96, 0.05), 2)


def rebuild(records: list[dict], label: int = 1) -> tuple[list[dict], list[dict]]:
    """(detections, ground truth) of class ``label`` from error records, in the records' order."""
    detections, ground_truth = [], []
    for record in records:
        boxes = np.array([d["box"] for d in record["detections"]], np.float64).reshape(-1, 4)
        scores = np.array([d["score"] for d in record["detections"]], np.float64)
        detections.append({"boxes": boxes, "scores": scores, "labels": np.full(len(scores), label)})
        gt = record["ground_truth"]
        ignore = np.array([g["ignore"] for g in gt], bool)
        ground_truth.append({"boxes": np.array([g["box"] for g in gt], np.float64).reshape(-1, 4),
                             "labels": np.full(len(gt), label), "difficult": np.zeros(len(gt), bool), "ignore": ignore})
    return detections, ground_truth


def overlaps(records: list[dict], score_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """IoU with their own person and largest IoG with another of the true positives at ``score_threshold``."""
    ious, iogs = [], []
    for record in records:
        people = [g for g in record["ground_truth"] if not g["ignore"]]
        tps = [d for d in record["detections"] if d["category"] == "tp" and d["score"] >= score_threshold]
        if not tps:
            continue
        gt = torch.tensor([g["box"] for g in people], dtype=torch.float64)
        det = torch.tensor([d["box"] for d in tps], dtype=torch.float64)
        own = torch.tensor([[g["index"] == d["gt"] for g in people] for d in tps])
        iogs.append(pairwise_iog(det, gt).masked_fill(own, 0).max(dim=1).values.numpy())
        ious.append(box_iou(det, gt)[own].numpy())
    return np.concatenate(ious or [np.zeros(0)]), np.concatenate(iogs or [np.zeros(0)])


def run_row(records: list[dict]) -> tuple[dict, Outcomes]:
    """The run's row (module docstring) and its outcomes at IoU 0.75, for the bootstrap."""
    detections, ground_truth = rebuild(records)
    aps = {float(t): voc.evaluate(detections, ground_truth, iou_threshold=float(t), use_07_metric=False)["map"]
           for t in IOUS}
    iou, iog = overlaps(records)
    row = {"ap50_voc07": voc.evaluate(detections, ground_truth)["map"], "ap50": aps[0.5], "ap75": aps[0.75],
           "ap50_95": float(np.mean(list(aps.values()))),
           "tp_iou": float(iou.mean()) if len(iou) else None, "tp_iog": float(iog.mean()) if len(iog) else None,
           "tp": int(len(iou))}
    return row, detection_outcomes(detections, ground_truth, iou_threshold=0.75)


def study(config: dict, out: Path, stage: str, split: str, samples: int) -> dict:
    """Rows per (cell, seed) with records, and each cell's paired comparison with the baseline."""
    folder, rows, outcomes = out / stage, [], {}
    for cell in config["cells"]:
        for seed in sorted({*config["seeds"], *config["final_seeds"]}):
            if not (run_dir(folder, cell, seed) / "done").exists():
                continue
            records = load_error_records(folder, cell, seed, split)
            if records is None:
                continue
            row, outcomes[cell, seed] = run_row(records)
            rows.append({"cell": cell, "seed": seed, **row})
    baseline, comparisons = config["baseline"], {}
    base = {r["seed"]: r for r in rows if r["cell"] == baseline}
    for cell in dict.fromkeys(r["cell"] for r in rows):
        seeds = [r["seed"] for r in rows if r["cell"] == cell and r["seed"] in base]
        if cell == baseline or not seeds:
            continue
        mine = {r["seed"]: r for r in rows if r["cell"] == cell}
        paired = {k: [mine[s][k] - base[s][k] for s in seeds] for k in ("ap50", "ap75", "ap50_95", "tp_iou", "tp_iog")
                  if all(mine[s][k] is not None and base[s][k] is not None for s in seeds)}
        comparisons[cell] = {"seeds": seeds,
                             "paired": {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1
                                            else 0.0, "per_seed": v} for k, v in paired.items()},
                             "bootstrap_ap75": paired_bootstrap([outcomes[cell, s] for s in seeds],
                                                                [outcomes[baseline, s] for s in seeds], samples,
                                                                use_07_metric=False)}
    return {"stage": stage, "split": split, "baseline": baseline, "ious": IOUS.tolist(), "runs": rows,
            "comparisons": comparisons}


def markdown(result: dict) -> str:
    cells = list(dict.fromkeys(r["cell"] for r in result["runs"]))
    lines = [f"Localisation, {result['stage']} / `{result['split']}` (AP: area under the curve; mean ± std over "
             f"seeds; Δ paired with {result['baseline']})", "",
             "| cell | seeds | AP50 | AP75 | AP50:95 | TP IoU | TP IoG with a neighbour | Δ AP75 [bootstrap 95%] "
             "| Δ TP IoU | Δ TP IoG |", "|" + " --- |" * 10]

    def stat(values):
        values = [v for v in values if v is not None]
        return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.4f}" if values else "—"

    for cell in cells:
        mine = [r for r in result["runs"] if r["cell"] == cell]
        comp = result["comparisons"].get(cell)
        delta = (lambda k: f"{comp['paired'][k]['mean']:+.4f} ± {comp['paired'][k]['std']:.4f}"
                 if comp and k in comp["paired"] else "—")
        boot = comp["bootstrap_ap75"] if comp else None
        lines.append(f"| {cell} | {len(mine)} | " + " | ".join(stat([r[k] for r in mine]) for k in
                                                               ("ap50", "ap75", "ap50_95", "tp_iou", "tp_iog"))
                     + f" | {delta('ap75')}" + (f" [{boot['low']:+.4f}, {boot['high']:+.4f}]" if boot else "")
                     + f" | {delta('tp_iou')} | {delta('tp_iog')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.crowd_localisation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--stage", default="final", choices=("select", "final"))
    parser.add_argument("--split", help="default: the config's select_split (select) or first test split (final)")
    parser.add_argument("--output-dir", type=Path, help="the runner's output folder (default: the config's), or a "
                        "published copy")
    parser.add_argument("--out", type=Path, help="default: experiments/results/<config name>/localisation_<stage>_<split>.json")
    opts = parser.parse_args(argv)
    config = load_ablation(opts.config)
    split = opts.split or (config.get("select_split") if opts.stage == "select" else
                           (config.get("test_splits") or [config["train"].get("test_split", "test")])[0])
    result = study(config, opts.output_dir or Path(config["output_dir"]), opts.stage, split,
                   int(config.get("bootstrap_samples", 1000)))
    if not result["runs"]:
        print(f"no error records for {opts.stage} / {split} in {opts.output_dir or config['output_dir']}")
        return 1
    target = opts.out or Path("experiments/results") / opts.config.stem / f"localisation_{opts.stage}_{split}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=1))
    print(markdown(result) + f"\nwritten: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
