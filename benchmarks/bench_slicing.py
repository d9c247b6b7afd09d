"""Sliced inference on 1920x1080 frames: repssd (all tiles batched) vs SAHI's loop through repssd's
adapter, the same tiles, model and merge, side by side in one run; and memory on a 20000x12000 image.

    python benchmarks/bench_slicing.py [--frames 4] [--repeats 3] [--threads 2] [--skip-huge] [--skip-speed]

1. Speed: SAHI 0.12.8 ``get_sliced_prediction`` (one slice per forward pass, its default) with
   ``repssd.integrations.sahi.RepssdDetectionModel`` against ``Detector(model, slicing=...)`` on
   the same frames, 512-px tiles, overlap 0.2, whole frame added, NMS/IoU 0.5 (what SAHI runs at
   the model's own score floor). Detections are checked equal (same count, boxes to 1e-3).
   Frames per second and the ratio; then repssd with the ``auto`` tiles and the crowd merge, the
   setting that reaches the AP of SAHI's usual one at less cost (docs/slicing.md).
2. Memory: one 20000x12000 image (720 MB of pixels) sliced in 512-px tiles: the process's peak
   resident memory above the image itself, at two tile batch sizes (tiles are streamed), at the
   model's score floor (every tile keeps its 100 best boxes: ~150,000 detections merged at once).

Model: the imported person detector ``weights/ssdlite_mbv2_person.pth`` if present, else the same
architecture with random weights. Frames: MOT17-mini frames under ``data/MOT17-mini`` if present
(1920x1080), else generated noise frames.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import median_times  # noqa: E402
from repssd.convert import load_model  # noqa: E402
from repssd.detector import Detector  # noqa: E402
from repssd.inputs import read_image_rgb  # noqa: E402
from repssd.models import build_model  # noqa: E402
from repssd.postprocess import postprocess_options  # noqa: E402
from repssd.slicing import Slicing, smallest_anchor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def model_and_post():
    weights = ROOT / "weights/ssdlite_mbv2_person.pth"
    if weights.exists():
        model, config = load_model(weights)
        return model, postprocess_options(config), "imported SSDLite-MobileNetV2 person detector"
    torch.manual_seed(0)
    model = build_model("ssdlite_mbv2_tf", 2).eval()
    return model, postprocess_options({"postprocess": {"score": "sigmoid", "nms_thresh": 0.6, "top_k": 100,
                                                       "conf_thresh": 1e-8, "clip": "after"}}), "random weights"


def frames(count: int) -> list[np.ndarray]:
    found = sorted((ROOT / "data/MOT17-mini").glob("*/img1/*.jpg"))
    found = [p for p in found if read_image_rgb(p).shape[:2] == (1080, 1920)][:count]
    if found:
        return [read_image_rgb(p) for p in found]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(count)]


def sahi_loop(adapter, images, slicing: Slicing) -> list:
    from sahi.predict import get_sliced_prediction

    return [get_sliced_prediction(image, adapter, slicing.size[1], slicing.size[0], slicing.overlap, slicing.overlap,
                                  perform_standard_pred=slicing.full_image, postprocess_type="NMS",
                                  postprocess_match_metric="IOU", postprocess_match_threshold=slicing.thresh,
                                  force_postprocess_type=True, verbose=0).object_prediction_list for image in images]


def speed(model, post, images, repeats: int) -> None:
    from repssd.integrations.sahi import RepssdDetectionModel

    slicing = Slicing(size=512, overlap=0.2, merge="nms", metric="iou", thresh=0.5)
    fused = Detector(model, **post).model  # BatchNorm folded: both sides run the same fast network
    adapter = RepssdDetectionModel(model=fused, device="cpu", postprocess=post)
    detector = Detector(fused, batch_size=16, fast=False, slicing=slicing, **post)
    ours, theirs = detector.predict(images), sahi_loop(adapter, images, slicing)
    for det, preds in zip(ours, theirs):
        a = np.array(sorted(det.boxes.tolist()))
        b = np.array(sorted(p.bbox.to_xyxy() for p in preds))
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-3, "repssd and SAHI disagree"
    passes = len(slicing.tiles(1080, 1920, model.input_size, smallest_anchor(model)))
    auto = Detector(fused, batch_size=16, fast=False, slicing=Slicing(), **post)
    auto_passes = len(Slicing().tiles(1080, 1920, model.input_size, smallest_anchor(model)))
    times = median_times({"sahi": lambda: sahi_loop(adapter, images, slicing), "ours": lambda: detector.predict(images),
                          "auto": lambda: auto.predict(images)}, repeats=repeats)
    t_sahi, t_ours, t_auto = (times[k] / len(images) for k in ("sahi", "ours", "auto"))
    print(f"1920x1080, 512-px tiles, overlap 0.2 + whole frame ({passes} passes), NMS/IoU 0.5, "
          f"{len(images)} frames, equal detections")
    print(f"  SAHI 0.12.8 loop (adapter)   {1 / t_sahi:6.2f} frames/s  {t_sahi:.3f} s/frame")
    print(f"  repssd, tiles batched        {1 / t_ours:6.2f} frames/s  {t_ours:.3f} s/frame  "
          f"x{t_sahi / t_ours:.2f} vs SAHI")
    print(f"  repssd auto + crowd merge    {1 / t_auto:6.2f} frames/s  {t_auto:.3f} s/frame  "
          f"x{t_sahi / t_auto:.2f} vs SAHI ({auto_passes} passes)")


def memory(model, post, batch_sizes=(4, 16)) -> None:
    image = np.random.default_rng(0).integers(0, 256, (12000, 20000, 3), dtype=np.uint8)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # at the model's own score floor every tile keeps its top_k boxes: ~150,000 detections to merge
    detector = Detector(model, slicing=Slicing(size=512, overlap=0.2, merge="crowd"), **post)
    for batch in batch_sizes:
        detector.batch_size = batch
        start = time.perf_counter()
        det = detector.predict([image])[0]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"20000x12000 image ({image.nbytes / 2**20:.0f} MB), 512-px tiles, batch {batch:2d}: "
              f"{len(det)} detections in {time.perf_counter() - start:.1f} s, peak RSS {peak:.0f} MB "
              f"({peak - base:+.0f} MB over the process with the image loaded)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-huge", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    model, post, what = model_and_post()
    print(f"model: {what}; {opts.threads} threads")
    if not opts.skip_speed:
        speed(model, post, frames(opts.frames), opts.repeats)
    if not opts.skip_huge:
        memory(model, post)


if __name__ == "__main__":
    main()
