"""Inference speed: repssd SSD300 vs torchvision ssd300_vgg16, and onnxruntime vs eager PyTorch.

    python benchmarks/bench_inference.py [--batch 8] [--repeats 5] [--threads N]

1. Network only (normalised input -> loc, conf): repssd ``ssd300_vgg16`` against torchvision's
   ``backbone`` + ``head`` on the same tensor, the same weights (converted) and outputs checked
   equal.
2. End to end on uint8 images (normalise, network, post-processing): repssd
   ``preprocess + model + detect`` against torchvision's ``model(images)``.
3. The exported ONNX graph (normalise, network, softmax, decode) in onnxruntime against the
   same graph in eager PyTorch, for ssd300_vgg16 and mb2_ssdlite.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch
from torchvision.models.detection import ssd300_vgg16

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import median_times  # noqa: E402
from repssd.convert import from_torchvision  # noqa: E402
from repssd.export import ExportModule, export_onnx  # noqa: E402
from repssd.models import build_model  # noqa: E402
from repssd.postprocess import detect  # noqa: E402


def report(title: str, times: dict[str, float], batch: int, reference: str) -> None:
    print(f"\n{title}")
    print(f"  {'path':34s} {'img/s':>8s} {'speed vs ' + reference:>24s}")
    for name, t in times.items():
        print(f"  {name:34s} {batch / t:8.2f} {times[reference] / t:23.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).eval()
    ours = from_torchvision(tv.state_dict()).eval()
    images = torch.randint(0, 256, (opts.batch, 3, 300, 300), dtype=torch.uint8)
    x = ours.preprocess(images)
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {opts.threads} threads, batch {opts.batch}")
    with torch.inference_mode():
        loc, conf = ours(x)
        head = tv.head(list(tv.backbone(x).values()))
        torch.testing.assert_close(loc, head["bbox_regression"], rtol=1e-4, atol=1e-4)
        net = median_times({"torchvision backbone + head": lambda: tv.head(list(tv.backbone(x).values())),
                            "repssd ssd300_vgg16": lambda: ours(x)}, repeats=opts.repeats)
        report("SSD300 network, normalised input -> (loc, conf)", net, opts.batch, "torchvision backbone + head")
        floats = [im.float() / 255 for im in images]
        e2e = median_times({"torchvision model(images)": lambda: tv(floats),
                            "repssd preprocess+model+detect": lambda: detect(*ours(ours.preprocess(images)), ours.priors)},
                           repeats=opts.repeats)
        report("SSD300 end to end, uint8 images -> detections", e2e, opts.batch, "torchvision model(images)")

    for name in ("ssd300_vgg16", "mb2_ssdlite"):
        model = ours if name == "ssd300_vgg16" else build_model(name, 21).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / "m.onnx")
            options = ort.SessionOptions()
            options.intra_op_num_threads = opts.threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = ExportModule(model)
        feed = {"images": images.float().numpy()}
        with torch.inference_mode():
            boxes = graph(images.float())[0]
            torch.testing.assert_close(torch.from_numpy(session.run(None, feed)[0]), boxes, rtol=1e-4, atol=1e-4)
            times = median_times({"eager PyTorch": lambda: graph(images.float()),
                                  "onnxruntime": lambda: session.run(None, feed)}, repeats=opts.repeats)
        report(f"{name} exported graph (normalise, network, softmax, decode)", times, opts.batch, "eager PyTorch")


if __name__ == "__main__":
    main()
