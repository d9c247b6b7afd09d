import pytest
import torch
from torch import nn

from repssd.models import build_model
from repssd.models.fuse import fuse_conv_bn
from repssd.models.mobilenet_tf import SamePadConv2d

SMALL = {"ssdlite_mbv2_tf": {"image_size": 96}, "mb2_ssdlite": {"width_mult": 0.25}}  # fast on a CPU


def _counts(model: nn.Module) -> tuple[int, int]:
    return (sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()),
            sum(isinstance(m, nn.Conv2d) for m in model.modules()))


@pytest.fixture(scope="module", params=list(SMALL))
def pair(request):
    """(model, its state before fusing, fuse_conv_bn(model)): a small eval-mode model whose
    BatchNorms have non-trivial statistics and affine terms."""
    torch.manual_seed(0)
    model = build_model(request.param, 3, **SMALL[request.param])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    return model, before, fuse_conv_bn(model)


def test_fused_model_matches_unfused(pair):
    model, _, fused = pair
    bns, convs = _counts(model)
    assert bns > 0 and _counts(fused) == (0, convs)  # every BN folded, no conv lost
    assert not fused.training
    width, height = model.input_size
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loc, conf = model(x)
        fused_loc, fused_conf = fused(x)
    torch.testing.assert_close(fused_loc, loc, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused_conf, conf, rtol=1e-4, atol=1e-4)


def test_fused_model_runs_channels_last(pair):
    model, _, fused = pair
    width, height = model.input_size
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(2))
    cl = fuse_conv_bn(model).to(memory_format=torch.channels_last)
    with torch.no_grad():
        loc, conf = model(x)
        cl_loc, cl_conf = cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl_loc, loc, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cl_conf, conf, rtol=1e-4, atol=1e-4)


def test_original_model_is_not_modified(pair):
    model, before, fused = pair
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert _counts(model)[0] > 0 and not model.training
    assert all(p.data_ptr() != q.data_ptr() for p in model.parameters() for q in fused.parameters())


def test_same_padding_survives_folding(pair):
    model, _, fused = pair
    if not isinstance(getattr(model.backbone, "conv", None), nn.Sequential):
        pytest.skip("no SamePadConv2d in this model")
    first = fused.backbone.conv[0]
    assert type(first) is SamePadConv2d and first.bias is not None and isinstance(fused.backbone.conv[1], nn.Identity)
    x = torch.randn(1, 3, 96, 96)  # stride 2, 96 -> 48: SAME pads 0 before and 1 after
    with torch.no_grad():
        torch.testing.assert_close(fused.backbone.conv(x), model.backbone.conv(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("part", ["whole model", "one BatchNorm"])
def test_training_mode_is_refused(pair, part):
    model = pair[0]
    (model if part == "whole model" else next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))).train()
    try:
        with pytest.raises(ValueError, match=r"eval-mode model.*model\.eval\(\)"):
            fuse_conv_bn(model)
    finally:
        model.eval()
