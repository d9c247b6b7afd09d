"""Evaluate a detector: VOC mAP next to crowd-subset mAP (and COCO / CrowdHuman metrics).

    python eval.py --weights runs/demo/checkpoints/last.pth --crowd-subset
    python eval.py --weights ssd300_mAP_77.43_v2.pth --model ssd300_vgg16 --dataset voc \\
                   --data-root VOCdevkit/VOC2007 --split test --crowd-subset --metric voc07
    python eval.py --detections runs/eval/detections.json --data-root ... --crowd-subset   # re-score only

Model and dataset default to the training config saved beside the checkpoint. Writes
DIR/report.json, DIR/report.md, DIR/pr_curve.png and DIR/detections.json (pixel boxes per image);
with --errors also the crowd error analysis of repssd.eval.errors (DIR/errors.json, errors.md,
errors.png, error_records.json), from the same inference pass. With --slice SIZE the model runs on
overlapping tiles of each original image (and the whole image), merged (docs/slicing.md); every
metric scores the merged detections, and --errors takes the tiles' detections before the merge as
candidates (a miss can be "merged away").
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from repssd.convert import WeightsError, config_beside, load_model
from repssd.data import DatasetError, SSDTestTransform
from repssd.data.factory import DATASET_KINDS, class_names, open_dataset, parse_data_options
from repssd.eval import METRICS, DetectionEvaluator, format_table, write_report
from repssd.eval.errors import analyse, format_errors, write_errors
from repssd.eval.inference import (ground_truth_of, image_ids, predict_dataset, predict_sliced,
                                   predict_with_candidates)
from repssd.models import MODELS, size_option
from repssd.files import write_atomic
from repssd.options import FRACTION, IOU, NON_NEGATIVE, POSITIVE, bad_device, bad_option
from repssd.postprocess import SCORES, candidate_options, postprocess_options
from repssd.slicing.options import add_slicing_arguments, slicing_from_args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("what to evaluate")
    source.add_argument("--weights", type=Path, help="checkpoint or weights file")
    source.add_argument("--model", choices=list(MODELS), help="architecture (default: the training config's)")
    source.add_argument("--image-size", help="network input, S or WIDTHxHEIGHT (the TF layouts ssd*_mb*_tf; default: the "
                        "checkpoint config's)")
    source.add_argument("--anchor-reference", type=float, help="TF layouts (ssd*_mb*_tf): anchor sizes as on a shorter side "
                        "of this many px (e.g. 300) at any --image-size")
    source.add_argument("--detections", type=Path, help="re-score a detections.json instead of running a model")
    data = parser.add_argument_group("data (defaults: the training config beside the checkpoint)")
    data.add_argument("--dataset", choices=list(DATASET_KINDS))
    data.add_argument("--data-root", type=Path)
    data.add_argument("--split", help="image set / split (default: the config's test split, else 'test')")
    data.add_argument("--data-options", help="loader options, key=value,... (default: the config's, less the "
                      "training-only ones such as filter)")
    data.add_argument("--frame-stride", type=int, help="mot: every N-th frame of each sequence")
    metric = parser.add_argument_group("metrics")
    metric.add_argument("--metric", choices=METRICS, default="voc07")
    metric.add_argument("--crowd-subset", action="store_true", help="also report crowd-subset AP")
    metric.add_argument("--crowd-iou", type=float, default=0.1, help="same-class IoU that makes a crowd")
    metric.add_argument("--max-dets", type=int, default=100, help="COCO detections per image")
    metric.add_argument("--errors", action="store_true", help="also the crowd error analysis of the person class "
                        "(Repulsion Loss paper Sec. 3; python -m repssd.eval.errors for its options)")
    run = parser.add_argument_group("inference")
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    post = parser.add_argument_group("post-processing (defaults: the checkpoint config's, else repssd's: softmax, "
                                     "0.01, NMS 0.45, 200)")
    post.add_argument("--score", choices=SCORES, help="score function over the class columns")
    post.add_argument("--conf-thresh", type=float)
    post.add_argument("--nms", type=float, help="NMS IoU threshold")
    post.add_argument("--top-k", type=int, help="detections kept per image")
    add_slicing_arguments(parser)
    parser.add_argument("--output-dir", type=Path, help="default: <checkpoint run>/eval, else runs/eval")
    return parser.parse_args(argv)


def fail(message: str) -> int:
    print(f"eval.py: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    problem = (bad_option(opts, batch_size=POSITIVE, workers=NON_NEGATIVE, top_k=POSITIVE, max_dets=POSITIVE,
                          anchor_reference=POSITIVE, frame_stride=POSITIVE, conf_thresh=FRACTION, nms=IOU,
                          crowd_iou=FRACTION)
               or (bad_device(opts.device) if opts.device else None))
    slicing, slice_problem = slicing_from_args(opts)
    if problem or slice_problem:
        return fail(problem or slice_problem)
    if slicing is not None and opts.detections:
        return fail("--slice needs --weights: slicing runs the model on tiles")
    if not opts.weights and not opts.detections:
        return fail("give --weights (run the model) or --detections (re-score saved detections)")
    if opts.errors and opts.detections:
        return fail("--errors needs --weights: it post-processes the model output a second time, without NMS")
    try:
        config = config_beside(opts.weights) if opts.weights and opts.weights.is_file() else {}
    except WeightsError as err:
        return fail(str(err))
    kind = opts.dataset or config.get("dataset")
    root = opts.data_root or (Path(config["data_root"]) if config.get("data_root") else None)
    split = opts.split or config.get("test_split", "test")
    if kind is None or root is None:
        return fail("no dataset: pass --dataset and --data-root (or a checkpoint saved with its config)")
    try:
        model = None
        if opts.detections is None:
            model, config = load_model(opts.weights, opts.model, **size_option(opts.image_size, opts.anchor_reference))
        size = model.input_size if model is not None else 300
        same_data = opts.dataset in (None, config.get("dataset"))  # the training config's options apply
        text = opts.data_options if opts.data_options is not None else config.get("data_options") if same_data else None
        stride = opts.frame_stride or (config.get("frame_stride") if same_data else None)
        options = parse_data_options(kind, text, training=False, frame_stride=stride)
        dataset = open_dataset(kind, root, split, transform=SSDTestTransform(size), **options)
    except (WeightsError, DatasetError, ValueError) as err:
        return fail(str(err))
    names = class_names(dataset)
    ground_truth = ground_truth_of(dataset)
    ids = image_ids(dataset)
    run_dir = opts.weights is not None and config and opts.weights.parent.name == "checkpoints"  # a training run's
    out = opts.output_dir or (opts.weights.parent.parent / "eval" if run_dir else Path("runs/eval"))
    if opts.detections is not None:
        try:
            detections = [None if d.get("unreadable") else {k: torch.tensor(v) for k, v in d.items() if k != "id"}
                          for d in json.loads(opts.detections.read_text())["detections"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            return fail(f"{opts.detections}: not a detections file written by eval.py ({err})")
        if len(detections) != len(ground_truth):
            return fail(f"{opts.detections}: {len(detections)} images, but {kind} {split} has {len(ground_truth)}")
    else:
        post = postprocess_options(config, score=opts.score, conf_thresh=opts.conf_thresh, nms_thresh=opts.nms,
                                   top_k=opts.top_k)
        if opts.errors:  # one forward pass, post-processed twice: kept detections and candidates
            try:
                candidate_options(post)
            except ValueError as err:  # Soft-NMS
                return fail(f"--errors: {err}")
        if slicing is not None:
            print(f"sliced inference: {slicing.describe()}")
            try:
                out_sliced = predict_sliced(model, dataset, slicing, opts.batch_size, opts.workers, opts.device,
                                            with_candidates=opts.errors, **post)
            except ValueError as err:  # flags that would cut an image into too many tiles
                return fail(f"{root}: {err}")
            detections, candidates = out_sliced if opts.errors else (out_sliced, None)
        elif opts.errors:
            detections, candidates = predict_with_candidates(model, dataset, opts.batch_size, opts.workers,
                                                             opts.device, **post)
        else:
            detections = predict_dataset(model, dataset, opts.batch_size, opts.workers, opts.device, **post)
        if ground_truth and all(d is None for d in detections):
            return fail(f"{root}: none of the {len(detections)} images of {kind} {split} can be read")
        write_atomic(out / "detections.json", json.dumps({"dataset": kind, "split": split, "detections": [
            {"id": i, "unreadable": True} if d is None else {"id": i, **{k: v.tolist() for k, v in d.items()}}
            for i, d in zip(ids, detections)]}))
    evaluator = DetectionEvaluator(names, opts.metric, opts.crowd_subset, opts.crowd_iou, opts.max_dets)
    evaluator.process(detections, ground_truth, ids)
    report = evaluator.evaluate()
    report.update(dataset=kind, split=split, weights=str(opts.weights) if opts.weights else None,
                  slicing=None if slicing is None else {**asdict(slicing), "description": slicing.describe()})
    paths = write_report(report, out)
    print(format_table(report))
    print(f"\nreport: {paths['json']}, {paths['markdown']}, {paths['plot']}")
    if opts.errors:
        label = names.index("person") + 1 if "person" in names else 1
        errors = analyse(detections, candidates, ground_truth, post["nms_thresh"], label=label, ids=ids)
        errors.update(class_name=names[label - 1] if label <= len(names) else str(label), dataset=kind, split=split)
        error_paths = write_errors(errors, out)
        print(f"\n{format_errors(errors)}\n\nerrors: {', '.join(str(p) for p in error_paths.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
