"""The TFLite import (`python -m repssd.convert tflite`): TFLite SSD exports written here from random
models (BatchNorm folded, fp32 and fp16 weights, with and without a TFLite_Detection_PostProcess
op) import to the same outputs; bad files are one line naming the file; and the real OIDv4
SSD-MobileNetV2, when installed, equals the TFLite interpreter's outputs stored in
tests/fixtures/tflite_oidv4_reference.npz (tests/fixtures/make_tflite_reference.py)."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tflite_writer import Graph, folded, randomised, ssd_tflite, write_tflite

from repssd.convert import load_model
from repssd.convert.__main__ import main as convert_main
from repssd.convert.tflite_model import TFLiteError, convert_tflite, layout_names, read_tflite, scope_of
from repssd.models import build_model
from repssd.postprocess import detect, postprocess_options

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
WEIGHTS = ROOT / "weights" / "oidv4_ssd_mbv2_person.pth"
POSTPROCESS = {"max_detections": 20, "max_classes_per_detection": 1, "nms_score_threshold": 0.001,
               "nms_iou_threshold": 0.5, "num_classes": 2, "y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0,
               "w_scale": 5.0, "use_regular_nms": False}


@pytest.fixture(scope="module", params=["ssd_mbv2_tf", "ssdlite_mbv2_tf", "ssd_mbv1_tf"])
def source(request):
    return randomised(build_model(request.param, 3, image_size=(160, 128)), seed=1)


def outputs(model: torch.nn.Module, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width, height = model.input_size
    images = torch.randint(0, 256, (2, 3, height, width), generator=torch.Generator().manual_seed(seed),
                           dtype=torch.uint8)
    with torch.no_grad():
        return model(model.preprocess(images))


def imported(path: Path, **kwargs) -> tuple[torch.nn.Module, dict]:
    state, config = convert_tflite(path, **kwargs)
    model = build_model(config["model"], len(config["class_names"]) + 1, image_size=tuple(config["image_size"]))
    model.load_state_dict(state)
    return model.eval(), config


def test_scopes_are_read_off_the_output_tensor_names():
    assert scope_of("FeatureExtractor/MobilenetV2/expanded_conv/depthwise/Relu6;FeatureExtractor/MobilenetV2/"
                    "expanded_conv_5/project/Conv2D") == "FeatureExtractor/MobilenetV2/expanded_conv/depthwise"
    assert scope_of("FeatureExtractor/MobilenetV2/expanded_conv/project/BatchNorm/FusedBatchNormV3;x/Conv2D1") \
        == "FeatureExtractor/MobilenetV2/expanded_conv/project"
    assert scope_of("BoxPredictor_3/ClassPredictor/BiasAdd;BoxPredictor_5/ClassPredictor/Conv2D") \
        == "BoxPredictor_3/ClassPredictor"
    assert scope_of("BoxPredictor_0/BoxEncodingPredictor_depthwise/depthwise") \
        == "BoxPredictor_0/BoxEncodingPredictor_depthwise"


def test_a_folded_fp32_export_imports_to_the_same_outputs(source, tmp_path):
    model, config = imported(ssd_tflite(source, tmp_path / "m.tflite"))
    assert config["model"] == source.arch and config["image_size"] == [160, 128]
    assert config["batchnorm"] == "folded" and "fp32" in config["source"]["format"]
    assert config["source"]["convolutions"] == len(layout_names(source.arch))
    for ours, theirs in zip(outputs(model), outputs(source)):
        torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-4)
    # the folded BatchNorm is the identity: the kernels are the folded ones, the shift the folded bias
    kernel, bias = folded(source, "backbone.conv", "conv")
    torch.testing.assert_close(model.backbone.conv[0].weight.double(), torch.from_numpy(kernel), atol=1e-6, rtol=0)
    torch.testing.assert_close(model.backbone.conv[1].bias.double(), torch.from_numpy(bias), atol=1e-6, rtol=0)
    x = torch.randn(1, 32, 4, 4)
    torch.testing.assert_close(model.backbone.conv[1](x), x + model.backbone.conv[1].bias.view(1, -1, 1, 1))


def test_fp16_weights_behind_dequantize_are_read_exactly(source, tmp_path):
    model, config = imported(ssd_tflite(source, tmp_path / "m.tflite", fp16=True))
    assert "fp16" in config["source"]["format"]
    kernel, _ = folded(source, "extras.0.1", "depthwise" if source.arch == "ssdlite_mbv2_tf" else "conv")
    expected = torch.from_numpy(kernel.astype(np.float32).astype(np.float16).astype(np.float32))
    assert torch.equal(model.extras[0][1][0].weight, expected)
    loc, conf = outputs(model)
    ref_loc, ref_conf = outputs(source)
    assert (loc - ref_loc).abs().max() < 0.05 and (conf - ref_conf).abs().max() < 0.05  # fp16 rounding only


def test_the_postprocess_op_gives_the_options_and_its_anchors_are_checked(tmp_path):
    source = randomised(build_model("ssd_mbv2_tf", 2))
    _, config = imported(ssd_tflite(source, tmp_path / "m.tflite", postprocess=POSTPROCESS))
    post = config["postprocess"]
    assert (post["score"], post["nms_thresh"], post["top_k"]) == ("sigmoid", 0.5, 20)
    assert post["conf_thresh"] == pytest.approx(0.001)
    assert "TFLite_Detection_PostProcess" in config["source"]["postprocess"]
    softmax = ssd_tflite(source, tmp_path / "s.tflite", postprocess=POSTPROCESS, scores_op="SOFTMAX")
    _, config = imported(softmax)
    assert config["postprocess"]["score"] == "softmax"
    with pytest.raises(TFLiteError, match="scores with softmax; keeping some classes is exact for sigmoid"):
        convert_tflite(softmax, labels="person", classes=["person"])
    anchors = source.priors.double().numpy()[:, [1, 0, 3, 2]].copy()
    anchors[100, 2] += 0.01  # one anchor's height
    with pytest.raises(TFLiteError, match="not repssd's multiple-grid anchors .* largest difference 0.01"):
        convert_tflite(ssd_tflite(source, tmp_path / "a.tflite", postprocess=POSTPROCESS, anchors=anchors))
    with pytest.raises(TFLiteError, match=r"box coder scales .* \[10.0, 10.0, 2.0, 2.0\]"):
        convert_tflite(ssd_tflite(source, tmp_path / "c.tflite",
                                  postprocess={**POSTPROCESS, "h_scale": 2.0, "w_scale": 2.0}))


def test_without_the_postprocess_op_the_api_defaults_are_recorded(tmp_path):
    _, config = imported(ssd_tflite(randomised(build_model("ssd_mbv2_tf", 2)), tmp_path / "m.tflite"))
    assert config["postprocess"]["nms_thresh"] == 0.6 and config["postprocess"]["top_k"] == 100
    assert "defaults" in config["source"]["postprocess"]


def test_keeping_some_classes_keeps_their_scores(tmp_path):
    source = randomised(build_model("ssd_mbv2_tf", 4))  # background + a, b, c
    path = ssd_tflite(source, tmp_path / "m.tflite")
    model, config = imported(path, labels="a,b,c", classes=["C", "a"])
    assert config["class_names"] == ["c", "a"] and model.num_classes == 3
    loc, conf = outputs(model)
    ref_loc, ref_conf = outputs(source)
    torch.testing.assert_close(loc, ref_loc, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(conf, ref_conf[..., [0, 3, 1]], atol=2e-4, rtol=1e-4)
    with pytest.raises(TFLiteError, match="no class 'd' among a, b, c"):
        convert_tflite(path, labels="a,b,c", classes=["d"])


def test_the_cli_writes_a_checkpoint_that_load_model_reads(tmp_path, capsys):
    source = randomised(build_model("ssdlite_mbv2_tf", 2), seed=2)
    path = ssd_tflite(source, tmp_path / "m.tflite")
    assert convert_main(["tflite", str(path), "--out", str(tmp_path / "w.pth"), "--labels", "person"]) == 0
    assert "ssdlite_mbv2_tf, 1 classes: person" in capsys.readouterr().out
    model, config = load_model(tmp_path / "w.pth")
    assert config["class_names"] == ["person"]
    for ours, theirs in zip(outputs(model), outputs(source)):
        torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-4)


def _written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _classifier(path: Path) -> Path:
    g = Graph()
    image = g.tensor("input", (1, 8, 8, 3))
    feature = g.tensor("MobilenetV2/Conv/Relu6", (1, 4, 4, 8))
    g.op("CONV_2D", [image, g.constant("MobilenetV2/Conv/weights", np.zeros((8, 3, 3, 3), np.float32), False),
                     g.constant("MobilenetV2/Conv/bias", np.zeros(8, np.float32), False)], [feature])
    logits = g.tensor("MobilenetV2/Logits/BiasAdd", (1, 10))
    g.op("FULLY_CONNECTED", [feature, g.constant("fc", np.zeros((10, 128), np.float32), False)], [logits])
    return write_tflite(path, g.tensors, g.ops, [image], [logits])


def _uint8(path: Path) -> Path:
    g = Graph()
    image = g.tensor("normalized_input_image_tensor", (1, 8, 8, 3), np.uint8, quantised=True)
    out = g.tensor("FeatureExtractor/MobilenetV2/Conv/Relu6", (1, 4, 4, 8), np.uint8, quantised=True)
    kernel = g.tensor("FeatureExtractor/MobilenetV2/Conv/weights", (8, 3, 3, 3), np.uint8,
                      np.zeros((8, 3, 3, 3)), quantised=True)
    g.op("CONV_2D", [image, kernel, g.tensor("bias", (8,), np.int32, np.zeros(8))], [out])
    return write_tflite(path, g.tensors, g.ops, [image], [out])


def _inception(path: Path) -> Path:
    source = randomised(build_model("ssd_mbv2_tf", 2))
    rename = {scope: scope.replace("MobilenetV2", "InceptionV2") for scope, _, _ in layout_names("ssd_mbv2_tf")}
    return ssd_tflite(source, path, rename=rename)


def _ssdlite_v1(path: Path) -> Path:
    source = randomised(build_model("ssdlite_mbv2_tf", 2))
    rename = {scope: scope.replace("MobilenetV2", "MobilenetV1") for scope, _, _ in layout_names("ssdlite_mbv2_tf")}
    return ssd_tflite(source, path, rename=rename)


def _truncated(path: Path) -> Path:
    full = ssd_tflite(randomised(build_model("ssd_mbv2_tf", 2)), path)
    full.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return full


@pytest.mark.parametrize("make, message", [
    (lambda p: _written(p, b"\x00" * 64), "not a TFLite model"),
    (lambda p: _written(p, b"<html>a download error page</html>"), "not a TFLite model"),
    (_truncated, "truncated or corrupt TFLite file"),
    (_classifier, "not a TF Object Detection API SSD"),
    (_uint8, "integer-quantised model"),
    (_inception, "SSD on feature extractor InceptionV2; repssd imports SSDLite on MobilenetV2, SSD on"),
    (_ssdlite_v1, "SSDLite on feature extractor MobilenetV1"),
])
def test_bad_files_are_one_line_naming_the_file(tmp_path, capsys, make, message):
    path = make(tmp_path / "bad.tflite")
    with pytest.raises(TFLiteError, match=message):
        convert_tflite(path)
    assert convert_main(["tflite", str(path), "--out", str(tmp_path / "w.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"repssd.convert: {path}: ") and message in err
    assert not (tmp_path / "w.pth").exists()


def test_a_missing_conv_is_named(tmp_path):
    source = randomised(build_model("ssd_mbv2_tf", 2))
    path = ssd_tflite(source, tmp_path / "m.tflite", rename={"BoxPredictor_2/ClassPredictor": "Other/Conv"})
    with pytest.raises(TFLiteError, match=r"missing convolutions \(1\): BoxPredictor_2/ClassPredictor; "
                                          r"convolutions left over \(1\): Other/Conv"):
        convert_tflite(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(TFLiteError, match="no such TFLite file"):
        read_tflite(tmp_path / "absent.tflite")


needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason="weights/oidv4_ssd_mbv2_person.pth is absent "
                                   "(`make weights` fetches @mediapipe/objectron and converts it)")


@needs_weights
def test_the_oidv4_import_equals_the_tflite_interpreter():
    """Raw box encodings and the background and person logits of ai-edge-litert's interpreter on the
    original fp16 TFLite file (a seeded noise image and scikit-image's astronaut, a NASA photo in the
    public domain), against the imported model: equal to 1e-4; so are the detections after
    post-processing, and repssd's priors equal MediaPipe's SsdAnchorsCalculator anchors."""
    reference = np.load(FIXTURES / "tflite_oidv4_reference.npz")
    model, config = load_model(WEIGHTS)
    priors = model.priors.numpy()
    np.testing.assert_allclose(priors[:, [1, 0, 3, 2]], reference["anchors"], atol=1e-6)
    astronaut = cv2.cvtColor(cv2.imread(str(FIXTURES / "astronaut_300.png")), cv2.COLOR_BGR2RGB)
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    options = postprocess_options(config)
    for name, image in (("noise", noise), ("astronaut", astronaut)):
        with torch.no_grad():
            loc, conf = model(model.preprocess(torch.from_numpy(image).permute(2, 0, 1)[None]))
        boxes = reference[f"{name}/box_encodings"][:, [1, 0, 3, 2]]
        logits = reference[f"{name}/class_logits"]  # background, person
        assert np.abs(loc[0].numpy() - boxes).max() < 1e-4
        assert np.abs(conf[0].numpy() - logits).max() < 1e-4
        ours = detect(loc, conf, model.priors, **options)[0]
        theirs = detect(torch.from_numpy(boxes)[None], torch.from_numpy(logits)[None], model.priors, **options)[0]
        assert len(ours.boxes) == len(theirs.boxes) > 0
        torch.testing.assert_close(ours.boxes, theirs.boxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(ours.scores, theirs.scores, atol=1e-5, rtol=0)
        assert torch.equal(ours.labels, theirs.labels)
    top = float(torch.sigmoid(torch.from_numpy(reference["astronaut/class_logits"][:, 1])).max())
    assert top > 0.5  # the astronaut is found as a person
