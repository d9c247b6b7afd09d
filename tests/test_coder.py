import pytest
import torch

from conftest import DEVICES
from repssd.boxes import cxcywh_to_xyxy
from repssd.coder import decode, encode
from repssd.priors import generate_priors


def ssd_pytorch_encode(matched, priors, variances):
    """ssd.pytorch layers/box_utils.py encode, verbatim arithmetic."""
    g_cxcy = (matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]
    g_cxcy /= (variances[0] * priors[:, 2:])
    g_wh = (matched[:, 2:] - matched[:, :2]) / priors[:, 2:]
    g_wh = torch.log(g_wh) / variances[1]
    return torch.cat([g_cxcy, g_wh], 1)


def ssd_pytorch_decode(loc, priors, variances):
    """ssd.pytorch layers/box_utils.py decode, verbatim arithmetic."""
    boxes = torch.cat((priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:],
                       priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])), 1)
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    return boxes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_decode_inverts_encode(dtype, random_boxes):
    priors = generate_priors("ssd300_voc", dtype=dtype)
    gt = random_boxes(priors.shape[0], seed=11, dtype=dtype)
    tol = {"rtol": 0, "atol": 2e-6 if dtype == torch.float32 else 1e-12}
    torch.testing.assert_close(decode(encode(gt, priors), priors), gt, **tol)


def test_encode_decode_equal_ssd_pytorch_bit_for_bit(random_boxes):
    priors = generate_priors("ssd300_voc")
    gt = random_boxes(priors.shape[0], seed=12)
    loc = torch.randn(priors.shape[0], 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(encode(gt, priors), ssd_pytorch_encode(gt, priors, (0.1, 0.2)))
    assert torch.equal(decode(loc, priors), ssd_pytorch_decode(loc, priors, (0.1, 0.2)))


def test_prior_encodes_to_zero_and_zero_decodes_to_prior():
    priors = generate_priors("mobilenet_ssd300")
    # Clipped priors are not symmetric boxes any more, so use unclipped-looking interior ones.
    inner = priors[(priors[:, :2] - priors[:, 2:] / 2 > 0).all(1) & (priors[:, :2] + priors[:, 2:] / 2 < 1).all(1)]
    torch.testing.assert_close(encode(cxcywh_to_xyxy(inner), inner), torch.zeros_like(inner), atol=1e-5, rtol=0)
    torch.testing.assert_close(decode(torch.zeros_like(inner), inner), cxcywh_to_xyxy(inner))


def test_hand_computed_offsets():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    box = torch.tensor([[0.42, 0.34, 0.82, 0.74]])  # centre (0.62, 0.54), size (0.4, 0.4)
    expected = torch.tensor([[0.12 / (0.1 * 0.2), 0.04 / (0.1 * 0.4),
                              torch.log(torch.tensor(2.0)) / 0.2, 0.0]])
    torch.testing.assert_close(encode(box, prior), expected)


def test_leading_batch_dimension(random_boxes):
    priors = generate_priors("mobilenet_ssd300")
    gt = random_boxes(2 * 3000, seed=13).view(2, 3000, 4)
    assert torch.equal(encode(gt, priors)[1], encode(gt[1], priors))
    loc = torch.randn(2, 3000, 4)
    assert torch.equal(decode(loc, priors)[0], decode(loc[0], priors))


@pytest.mark.parametrize("device", DEVICES)
def test_round_trip_on_device(device, random_boxes):
    priors = generate_priors("ssd300_voc", device=device)
    gt = random_boxes(priors.shape[0], seed=14).to(device)
    torch.testing.assert_close(decode(encode(gt, priors), priors), gt, rtol=0, atol=2e-6)
