"""The main job behind ``make demo``: synthetic crowds -> train with Repulsion Loss -> evaluate.

1. generate the synthetic crowd dataset (``data/synthetic``, unless it is there already);
2. train a MobileNetV1 SSD-Lite (width 0.5) with ``--loss multibox+repgt`` (RepGT with its
   validated default options) on the CPU;
3. evaluate it with eval.py's ``--crowd-subset`` (VOC07 mAP and crowd mAP);
4. draw its detections on a few test images;
5. print a closing table next to the multibox reference of the same recipe, read from
   ``experiments/results/demo_multibox.json`` (regenerate it with
   ``python -m repssd.demo --loss multibox --out runs/demo_multibox --write-reference``).

About 10 minutes on 2 CPU cores; every path it writes is printed at the end.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2

import eval as eval_cli  # the repository's CLIs (eval.py, train.py at its root): the demo runs from there
import train as train_cli

from .convert import load_model
from .data.factory import open_dataset
from .data.synthetic import generate
from .detector import Detector
from .visualize import draw_detections

# the CPU-sized recipe (experiments/synthetic_crowd.yaml uses the same)
RECIPE = ["--model", "mb1_ssdlite", "--width-mult", "0.5", "--dataset", "synthetic", "--train-split", "train",
          "--test-split", "test", "--batch-size", "16", "--lr", "0.05", "--warmup", "50",
          "--schedule", "cosine", "--zoom-out", "1.5", "--workers", "1", "--log-every", "20",
          "--checkpoint-every", "100", "--no-eval-at-end"]
REFERENCE = Path(__file__).resolve().parents[1] / "experiments" / "results" / "demo_multibox.json"
REGENERATE = "python -m repssd.demo --loss multibox --out runs/demo_multibox --write-reference"


def draw_examples(weights: Path, data: Path, out: Path, count: int = 4) -> list[Path]:
    """Annotated copies of the first ``count`` test images, detections above 0.3."""
    model, config = load_model(weights)
    dataset = open_dataset("synthetic", data, "test")
    detector = Detector(model, conf_thresh=0.3, top_k=50)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    images = [dataset.load(i)[0] for i in range(min(count, len(dataset)))]
    for i, (image, det) in enumerate(zip(images, detector.predict(images))):
        path = out / f"{dataset.ids[i]}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(draw_detections(image, det, config.get("class_names")), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def closing_table(summary: dict, reference_file: Path = REFERENCE) -> str:
    """This run next to the shipped multibox reference of the same recipe (labelled as such)."""
    rows = [(f"{summary['loss']} (this run)", summary)]
    note = f"multibox reference: not found ({reference_file}); make it with `{REGENERATE}`"
    if reference_file.exists():
        reference = json.loads(reference_file.read_text())
        same = all(reference.get(k) == summary.get(k) for k in ("recipe", "iterations", "train_images", "test_images"))
        rows.append((f"{reference['loss']} (reference, from a file)", reference))
        note = (f"reference: {reference_file.name}, shipped with repssd ({reference.get('date', '?')}), "
                f"{'the same recipe' if same else 'A DIFFERENT RECIPE: not comparable'}; regenerate: `{REGENERATE}`")
    lines = [f"| {'loss':44s} | {'mAP':>7s} | {'crowd mAP':>9s} | {'crowd boxes':>11s} | {'iterations':>10s} |",
             f"| {'-' * 44} | {'-' * 7} | {'-' * 9} | {'-' * 11} | {'-' * 10} |"]
    for name, row in rows:
        lines.append(f"| {name:44s} | {row['map']:7.4f} | {row['crowd_map']:9.4f} | {row['crowd_boxes']:11d} | "
                     f"{row['iterations']:10d} |")
    return "\n".join(lines + ["", note])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repssd.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"), help="synthetic dataset folder")
    parser.add_argument("--max-iter", type=int, default=600, help="training iterations (batch 16)")
    parser.add_argument("--train-images", type=int, default=800)
    parser.add_argument("--test-images", type=int, default=150)
    parser.add_argument("--loss", default="multibox+repgt", help="loss spec (default options: the validated ones)")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="the multibox reference summary")
    parser.add_argument("--write-reference", action="store_true", help="store this run's summary as --reference")
    opts = parser.parse_args(argv)
    start = time.perf_counter()
    if not (opts.data / "ImageSets" / "Main" / "train.txt").exists():
        print(f"[1/4] generating the synthetic crowd set in {opts.data} ...")
        generate(opts.data, train=opts.train_images, test=opts.test_images, seed=0)
    else:
        print(f"[1/4] synthetic crowd set: {opts.data} (already there)")
    print(f"[2/4] training mb1_ssdlite with --loss {opts.loss} for {opts.max_iter} iterations ...")
    code = train_cli.main(RECIPE + ["--loss", opts.loss, "--data-root", str(opts.data), "--max-iter", str(opts.max_iter),
                                    "--output-dir", str(opts.out), "--resume", "auto"])
    if code:
        return code
    weights = opts.out / "checkpoints" / "last.pth"
    print("[3/4] evaluating: VOC07 mAP and crowd-subset mAP ...\n")
    code = eval_cli.main(["--weights", str(weights), "--crowd-subset", "--output-dir", str(opts.out / "eval"),
                          "--workers", "1"])
    if code:
        return code
    print("\n[4/4] drawing detections on test images ...")
    examples = draw_examples(weights, opts.data, opts.out / "examples")
    report = json.loads((opts.out / "eval" / "report.json").read_text())
    summary = {"loss": opts.loss, "map": report["map"], "crowd_map": report["crowd"]["map"],
               "crowd_boxes": report["crowd"]["num_boxes"], "iterations": opts.max_iter,
               "train_images": opts.train_images, "test_images": report["num_images"], "recipe": " ".join(RECIPE),
               "minutes": round((time.perf_counter() - start) / 60, 1), "date": time.strftime("%Y-%m-%d")}
    (opts.out / "summary.json").write_text(json.dumps(summary, indent=1))
    if opts.write_reference:
        opts.reference.parent.mkdir(parents=True, exist_ok=True)
        opts.reference.write_text(json.dumps(summary, indent=1) + "\n")
    print("\n" + closing_table(summary, opts.reference))
    print(f"\ndemo finished in {(time.perf_counter() - start) / 60:.1f} min")
    print(f"  report:        {opts.out / 'eval' / 'report.md'} (and report.json, pr_curve.png); {opts.out / 'summary.json'}")
    print(f"  loss curves:   {opts.out / 'loss.png'} (per term; log.jsonl, log.csv), {opts.out / 'diagnostics.png'}")
    print(f"  detections:    {', '.join(str(p) for p in examples)}")
    print(f"  checkpoint:    {weights}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
