"""Run a trained SSD on images, folders, videos or a camera; draw and save the detections.

    python detect.py --weights runs/demo/checkpoints/last.pth INPUT... [--output-dir DIR]
    python detect.py --weights ssd300_mAP_77.43_v2.pth --model ssd300_vgg16 photos/ clip.mp4 0
    python detect.py --weights weights/ssdlite_mbv2_person.pth --slice auto frames/   # large crowded frames

Writes DIR/<input>.jpg (annotated image), DIR/<input>.mp4 (annotated video) and
DIR/detections.json (pixel xyxy boxes, scores, labels and class names per input).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import torch

from repssd.convert import WeightsError, load_model
from repssd.data import VOC_CLASSES
from repssd.detector import Detector
from repssd.inputs import InputError, Source, expand_inputs, read_image_rgb, video_frames
from repssd.files import write_atomic
from repssd.options import FRACTION, IOU, POSITIVE, bad_device, bad_option, bad_output
from repssd.models import MODELS, size_option
from repssd.postprocess import METHODS, SCORES, Detections, postprocess_options
from repssd.slicing.options import add_slicing_arguments, slicing_from_args
from repssd.visualize import draw_detections, label_name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, video files or camera indices")
    parser.add_argument("--weights", required=True, type=Path, help="checkpoint or weights file (.pth)")
    parser.add_argument("--model", choices=list(MODELS), help="architecture (default: from the training config)")
    parser.add_argument("--image-size", help="network input, S or WIDTHxHEIGHT (the TF layouts ssd*_mb*_tf; default: the "
                        "checkpoint config's)")
    parser.add_argument("--anchor-reference", type=float, help="TF layouts (ssd*_mb*_tf): anchor sizes as on a shorter side "
                        "of this many px (e.g. 300) at any --image-size")
    parser.add_argument("--labels", type=Path, help="class names, one per line, background excluded")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/detect"))
    parser.add_argument("--conf-thresh", type=float, default=0.3, help="minimum score to keep and draw")
    parser.add_argument("--nms", type=float, help="NMS IoU threshold (default: the checkpoint config's, else 0.45)")
    parser.add_argument("--method", choices=METHODS, default="nms")
    parser.add_argument("--top-k", type=int, help="detections kept per image (default: the config's, else 200)")
    parser.add_argument("--score", choices=SCORES, help="score function (default: the config's, else softmax)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-frames", type=int, help="stop videos and cameras after this many frames")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_slicing_arguments(parser)
    return parser.parse_args(argv)


def class_names(opts: argparse.Namespace, config: dict, num_classes: int) -> list[str] | None:
    if opts.labels:
        if not opts.labels.is_file():
            raise InputError(f"{opts.labels}: no such labels file")
        names = [line.strip() for line in opts.labels.read_text().splitlines() if line.strip()]
        if len(names) != num_classes - 1:
            raise InputError(f"{opts.labels}: {len(names)} names, but the model has {num_classes - 1} classes")
        return names
    if config.get("class_names"):
        return list(config["class_names"])
    return list(VOC_CLASSES) if num_classes == len(VOC_CLASSES) + 1 else None


def inside_output(sources: list[Source], output_dir: Path) -> str | None:
    """Why the annotated copies in ``output_dir`` could replace an input (an input file inside that
    folder: its copy, or another input's of the same stem, would be written over it), or None."""
    folder = output_dir.resolve()
    for source in sources:
        if source.kind != "camera" and Path(source.target).resolve().parent == folder:
            return (f"--output-dir {output_dir} holds the input {source.target}: an annotated copy could replace it; "
                    "choose another --output-dir")
    return None


def to_json(det: Detections, names: list[str] | None) -> list[dict]:
    return [{"box": [round(v, 2) for v in box], "score": round(score, 5), "label": label,
             "name": label_name(label, names)}
            for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist())]


class Runner:
    """Runs the detector over sources and writes annotated media plus the JSON record."""

    def __init__(self, detector: Detector, names: list[str] | None, opts: argparse.Namespace) -> None:
        self.detector, self.names, self.opts = detector, names, opts
        self.records: dict[str, object] = {}
        self.used: set[str] = set()

    def output_path(self, source: Source, suffix: str) -> Path:
        stem, n = source.name, 1
        while stem + suffix in self.used:
            stem, n = f"{source.name}_{n}", n + 1
        self.used.add(stem + suffix)
        return self.opts.output_dir / (stem + suffix)

    def images(self, sources: list[Source]) -> list[str]:
        errors = []
        for start in range(0, len(sources), self.opts.batch_size):
            batch = []
            for source in sources[start:start + self.opts.batch_size]:
                try:
                    image = read_image_rgb(source.target)
                    self.detector.tiles(image)  # slicing flags that would cut it into too many tiles
                except InputError as err:
                    errors.append(str(err))
                    continue
                except ValueError as err:
                    errors.append(f"{source.target}: {err}")
                    continue
                batch.append((source, image))
            for (source, image), det in zip(batch, self.detector.predict([image for _, image in batch])):
                drawn = draw_detections(image, det, self.names)
                cv2.imwrite(str(self.output_path(source, ".jpg")), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
                self.records[source.target] = to_json(det, self.names)
        return errors

    def video(self, source: Source) -> None:
        frames, fps, size = video_frames(source, self.opts.max_frames)
        writer = cv2.VideoWriter(str(self.output_path(source, ".mp4")), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        per_frame, batch = [], []
        try:
            for frame in frames:
                batch.append(frame)
                if len(batch) == self.opts.batch_size:
                    per_frame += self._frames(batch, writer)
                    batch = []
            per_frame += self._frames(batch, writer)
        finally:
            writer.release()
        if not per_frame:
            raise InputError(f"{source.target}: no frames could be read")
        self.records[source.target] = [{"frame": i, "detections": d} for i, d in enumerate(per_frame)]

    def _frames(self, frames: list, writer: cv2.VideoWriter) -> list[list[dict]]:
        if not frames:
            return []
        out = []
        for frame, det in zip(frames, self.detector.predict(frames)):
            writer.write(cv2.cvtColor(draw_detections(frame, det, self.names), cv2.COLOR_RGB2BGR))
            out.append(to_json(det, self.names))
        return out


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    problem = (bad_option(opts, batch_size=POSITIVE, top_k=POSITIVE, max_frames=POSITIVE, anchor_reference=POSITIVE,
                          conf_thresh=FRACTION, nms=IOU)
               or bad_device(opts.device)
               or bad_output(opts.output_dir, "--output-dir")
               or slicing_from_args(opts)[1])
    if problem:
        print(f"detect.py: {problem}", file=sys.stderr)
        return 2
    try:
        model, config = load_model(opts.weights, opts.model, **size_option(opts.image_size, opts.anchor_reference))
        names = class_names(opts, config, model.num_classes)
    except (WeightsError, InputError, ValueError) as err:
        print(f"detect.py: {err}", file=sys.stderr)
        return 2
    sources, errors = expand_inputs(opts.inputs)
    problem = inside_output(sources, opts.output_dir)
    if problem:
        print(f"detect.py: {problem}", file=sys.stderr)
        return 2
    opts.output_dir.mkdir(parents=True, exist_ok=True)
    post = postprocess_options(config, score=opts.score, conf_thresh=opts.conf_thresh, nms_thresh=opts.nms,
                               top_k=opts.top_k, method=opts.method)
    slicing = slicing_from_args(opts)[0]
    if slicing is not None:
        print(f"sliced inference: {slicing.describe()}")
    detector = Detector(model, device=opts.device, batch_size=opts.batch_size, slicing=slicing, **post)
    runner = Runner(detector, names, opts)
    errors += runner.images([s for s in sources if s.kind == "image"])
    for source in (s for s in sources if s.kind != "image"):
        try:
            runner.video(source)
        except InputError as err:
            errors.append(str(err))
    for line in errors:
        print(f"detect.py: {line}", file=sys.stderr)
    if not runner.records:  # nothing to record: an earlier detections.json stays as it was
        print(f"detect.py: none of the {len(errors)} inputs could be processed; nothing written to {opts.output_dir}/",
              file=sys.stderr)
        return 1
    write_atomic(opts.output_dir / "detections.json", json.dumps(
        {"weights": str(opts.weights), "model": model.arch, "slicing": slicing.describe() if slicing else None,
         "detections": runner.records}, indent=1))
    print(f"{len(runner.records)} of {len(runner.records) + len(errors)} inputs done; "
          f"results in {opts.output_dir}/ (detections.json)")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
