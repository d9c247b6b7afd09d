import pytest
import torch
from torch import nn
from torchvision.models.detection import ssd300_vgg16 as tv_ssd300_vgg16
from torchvision.models.detection.image_list import ImageList

from repssd.boxes import cxcywh_to_xyxy
from repssd.convert import (WeightsError, detect_format, from_torchvision, infer_num_classes, load_weights,
                            read_weights)
from repssd.detector import Detector
from repssd.models import build_model
from repssd.priors import generate_priors

from ssd_pytorch_reference import SSDPyTorch, vgg


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(1)
    return SSDPyTorch(21).eval()


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(2)) * 50


def test_ssd_pytorch_state_dict_loads_and_gives_the_same_outputs(tmp_path, reference, image):
    path = tmp_path / "ssd300_mAP_77.43_v2.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("ssd300_vgg16", 21).eval()
    assert load_weights(model, path) == "ssd.pytorch"
    with torch.no_grad():
        ours, theirs = model(image), reference(image)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-5, atol=1e-5)


def test_data_parallel_prefix_is_stripped(tmp_path, reference):
    path = tmp_path / "dp.pth"
    torch.save({"module." + k: v for k, v in reference.state_dict().items()}, path)
    assert load_weights(build_model("ssd300_vgg16", 21), path) == "ssd.pytorch"


def test_vgg16_reducedfc_fills_only_the_base(tmp_path):
    torch.manual_seed(3)
    base = nn.ModuleList(vgg())
    path = tmp_path / "vgg16_reducedfc.pth"
    torch.save(base.state_dict(), path)
    model = build_model("ssd300_vgg16", 21)
    head_before = model.head.conf[0].weight.clone()
    assert load_weights(model, path) == "vgg16_reducedfc"
    for i, layer in enumerate(base):
        if isinstance(layer, nn.Conv2d):
            assert torch.equal(model.backbone.features[i].weight, layer.weight)
    assert torch.equal(model.head.conf[0].weight, head_before)


@pytest.fixture(scope="module")
def torchvision_model():
    torch.manual_seed(4)
    model = tv_ssd300_vgg16(weights=None, weights_backbone=None, num_classes=5).eval()
    with torch.no_grad():  # random init saturates softmax at 1.0 (ties); spread the scores out
        for layer in model.head.classification_head.module_list:
            layer.weight.mul_(0.1)
    return model


def test_torchvision_default_boxes_are_the_ssd300_torchvision_priors(torchvision_model):
    images = ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)])
    features = [torch.zeros(1, 1, f, f) for f in (38, 19, 10, 5, 3, 1)]
    anchors = torchvision_model.anchor_generator(images, features)[0]
    ours = cxcywh_to_xyxy(generate_priors("ssd300_torchvision")) * 300
    torch.testing.assert_close(anchors, ours, rtol=0, atol=1e-4)
    # The COCO sizes of ssd.pytorch, but centres past the image edge are not clipped.
    coco = cxcywh_to_xyxy(generate_priors("ssd300_coco")) * 300
    assert (anchors - coco).abs().amax(1).gt(1).sum() == 2 * 10 * 6 - 6


def test_torchvision_weights_give_the_same_outputs_and_detections(tmp_path, torchvision_model, image):
    path = tmp_path / "tv.pth"
    torch.save(torchvision_model.state_dict(), path)
    model = build_model("ssd300_vgg16", 5, spec="ssd300_torchvision").eval()
    assert load_weights(model, path) == "torchvision"
    with torch.no_grad():
        head = torchvision_model.head(list(torchvision_model.backbone(image).values()))
        loc, conf = model(image)
    torch.testing.assert_close(loc, head["bbox_regression"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(conf, head["cls_logits"], rtol=1e-4, atol=1e-3)

    pixels = torch.randint(0, 256, (2, 300, 300, 3), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    with torch.no_grad():
        expected = torchvision_model([p.permute(2, 0, 1).float() / 255 for p in pixels])
    got = Detector(model, conf_thresh=0.01, nms_thresh=0.45, top_k=200, candidates=400).predict(list(pixels.numpy()))
    for exp, det in zip(expected, got):
        n = 20
        assert len(det) >= n
        torch.testing.assert_close(det.scores[:n], exp["scores"][:n], rtol=0, atol=2e-3)
        assert torch.equal(det.labels[:n], exp["labels"][:n])
        torch.testing.assert_close(det.boxes[:n], exp["boxes"][:n], rtol=0, atol=0.1)


def test_from_torchvision_builds_the_matching_model(torchvision_model):
    model = from_torchvision(torchvision_model.state_dict())
    assert model.spec.name == "ssd300_torchvision" and model.num_classes == 5


def test_torchvision_weights_with_voc_priors_warn(tmp_path, torchvision_model):
    path = tmp_path / "tv.pth"
    torch.save(torchvision_model.state_dict(), path)
    with pytest.warns(UserWarning, match="ssd300_torchvision"):
        load_weights(build_model("ssd300_vgg16", 5), path)


def test_repssd_checkpoint_round_trip(tmp_path):
    model = build_model("mb2_ssdlite", 3, width_mult=0.25)
    path = tmp_path / "last.pth"
    torch.save({"model": model.state_dict(), "iteration": 7}, path)
    other = build_model("mb2_ssdlite", 3, width_mult=0.25)
    assert load_weights(other, path) == "repssd"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    state, fmt = read_weights(path)
    assert infer_num_classes(state, other.spec.boxes_per_location) == 3


def test_wrong_number_of_classes_names_the_mismatched_keys(tmp_path, reference):
    path = tmp_path / "voc.pth"
    torch.save(reference.state_dict(), path)
    with pytest.raises(WeightsError, match=r"voc\.pth: ssd\.pytorch weights do not fit this model \(weights for "
                       r"21 classes, model has 5\): shape mismatches \(12\): head\.conf\.0\.weight \(84, 512, 3, 3\)"):
        load_weights(build_model("ssd300_vgg16", 5), path)


def test_weights_of_another_architecture_name_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "mb1.pth"
    torch.save(build_model("mb1_ssd", 21).state_dict(), path)
    with pytest.raises(WeightsError, match="missing keys .*unexpected keys"):
        load_weights(build_model("mb2_ssdlite", 21), path)


@pytest.mark.parametrize("content, message", [
    (None, "no such weights file"),
    (b"\x00garbage not a zip", "not a readable PyTorch weights file"),
    ({"a": 1}, "not a state_dict of tensors"),
    ({"foo.weight": torch.zeros(1)}, "unrecognised weights layout"),
])
def test_bad_files_get_one_clear_error(tmp_path, content, message):
    path = tmp_path / "w.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(WeightsError, match=message) as info:
        load_weights(build_model("mb1_ssdlite", 3, width_mult=0.25), path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_detect_format_names():
    assert detect_format({"vgg.0.weight": 0, "L2Norm.weight": 0}) == "ssd.pytorch"
    assert detect_format({"0.weight": 0, "2.bias": 0}) == "vgg16_reducedfc"
    assert detect_format({"backbone.scale_weight": 0}) == "torchvision"
    assert detect_format({"backbone.features.0.weight": 0, "head.loc.0.weight": 0}) == "repssd"
