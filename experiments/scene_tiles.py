"""Prototype of the scene-reading ``auto`` tiles (issue 34) on validation images, before it becomes the
rule: per image, the whole-image pass's people give a height line (repssd.slicing.scene.fit_heights),
the line gives band tiles aimed at ``--target`` input pixels (band_tiles), and the tiles plus the whole
image run and merge as sliced inference does today (crowd merge). Where the first pass finds fewer
than ``--min-people`` people scoring ``--fit-score`` or more, today's ``auto`` tiles are used.

    python -m experiments.scene_tiles --weights weights/oidv4_ssd_mbv2_person.pth --dataset mot \\
        --data-root data/MOT17-mini --split MOT17-02-FRCNN,MOT17-09-FRCNN,MOT17-13-FRCNN \\
        --targets 40 60 80 --out experiments/results/slicing_scene/oidv4_ssd_mbv2_person/scene_mot17_val_s1.jsonl

One JSON line per target (AP, crowd AP, recall, passes and seconds per image), resumable like
experiments/slicing_study.py, whose study files it writes beside.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from repssd.convert import load_model
from repssd.data.factory import class_names, open_dataset
from repssd.detector import Detector
from repssd.eval import DetectionEvaluator
from repssd.eval.inference import ground_truth_of, image_ids, load_image
from repssd.postprocess import postprocess_options
from repssd.slicing import Slicing, smallest_anchor
from repssd.slicing.scene import band_tiles, fit_heights


@dataclass(frozen=True)
class FixedTiles(Slicing):
    """A :class:`Slicing` whose tiles are given (the band tiles of one image), plus the whole image."""

    given: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))

    def tiles(self, height: int, width: int, input_size, smallest_anchor) -> np.ndarray:
        return np.concatenate([self.given, np.array([[0, 0, width, height]], np.int64)])


def scene_slicing(detector: Detector, image: np.ndarray, target: float, fit_score: float,
                  min_people: int) -> tuple[Slicing, str]:
    """The slicing of one image: band tiles from its whole-image people, or today's auto ("fallback")."""
    first = detector.predict([image])[0]  # the whole image (the detector has no slicing between images)
    sure = (first.scores >= fit_score).numpy()
    boxes, scores = first.boxes.numpy()[sure], first.scores.double().numpy()[sure]
    fit = fit_heights(boxes, scores, image_height=image.shape[0]) if sure.sum() >= min_people else None
    if fit is None:
        return Slicing(size="auto"), "fallback"
    height, width = image.shape[:2]
    return FixedTiles(size=(1, 1), given=band_tiles(height, width, fit, target, detector.model.input_size[1])), "scene"


def score(weights: Path, dataset, target: float, fit_score: float, min_people: int) -> dict:
    model, config = load_model(weights)
    post = {"score_dtype": torch.float64, **postprocess_options(config)}
    detector = Detector(model, batch_size=16, **post)
    anchor = smallest_anchor(detector.model)
    detections, passes, kinds = [], [], []
    start = time.perf_counter()
    for index in range(len(dataset)):
        image = load_image(dataset, index)
        slicing, kind = scene_slicing(detector, image, target, fit_score, min_people)
        detector.slicing = slicing
        det = detector.predict([image])[0]
        detector.slicing = None
        detections.append({"boxes": det.boxes, "scores": det.scores, "labels": det.labels})
        passes.append(len(slicing.tiles(image.shape[0], image.shape[1], detector.model.input_size, anchor)) + 1)
        kinds.append(kind)
    seconds = (time.perf_counter() - start) / len(dataset)
    evaluator = DetectionEvaluator(class_names(dataset), "voc07", crowd_subset=True)
    evaluator.process(detections, ground_truth_of(dataset), image_ids(dataset))
    report = evaluator.evaluate()
    return {"ap": report["map"], "crowd_ap": report["crowd"]["map"],
            "recall": float(np.max(report["curves"]["person"][0], initial=0.0)),
            "passes_per_image": float(np.mean(passes)), "seconds_per_image": seconds,
            "fallback_images": kinds.count("fallback"), "images": len(dataset)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--targets", type=float, nargs="+", required=True, help="input heights to aim bands at")
    parser.add_argument("--fit-score", type=float, default=0.3)
    parser.add_argument("--min-people", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    opts = parser.parse_args(argv)
    torch.set_num_threads(2)
    dataset = open_dataset(opts.dataset, opts.data_root, opts.split)
    done = {json.loads(line)["target"] for line in opts.out.read_text().splitlines()} if opts.out.is_file() else set()
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    for target in opts.targets:
        if target in done:
            continue
        row = {"target": target, "fit_score": opts.fit_score, "min_people": opts.min_people,
               **score(opts.weights, dataset, target, opts.fit_score, opts.min_people)}
        with opts.out.open("a") as file:
            file.write(json.dumps(row) + "\n")
        print(f"target {target:5.1f} px  AP {row['ap']:.4f} crowd {row['crowd_ap']:.4f} recall {row['recall']:.4f} "
              f"passes {row['passes_per_image']:.1f} {row['seconds_per_image']:.2f} s/img "
              f"({row['fallback_images']} of {row['images']} images fell back)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
