"""Sliced inference of a detector on real frames: AP, recall and errors of each tile setting and merge,
with the network passes and seconds each costs (docs/slicing.md, README "Detecting people in large images").

    python -m experiments.slicing_study --weights weights/ssdlite_mbv2_person.pth \\
        --dataset mot --data-root data/MOT17-mini --split all --out experiments/results/slicing/mot17_all.jsonl \\
        --settings full 540:crowd 540:nms 540:greedy-nmm:ios auto:crowd

A setting is ``full`` (no slicing) or ``SIZE[:MERGE[:METRIC[:THRESH]]]`` with optional ``@OVERLAP``
and ``-nofull`` after the size (``600@0.1-nofull:crowd``). One JSON line per setting; settings
already in the output file are skipped (resumable). ``--conf`` overrides the model's score floor
(SAHI's detection models drop boxes under 0.3 by default and switch GREEDYNMM to NMS/IoU under 0.1).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from repssd.convert import load_model
from repssd.data import SSDTestTransform
from repssd.data.factory import class_names, open_dataset
from repssd.eval import DetectionEvaluator
from repssd.eval.bootstrap import Outcomes, detection_outcomes, paired_bootstrap
from repssd.eval.errors import CAUSES, analyse
from repssd.eval.inference import ground_truth_of, image_ids, predict_sliced, predict_with_candidates
from repssd.postprocess import postprocess_options
from repssd.slicing import Slicing, smallest_anchor


def parse_setting(text: str) -> Slicing | None:
    """``full`` -> None; ``SIZE[@OVERLAP][-nofull][:MERGE[:METRIC[:THRESH]]]`` -> :class:`Slicing`."""
    if text == "full":
        return None
    head, *rest = text.split(":")
    full = not head.endswith("-nofull")
    head = head.removesuffix("-nofull")
    size, _, overlap = head.partition("@")
    merge = rest[0] if rest else "crowd"
    metric = rest[1] if len(rest) > 1 else "iou"
    thresh = float(rest[2]) if len(rest) > 2 else None
    return Slicing(size=size, overlap=float(overlap or 0.2), full_image=full, merge=merge, metric=metric, thresh=thresh)


def passes_per_image(dataset, slicing: Slicing | None, model) -> float:
    """Network passes (tiles + whole image) per image of ``dataset``, from the image sizes."""
    if slicing is None:
        return 1.0
    sizes = [(r.height, r.width) for part in getattr(dataset, "datasets", [dataset]) for r in part.records]
    if any(h is None for h, _ in sizes):
        return float("nan")
    anchor = smallest_anchor(model)
    return float(np.mean([len(slicing.tiles(h, w, model.input_size, anchor)) for h, w in sizes]))


def score(model, config: dict, dataset, slicing: Slicing | None, conf: float | None,
          batch_size: int) -> tuple[dict, Outcomes]:
    """One setting on ``dataset``: (metrics, error counts and cost; detection outcomes for the bootstrap)."""
    post = postprocess_options(config, conf_thresh=conf)
    start, cpu = time.perf_counter(), time.process_time()
    if slicing is None:
        detections, candidates = predict_with_candidates(model, dataset, batch_size, 0, "cpu", progress=False, **post)
    else:
        detections, candidates = predict_sliced(model, dataset, slicing, batch_size, 0, "cpu", progress=False,
                                                with_candidates=True, **post)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    ground_truth, ids = ground_truth_of(dataset), image_ids(dataset)
    evaluator = DetectionEvaluator(class_names(dataset), "voc07", crowd_subset=True)
    evaluator.process(detections, ground_truth, ids)
    report = evaluator.evaluate()
    recall = report["curves"]["person"][0]
    errors = analyse(detections, candidates, ground_truth, post["nms_thresh"], score_thresholds=(0.3, 0.5), ids=ids)
    outcomes = detection_outcomes(detections, ground_truth)
    at = {row["name"]: {k: row[k] for k in ("tp", "fp", "fp_by_category", "misses", "misses_by_cause")}
          for row in errors["thresholds"] if row["kind"] == "score"}
    return {"ap": report["map"], "crowd_ap": report["crowd"]["map"], "recall": float(np.max(recall, initial=0.0)),
            "npos": int(errors["npos"]), "images": len(dataset), "seconds_per_image": seconds / len(dataset),
            "cpu_seconds_per_image": cpu / len(dataset), "errors": at, "causes": list(CAUSES)}, outcomes


def outcomes_path(out: Path, setting: str, conf: float | None) -> Path:
    """Where a setting's detection outcomes (for the paired image bootstrap) are kept."""
    name = setting.replace(":", "_").replace("@", "o") + ("" if conf is None else f"_conf{conf:g}")
    return out.with_suffix("") / f"{name}.npz"


def compare(path: Path, pairs: list[str], samples: int = 1000) -> str:
    """Paired image bootstrap of the AP difference of settings ``A B`` (both of ``path``)."""
    def load(setting: str) -> Outcomes:
        conf = None
        if "@conf" in setting:
            setting, conf = setting.split("@conf")[0], float(setting.split("@conf")[1])
        with np.load(outcomes_path(path, setting, conf)) as data:
            return Outcomes(**{k: data[k] for k in Outcomes.__annotations__})
    lines = ["| A | B | AP(A) - AP(B) | 95% interval (image bootstrap) | share of resamples <= 0 |", "|" + " --- |" * 5]
    for a, b in zip(pairs[::2], pairs[1::2]):
        result = paired_bootstrap([load(a)], [load(b)], num_samples=samples)
        lines.append(f"| {a} | {b} | {result['diff']:+.4f} | [{result['low']:+.4f}, {result['high']:+.4f}] | "
                     f"{result['p_le_0']:.3f} |")
    return "\n".join(lines)


def table(path: Path) -> str:
    """A study file as a markdown table: AP, crowd AP, recall, passes and seconds per image, and the
    misses the merge caused at score 0.5 (people merged into a neighbour's true positive)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    if not all("errors" in r for r in rows):
        lines = ["| setting | conf | AP | crowd AP | recall | passes / image | s / image (2 cores) |", "|" + " --- |" * 7]
        lines += [f"| {r['slicing']} | {'model' if r['conf'] is None else r['conf']} | {r['ap']:.4f} | "
                  f"{r['crowd_ap']:.4f} | {r['recall']:.4f} | {r['passes_per_image']:.1f} | {r['seconds_per_image']:.2f} |"
                  for r in rows]
        return "\n".join(lines)
    at = "score>=0.3" if all("score>=0.3" in r["errors"] for r in rows) else "score>=0.5"
    lines = [f"| setting | conf | AP | crowd AP | recall | passes / image | s / image (2 cores) | TP ({at}) | "
             "duplicates | merged away: into a neighbour's TP / other | suppressed by NMS |", "|" + " --- |" * 11]
    for r in rows:
        e = r["errors"][at]
        merged = f"{e['misses_by_cause'].get('merged_neighbour', 0)} / {e['misses_by_cause'].get('merged_other', 0)}"
        suppressed = e["misses_by_cause"]["suppressed_neighbour"] + e["misses_by_cause"]["suppressed_other"]
        lines.append(f"| {r['slicing']} | {'model' if r['conf'] is None else r['conf']} | {r['ap']:.4f} | "
                     f"{r['crowd_ap']:.4f} | {r['recall']:.4f} | {r['passes_per_image']:.1f} | "
                     f"{r['seconds_per_image']:.2f} | {e['tp']} | {e['fp_by_category']['duplicate']} | {merged} | "
                     f"{suppressed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, nargs="+", help="print the tables of these study files and stop")
    parser.add_argument("--compare", nargs="+", metavar="FILE A B", help="a study file, then pairs of its settings "
                        "(SETTING or SETTING@confC): paired image bootstrap of their AP difference")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--dataset")
    parser.add_argument("--data-root")
    parser.add_argument("--split")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--settings", nargs="+")
    parser.add_argument("--conf", type=float, help="score floor (default: the model config's)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    opts = parser.parse_args(argv)
    if opts.compare:
        print(compare(Path(opts.compare[0]), opts.compare[1:]))
        return 0
    if opts.report:
        for path in opts.report:
            print(f"### {path.stem}\n\n{table(path)}\n")
        return 0
    if not all((opts.weights, opts.dataset, opts.data_root, opts.split, opts.out, opts.settings)):
        parser.error("--weights, --dataset, --data-root, --split, --out and --settings are needed to run")
    torch.set_num_threads(opts.threads)
    model, config = load_model(opts.weights)
    # the whole-image pass resizes with the test transform; sliced inference cuts tiles from the originals
    dataset = open_dataset(opts.dataset, opts.data_root, opts.split, transform=SSDTestTransform(model.input_size))
    rows = [json.loads(line) for line in opts.out.read_text().splitlines()] if opts.out.exists() else []
    done = {(r["setting"], r["conf"]) for r in rows if outcomes_path(opts.out, r["setting"], r["conf"]).exists()}
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    for text in opts.settings:
        if (text, opts.conf) in done:
            continue
        slicing = parse_setting(text)
        result, outcomes = score(model, config, dataset, slicing, opts.conf, opts.batch_size)
        row = {"setting": text, "conf": opts.conf, "dataset": opts.dataset, "split": opts.split,
               "slicing": slicing.describe() if slicing else "whole image",
               "passes_per_image": passes_per_image(dataset, slicing, model), **result}
        saved = outcomes_path(opts.out, text, opts.conf)
        saved.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(saved, **{k: getattr(outcomes, k) for k in Outcomes.__annotations__})
        same = [i for i, r in enumerate(rows) if (r["setting"], r["conf"]) == (text, opts.conf)]
        rows = rows[:same[0]] + [row] + rows[same[0] + 1:] if same else rows + [row]
        opts.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{text:28s} AP {row['ap']:.4f} crowd {row['crowd_ap']:.4f} recall {row['recall']:.4f} "
              f"passes {row['passes_per_image']:.1f} {row['seconds_per_image']:.2f} s/img", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
