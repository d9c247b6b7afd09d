"""Every term against the plain per-image references, on random scenes including crowds."""
import pytest
import torch

import loss_references as ref
from repssd.losses import build_criterion
from repssd.priors import generate_priors

from conftest import make_random_boxes


def scene(batch, num_gt, seed, num_classes=4, crowd=0.5):
    """Padded float64 GT with crowds (shifted copies of neighbours), some images nearly empty."""
    g = torch.Generator().manual_seed(seed)
    boxes = make_random_boxes(batch * num_gt, g, torch.float64, min_size=0.08).view(batch, num_gt, 4)
    shift = 0.04 * torch.rand(batch, num_gt, 1, generator=g, dtype=torch.float64)
    crowded = torch.rand(batch, num_gt, 1, generator=g) < crowd
    boxes = torch.where(crowded, (boxes.roll(1, dims=1) + shift).clamp(max=1.0), boxes)
    labels = torch.randint(1, num_classes, (batch, num_gt), generator=g)
    valid = torch.rand(batch, num_gt, generator=g) < 0.85
    valid[0, 1:] = False  # a single-GT image
    return boxes, labels, valid


def predictions(batch, priors, num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    loc = (0.5 * torch.randn(batch, priors.shape[0], 4, generator=g, dtype=torch.float64)).requires_grad_()
    conf = torch.randn(batch, priors.shape[0], num_classes, generator=g, dtype=torch.float64).requires_grad_()
    return loc, conf


PRIORS = generate_priors("mobilenet_ssd300", dtype=torch.float64)


@pytest.mark.parametrize("seed", range(4))
def test_multibox_equals_reference(seed, strategy):
    boxes, labels, valid = scene(3, 8, seed)
    loc, conf = predictions(3, PRIORS, 4, seed)
    out = build_criterion("multibox")(loc, conf, PRIORS, boxes, labels, valid)
    loc_ref, conf_ref = ref.multibox(loc, conf, PRIORS, boxes, labels, valid)
    torch.testing.assert_close(out["loc"], loc_ref)
    torch.testing.assert_close(out["conf"], conf_ref)
    # Gradients agree too.
    grads = torch.autograd.grad(out["loc"] + out["conf"], (loc, conf))
    grads_ref = torch.autograd.grad(loc_ref + conf_ref, (loc, conf))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target, same_class", [("prior", True), ("prior", False), ("pred", True)])
def test_repgt_equals_reference(seed, target, same_class, strategy):
    boxes, labels, valid = scene(3, 10, 10 + seed, num_classes=3)
    loc, conf = predictions(3, PRIORS, 3, seed)
    criterion = build_criterion("multibox+repgt", repgt_target=target, repgt_same_class=same_class, repgt_sigma=1.0)
    got = criterion(loc, conf, PRIORS, boxes, labels, valid)["repgt"]
    expected = ref.repgt(loc.detach(), PRIORS, boxes, labels, valid, target, same_class, sigma=1.0)
    assert expected > 0
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("sigma", [0.0, 0.5, 1.0])
def test_repgt_sigma_equals_reference(sigma, strategy):
    boxes, labels, valid = scene(2, 10, 3, num_classes=2)
    loc, conf = predictions(2, PRIORS, 2, 5)
    got = build_criterion("repgt", repgt_sigma=sigma, repgt_target="prior")(loc, conf, PRIORS, boxes, labels, valid)["repgt"]
    expected = ref.repgt(loc.detach(), PRIORS, boxes, labels, valid, sigma=sigma)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_repbox_equals_reference(seed, sigma, strategy):
    boxes, labels, valid = scene(3, 10, 20 + seed)
    loc, conf = predictions(3, PRIORS, 4, seed)
    got = build_criterion("multibox+repbox", repbox_sigma=sigma)(loc, conf, PRIORS, boxes, labels, valid)["repbox"]
    expected = ref.repbox(loc.detach(), PRIORS, boxes, labels, valid, sigma)
    assert expected > 0
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_positive_cap_is_exact_below_it_and_drops_the_worst_matched_above(strategy):
    boxes, labels, valid = scene(2, 10, 7)
    loc, conf = predictions(2, PRIORS, 4, 1)
    full = build_criterion("repbox")(loc, conf, PRIORS, boxes, labels, valid)["repbox"]
    most = int(torch.stack([ref.match_image(b, PRIORS, boxes, labels, valid)[0].gt(0).sum() for b in range(2)]).max())
    exact = build_criterion("repbox", repbox_max_positives=most)(loc, conf, PRIORS, boxes, labels, valid)["repbox"]
    capped = build_criterion("repbox", repbox_max_positives=most - 5)(loc, conf, PRIORS, boxes, labels, valid)["repbox"]
    torch.testing.assert_close(exact, full)
    assert not torch.isclose(capped, full)
