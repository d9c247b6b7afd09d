import pytest
import torch
from torch import nn

from repssd.models import MODELS, SSDHead, build_model
from repssd.models.ssd import Normalize
from repssd.priors import get_spec

from conftest import DEVICES


@pytest.fixture(scope="module")
def ssd300():
    torch.manual_seed(0)
    return build_model("ssd300_vgg16", 21).eval()


def test_ssd300_parameter_count_matches_ssd_pytorch(ssd300):
    assert sum(p.numel() for p in ssd300.parameters()) == 26_285_486


def test_ssd300_architecture_details(ssd300):
    features = ssd300.backbone.features
    assert isinstance(features[16], nn.MaxPool2d) and features[16].ceil_mode  # pool3
    pool5, conv6, conv7 = features[30], features[31], features[33]
    assert (pool5.kernel_size, pool5.stride, pool5.padding) == (3, 1, 1)
    assert conv6.dilation == (6, 6) and conv6.padding == (6, 6) and conv6.out_channels == 1024
    assert conv7.kernel_size == (1, 1)
    assert torch.equal(ssd300.backbone.l2norm.weight, torch.full((512,), 20.0))
    assert [layer.out_channels // 4 for layer in ssd300.head.loc] == [4, 6, 6, 6, 4, 4]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_lines_up_with_its_priors(name):
    model = build_model(name, 3).eval()
    width, height = model.input_size
    with torch.no_grad():
        sources = model.sources(torch.zeros(1, 3, height, width))
        loc, conf = model.head(sources)
    maps = [m if isinstance(m, tuple) else (m, m) for m in model.spec.feature_maps]
    assert [tuple(s.shape[-2:]) for s in sources] == maps
    assert loc.shape == (1, model.spec.num_priors, 4) and conf.shape == (1, model.spec.num_priors, 3)
    assert model.priors.shape == (model.spec.num_priors, 4)


def test_ssd512_has_seven_sources_down_to_1x1():
    model = build_model("ssd512_vgg16", 21)
    assert model.spec.name == "ssd512_voc"
    assert [layer.out_channels // 4 for layer in model.head.loc] == [4, 6, 6, 6, 6, 4, 4]
    assert model.extras[-1][2].kernel_size == (4, 4)


def test_head_output_order_is_source_y_x_anchor():
    # Each source's conv output encodes its own coordinates: value = 1000 s + 100 y + 10 x + a.
    num_classes, anchors, sizes = 2, [2, 3], [3, 2]
    head = SSDHead([nn.Identity(), nn.Identity()], [nn.Identity(), nn.Identity()], num_classes)
    maps = []
    for s, (a, f) in enumerate(zip(anchors, sizes)):
        y, x, k = torch.meshgrid(torch.arange(f), torch.arange(f), torch.arange(a), indexing="ij")
        code = (1000 * s + 100 * y + 10 * x + k).float()  # [f, f, a]
        maps.append(code.unsqueeze(-1).expand(f, f, a, 4).reshape(f, f, a * 4).permute(2, 0, 1)[None])
    loc, _ = head._flatten(maps, 4), None
    expected = [1000 * s + 100 * y + 10 * x + k for s, (a, f) in enumerate(zip(anchors, sizes))
                for y in range(f) for x in range(f) for k in range(a)]
    assert loc[0, :, 0].tolist() == expected


def test_preprocess_is_owned_by_the_model():
    vgg = build_model("ssd300_vgg16", 2)
    mean_image = torch.tensor([123, 117, 104], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert torch.equal(vgg.preprocess(mean_image), torch.zeros(2, 3, 4, 4))
    mobile = build_model("mb2_ssdlite", 2)
    image = torch.tensor([127, 255, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    torch.testing.assert_close(mobile.preprocess(image).flatten(), torch.tensor([0.0, 1.0, -127 / 128]))
    assert isinstance(mobile.normalize, Normalize)


def test_width_multiplier_shrinks_mobilenets():
    for name in ("mb1_ssd", "mb2_ssdlite"):
        full = sum(p.numel() for p in build_model(name, 21).parameters())
        half = build_model(name, 21, width_mult=0.5).eval()
        assert sum(p.numel() for p in half.parameters()) < 0.7 * full
        with torch.no_grad():
            loc, conf = half(torch.zeros(1, 3, 300, 300))
        assert loc.shape == (1, 3000, 4)


def test_mb2_first_source_is_the_block_14_expansion():
    model = build_model("mb2_ssdlite", 21)
    assert model.backbone.out_channels == (576, 1280)
    with torch.no_grad():
        first, second = model.backbone(torch.zeros(1, 3, 300, 300))
    assert first.shape == (1, 576, 19, 19) and second.shape == (1, 1280, 10, 10)


def test_other_prior_spec_and_errors():
    model = build_model("ssd300_vgg16", 91, spec="ssd300_coco")
    assert model.spec is get_spec("ssd300_coco") and model.num_classes == 91
    with pytest.raises(ValueError, match="ssd300_vgg16"):
        build_model("ssd301", 21)
    with pytest.raises(ValueError, match="background"):
        build_model("mb1_ssd", 1)
    with pytest.raises(ValueError, match="300 px"):
        build_model("ssd300_vgg16", 21, spec="ssd512_voc")
    with pytest.raises(ValueError, match="300 px"):
        build_model("mb1_ssd", 21, spec="ssd512_coco")


@pytest.mark.parametrize("device", DEVICES)
def test_forward_backward_is_finite(device):
    model = build_model("mb1_ssdlite", 4, width_mult=0.25).to(device).train()
    loc, conf = model(torch.randn(2, 3, 300, 300, device=device))
    (loc.square().mean() + conf.logsumexp(-1).mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.priors.device.type == torch.device(device).type
