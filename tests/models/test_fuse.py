import itertools

import pytest
import torch
from torch import nn

from repssd.models import build_model
from repssd.models.fuse import CropSamePadConv2d, for_inference, fuse_conv_bn
from repssd.models.mobilenet_tf import SamePadConv2d, conv_bn

SMALL = {"ssdlite_mbv2_tf": {"image_size": 96}, "mb2_ssdlite": {"width_mult": 0.25}}  # fast on a CPU


def _counts(model: nn.Module) -> tuple[int, int]:
    return (sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()),
            sum(isinstance(m, nn.Conv2d) for m in model.modules()))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tiny convolutions run several times faster on one thread on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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


def test_for_inference_matches_unfused(pair):
    model = pair[0]
    fast = for_inference(model)
    assert _counts(fast)[0] == 0 and not any(type(m) is SamePadConv2d for m in fast.modules())
    width, height = model.input_size
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        loc, conf = model(x)
        for fed in (x.contiguous(memory_format=torch.channels_last), x):  # channels_last or plain NCHW input
            fast_loc, fast_conf = fast(fed)
            torch.testing.assert_close(fast_loc, loc, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(fast_conf, conf, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel, stride", [(3, 2), (1, 2), (3, 1), (5, 2), (4, 2), (3, 3)])
def test_crop_same_padding_equals_same_padding(kernel, stride):
    torch.manual_seed(0)
    same = SamePadConv2d(4, 4, kernel, stride, groups=2, bias=True)
    crop = CropSamePadConv2d(4, 4, kernel, stride, groups=2, bias=True)
    crop.load_state_dict(same.state_dict())
    with torch.no_grad():
        for height, width in itertools.product(range(1, 12), (1, 2, 7, 10)):  # odd and even sides, below the kernel
            x = torch.randn(1, 4, height, width)
            torch.testing.assert_close(crop(x), same(x), rtol=1e-5, atol=1e-5)


def test_original_model_is_not_modified(pair):
    model, before, fused = pair
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert _counts(model)[0] > 0 and not model.training
    assert all(p.data_ptr() != q.data_ptr() for p in model.parameters() for q in fused.parameters())


def test_same_padding_survives_folding():
    torch.manual_seed(0)
    block = conv_bn(3, 8, 3, 2).eval()  # SamePadConv2d -> BatchNorm2d -> ReLU6
    with torch.no_grad():
        block[1].running_mean.uniform_(-0.5, 0.5)
        block[1].running_var.uniform_(0.5, 2.0)
    fused = fuse_conv_bn(block)
    assert type(fused[0]) is SamePadConv2d and fused[0].bias is not None and isinstance(fused[1], nn.Identity)
    with torch.no_grad():
        for side in (96, 97):  # stride 2: SAME pads (0, 1) on an even side, (1, 1) on an odd one
            x = torch.randn(1, 3, side, side)
            torch.testing.assert_close(fused(x), block(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("part", ["whole model", "one BatchNorm"])
@pytest.mark.parametrize("rewrite", [fuse_conv_bn, for_inference])
def test_training_mode_is_refused(pair, part, rewrite):
    model = pair[0]
    (model if part == "whole model" else next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))).train()
    try:
        with pytest.raises(ValueError, match=r"eval-mode model.*model\.eval\(\)"):
            rewrite(model)
    finally:
        model.eval()
