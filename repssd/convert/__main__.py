"""``python -m repssd.convert tf-graph FILE.pb --out FILE.pth`` (a TF Object Detection API frozen
graph) or ``python -m repssd.convert tflite FILE.tflite --out FILE.pth`` (its TFLite export):
write a repssd checkpoint and, beside it, ``FILE.json`` (model, class names, input size, the
graph's post-processing), which ``detect.py``, ``eval.py`` and ``train.py --weights`` read."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checkpoints import WeightsError
from .tf_graph import checkpoint_problem, convert_graph, write_checkpoint
from .tflite_model import convert_tflite


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m repssd.convert", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    tf = commands.add_parser("tf-graph", help="a TF Object Detection API SSDLite-MobileNetV2 frozen graph")
    tf.add_argument("graph", type=Path, help="frozen_inference_graph.pb")
    lite = commands.add_parser("tflite", help="a TF Object Detection API SSD / SSDLite-MobileNetV2 or SSD-MobileNetV1 "
                               "TFLite file (fp32 or fp16 weights)")
    lite.add_argument("graph", type=Path, help="model.tflite")
    lite.add_argument("--classes", help="keep only these classes, comma-separated names (exact for sigmoid "
                      "scores), e.g. Person")
    for command in (tf, lite):
        command.add_argument("--out", type=Path, required=True,
                             help="checkpoint to write (FILE.pth; FILE.json beside it)")
        command.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        names = command.add_mutually_exclusive_group()
        names.add_argument("--labels", help="class names, comma-separated (background excluded), e.g. person")
        names.add_argument("--label-map", type=Path, help="a TF label map (.pbtxt, e.g. mscoco_label_map.pbtxt) "
                           "or a file of names, one per line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        if opts.label_map is not None and not opts.label_map.is_file():
            raise WeightsError(f"{opts.label_map}: no such label map")
        labels = opts.label_map.read_text() if opts.label_map is not None else opts.labels
        source = str(opts.label_map) if opts.label_map is not None else "--labels"
        problem = checkpoint_problem(opts.out, opts.overwrite)  # before the work
        if problem:
            raise WeightsError(problem)
        if opts.command == "tflite":
            classes = [c.strip() for c in opts.classes.split(",") if c.strip()] if opts.classes else None
            state, config = convert_tflite(opts.graph, labels, classes, source)
        else:
            state, config = convert_graph(opts.graph, labels, source)
        write_checkpoint(state, config, opts.out, opts.overwrite)
    except (WeightsError, OSError) as err:
        print(f"repssd.convert: {err}", file=sys.stderr)
        return 2
    post = config["postprocess"]
    source = config["source"]
    count = f"{source['tensors']} tensors" if "tensors" in source else f"{source['convolutions']} convolutions"
    print(f"{opts.graph} -> {opts.out} ({config['model']}, {len(config['class_names'])} classes: "
          f"{', '.join(config['class_names'][:5])}{' ...' if len(config['class_names']) > 5 else ''}; "
          f"{count}; {post['score']} scores, NMS {post['nms_thresh']}, {post['top_k']} detections)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
