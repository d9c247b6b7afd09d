"""Hand-computed toy cases, smooth_ln, gradients at the edge cases, empty and single-GT images."""
import math

import pytest
import torch

from repssd.boxes import xyxy_to_cxcywh
from repssd.losses import build_criterion, smooth_ln

# Two priors that sit exactly on two GT boxes (loc = 0 predicts the priors themselves) and a
# third, far away, that stays background.
#   GT0 = [0, 0, .4, .4], GT1 = [.2, 0, .6, .4]: intersection .2 x .4 = .08, areas .16 each,
#   IoU = .08 / .24 = 1/3 (< 0.5, so each prior matches only its own GT), IoG = .08 / .16 = 1/2.
GT = torch.tensor([[[0.0, 0.0, 0.4, 0.4], [0.2, 0.0, 0.6, 0.4]]], dtype=torch.float64)
PRIORS = xyxy_to_cxcywh(torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.2, 0.0, 0.6, 0.4], [0.8, 0.8, 0.9, 0.9]],
                                     dtype=torch.float64))
VALID = torch.ones(1, 2, dtype=torch.bool)


def toy(labels=(1, 1), logits=None):
    loc = torch.zeros(1, 3, 4, dtype=torch.float64, requires_grad=True)
    if logits is None:
        logits = [[0.0, 1.0], [1.0, 0.0], [2.0, 0.0]]
    conf = torch.tensor([logits], dtype=torch.float64, requires_grad=True)
    return loc, conf, PRIORS, GT, torch.tensor([labels]), VALID


def test_toy_repgt_is_ln2(strategy):
    out = build_criterion("multibox+repgt", repgt_sigma=1.0)(*toy())  # the paper's Smooth_ln
    # each positive: IoG with the other GT = 1/2 -> -ln(1 - 1/2) = ln 2; two positives / |P+| = 2
    torch.testing.assert_close(out["repgt"], torch.tensor(math.log(2), dtype=torch.float64))


def test_toy_repgt_same_class_restriction(strategy):
    loc, conf, priors, gt, labels, valid = toy(labels=(1, 2), logits=[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert build_criterion("repgt")(loc, conf, priors, gt, labels, valid)["repgt"].item() == 0.0
    other = build_criterion("repgt", repgt_same_class=False, repgt_sigma=1.0)(loc, conf, priors, gt, labels, valid)["repgt"]
    torch.testing.assert_close(other, torch.tensor(math.log(2), dtype=torch.float64))


def test_toy_repbox_is_the_iou(strategy):
    out = build_criterion("repbox")(*toy())
    torch.testing.assert_close(out["repbox"], torch.tensor(1 / 3, dtype=torch.float64))  # one pair, IoU 1/3


def test_toy_multibox_by_hand(strategy):
    out = build_criterion("multibox")(*toy())
    # loc = 0 and the priors are the GT, so targets are 0. Conf: both positives (label 1) and
    # the one negative (P - 1 = 2 allows it) count: CE of logits (0, 1), (1, 0) against 1 and of
    # (2, 0) against 0 = log(1 + e^-1) + log(1 + e) + log(1 + e^-2), over N = 2.
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.e) + math.log(1 + math.exp(-2))) / 2
    assert out["loc"].item() == 0.0
    torch.testing.assert_close(out["conf"], torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(out["loss"], out["conf"])


def test_hard_negatives_three_per_positive_hardest_first(strategy):
    priors = xyxy_to_cxcywh(torch.tensor([[0.0, 0.0, 0.4, 0.4]] + [[0.5 + 0.05 * i, 0.5, 0.52 + 0.05 * i, 0.52]
                                                                     for i in range(6)], dtype=torch.float64))
    gt = torch.tensor([[[0.0, 0.0, 0.4, 0.4]]], dtype=torch.float64)
    # negatives' background logit falls, so their CE rises with the index: 1..6
    logits = [[0.0, 5.0]] + [[-float(i), 0.0] for i in range(1, 7)]
    conf = torch.tensor([logits], dtype=torch.float64)
    out = build_criterion("multibox")(torch.zeros(1, 7, 4, dtype=torch.float64), conf, priors, gt,
                                      torch.tensor([[1]]), torch.ones(1, 1, dtype=torch.bool))
    ce = lambda bg, fg: math.log(math.exp(bg) + math.exp(fg)) - bg  # noqa: E731
    expected = math.log(1 + math.exp(-5)) + sum(ce(-float(i), 0.0) for i in (6, 5, 4))  # 3 hardest
    torch.testing.assert_close(out["conf"], torch.tensor(expected, dtype=torch.float64))


def test_smooth_ln_both_branches_and_the_junction():
    x = torch.tensor([0.0, 0.2, 0.5, 0.8, 0.95], dtype=torch.float64)
    sigma = 0.5
    expected = [-math.log(1 - v) if v <= sigma else (v - sigma) / (1 - sigma) - math.log(1 - sigma) for v in x.tolist()]
    torch.testing.assert_close(smooth_ln(x, sigma), torch.tensor(expected, dtype=torch.float64))
    # value and slope are continuous at x = sigma: both sides have slope 1 / (1 - sigma) = 2
    for side in (sigma - 1e-7, sigma, sigma + 1e-7):
        point = torch.tensor(side, dtype=torch.float64, requires_grad=True)
        smooth_ln(point, sigma).backward()
        torch.testing.assert_close(point.grad, torch.tensor(2.0, dtype=torch.float64), rtol=1e-5, atol=0)
    assert torch.equal(smooth_ln(x, 0.0), x)  # sigma = 0: the overlap itself


def test_smooth_ln_sigma_one_is_finite_at_one():
    x = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    y = smooth_ln(x, 1.0)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(y[1], torch.tensor(math.log(2), dtype=torch.float64))
    with pytest.raises(ValueError, match="sigma"):
        smooth_ln(x, 1.5)


@pytest.mark.parametrize("case", ["iog_one", "iou_zero", "touching"])
def test_gradients_stay_finite_at_the_edges(case, strategy):
    loc, conf, priors, gt, labels, valid = toy()
    loc = torch.zeros_like(loc)
    if case == "iog_one":  # prediction 0 grows to cover GT1 entirely: IoG = 1, sigma 1 -> clamped
        loc[0, 0, 0], loc[0, 0, 2] = 1.25, 2.5 * math.log(1.6 / 0.4) / 2  # centre .3, width .8 -> [-.1, .7]
    elif case == "iou_zero":  # prediction 0 moves far left: no overlap with anything
        loc[0, 0, 0] = -5.0
    else:  # prediction 0 shrinks to [0, .2]: touches GT1 at x = .2
        loc[0, 0, 0], loc[0, 0, 2] = -2.5, math.log(0.5) / 0.2
    loc.requires_grad_()
    out = build_criterion("multibox+repgt+repbox", repgt_sigma=1.0)(loc, conf, priors, gt, labels, valid)
    out["loss"].backward()
    assert all(torch.isfinite(v) for v in out.values())
    assert torch.isfinite(loc.grad).all() and torch.isfinite(conf.grad).all()


def test_empty_images_give_zero_not_nan(strategy):
    loc = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    conf = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    out = build_criterion("multibox+repgt+repbox")(loc, conf, PRIORS, torch.zeros(2, 0, 4, dtype=torch.float64),
                                                   torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.bool))
    assert {k: v.item() for k, v in out.items()} == {"loc": 0.0, "conf": 0.0, "repgt": 0.0, "repbox": 0.0, "loss": 0.0}
    out["loss"].backward()
    assert torch.isfinite(loc.grad).all()


def test_single_gt_images_have_no_repulsion(strategy):
    loc, conf, priors, gt, labels, valid = toy()
    out = build_criterion("repgt+repbox")(loc, conf, priors, gt, labels, torch.tensor([[True, False]]))
    assert out["repgt"].item() == 0.0 and out["repbox"].item() == 0.0
