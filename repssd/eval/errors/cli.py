"""``python -m repssd.eval.errors``: a checkpoint's crowd errors on a dataset (options as eval.py's)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ...convert import WeightsError, config_beside, load_model
from ...data import DatasetError, SSDTestTransform
from ...data.factory import class_names, open_dataset, parse_data_options
from ...models import size_option
from ...options import NON_NEGATIVE, POSITIVE, bad_device, bad_option
from ...postprocess import SCORES, postprocess_options
from ..inference import ground_truth_of, image_ids, predict_with_candidates
from .analysis import analyse
from .report import format_errors, write_errors

__all__ = ["main"]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m repssd.eval.errors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("model and data (defaults: the training config beside the checkpoint)")
    source.add_argument("--weights", type=Path, required=True, help="checkpoint or weights file")
    for flag in ("--model", "--image-size", "--dataset", "--split", "--data-options"):
        source.add_argument(flag)
    source.add_argument("--anchor-reference", type=float)
    source.add_argument("--data-root", type=Path)
    source.add_argument("--frame-stride", type=int)
    analysis = parser.add_argument_group("analysis")
    analysis.add_argument("--label", type=int, help="class analysed (default: the dataset's person class, else 1)")
    analysis.add_argument("--score-thresh", type=_floats, default=[0.5], help="score thresholds, comma-separated")
    analysis.add_argument("--fppi", type=_floats, default=[0.1, 1.0], help="FPPI references, comma-separated")
    post = parser.add_argument_group("post-processing and inference (defaults as eval.py's)")
    post.add_argument("--score", choices=SCORES)
    for flag in ("--conf-thresh", "--nms"):
        post.add_argument(flag, type=float)
    post.add_argument("--top-k", type=int)
    post.add_argument("--batch-size", type=int, default=16)
    post.add_argument("--workers", type=int, default=2)
    post.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output-dir", type=Path, help="default: <checkpoint run>/errors, else runs/errors")
    return parser.parse_args(argv)


def _open(opts: argparse.Namespace):
    """eval.py's model and dataset resolution -> (model, config, dataset, kind, split)."""
    config = config_beside(opts.weights) if opts.weights.is_file() else {}
    kind, root = opts.dataset or config.get("dataset"), opts.data_root or config.get("data_root")
    if kind is None or root is None:
        raise ValueError("no dataset: pass --dataset and --data-root (or a checkpoint saved with its config)")
    model, config = load_model(opts.weights, opts.model, **size_option(opts.image_size, opts.anchor_reference))
    same_data = opts.dataset in (None, config.get("dataset"))  # the training config's options apply
    text = opts.data_options if opts.data_options is not None else config.get("data_options") if same_data else None
    options = parse_data_options(kind, text, training=False,
                                 frame_stride=opts.frame_stride or (config.get("frame_stride") if same_data else None))
    split = opts.split or config.get("test_split", "test")
    return model, config, open_dataset(kind, root, split, SSDTestTransform(model.input_size), **options), kind, split


def main(argv: list[str] | None = None) -> int:
    opts = _parse_args(argv)
    try:
        problem = bad_option(opts, batch_size=POSITIVE, workers=NON_NEGATIVE, top_k=POSITIVE, frame_stride=POSITIVE,
                             anchor_reference=POSITIVE) or bad_device(opts.device)
        if problem:
            raise ValueError(problem)
        model, config, dataset, kind, split = _open(opts)
        names = class_names(dataset)
        label = opts.label or (names.index("person") + 1 if "person" in names else 1)
        post = postprocess_options(config, score=opts.score, conf_thresh=opts.conf_thresh, nms_thresh=opts.nms,
                                   top_k=opts.top_k)
        kept, candidates = predict_with_candidates(model, dataset, opts.batch_size, opts.workers, opts.device, **post)
        if kept and all(d is None for d in kept):
            raise ValueError(f"none of the {len(kept)} images of {kind} {split} can be read")
    except (WeightsError, DatasetError, ValueError) as err:
        print(f"repssd.eval.errors: {err}", file=sys.stderr)
        return 2
    result = analyse(kept, candidates, ground_truth_of(dataset), post["nms_thresh"], opts.score_thresh, opts.fppi,
                     label, ids=image_ids(dataset))
    result.update(class_name=names[label - 1] if 0 < label <= len(names) else str(label), dataset=kind, split=split,
                  weights=str(opts.weights))
    out = opts.output_dir or (opts.weights.parent.parent / "errors" if config else Path("runs/errors"))
    paths = write_errors(result, out)
    print(format_errors(result))
    print(f"\nerrors: {', '.join(str(p) for p in paths.values())}")
    return 0
