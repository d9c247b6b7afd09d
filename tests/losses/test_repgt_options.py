"""RepGT's stable options: the excess variant, the loss warm-up, and the diagnostics."""
import math

import pytest
import torch

import loss_references as ref
from repssd.boxes import box_iog, cxcywh_to_xyxy, xyxy_to_cxcywh
from repssd.coder import decode
from repssd.losses import build_criterion
from repssd.matcher import match

from conftest import OpCounter
from test_losses_reference import PRIORS, predictions, scene
from test_terms import toy


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("sigma, target", [(0.0, "prior"), (0.5, "prior"), (1.0, "prior"), (0.0, "pred")])
def test_excess_equals_reference(seed, sigma, target, strategy):
    boxes, labels, valid = scene(3, 10, 30 + seed, num_classes=3)
    loc, conf = predictions(3, PRIORS, 3, seed)
    criterion = build_criterion("multibox+repgt", repgt_sigma=sigma, repgt_excess=True, repgt_target=target)
    got = criterion(loc, conf, PRIORS, boxes, labels, valid)["repgt"]
    expected = ref.repgt(loc.detach(), PRIORS, boxes, labels, valid, target, sigma=sigma, excess=True)
    plain = ref.repgt(loc.detach(), PRIORS, boxes, labels, valid, target, sigma=sigma)
    assert 0 < expected < plain  # some positives overlap G_Rep less than their own GT does
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_excess_charges_nothing_at_a_perfect_box_and_the_excess_beyond_it(strategy):
    # toy(): each prior sits on its GT, IoG with the other GT = 1/2, so the plain term is ln 2
    loc, conf, priors, gt, labels, valid = toy()
    out = build_criterion("repgt", repgt_excess=True)(loc, conf, priors, gt, labels, valid)
    assert out["repgt"].item() == 0.0
    # shift prior 0's prediction right by 0.1 (0.25 of its width): IoG with GT1 grows to 3/4
    loc = loc.detach().clone()
    loc[0, 0, 0] = 0.1 / 0.4 / 0.1  # cx offset / (w * variance)
    for sigma, expected in ((1.0, -math.log(1 - 0.25)), (0.0, 0.25)):
        out = build_criterion("repgt", repgt_excess=True, repgt_sigma=sigma)(loc, conf, priors, gt, labels, valid)
        torch.testing.assert_close(out["repgt"], torch.tensor(expected / 2, dtype=torch.float64))  # |P+| = 2


def test_excess_gradient_is_bounded_where_the_paper_term_explodes():
    # a positive deep inside its neighbour's box: IoG ~ 0.98 at a perfect prediction
    gt = torch.tensor([[[0.30, 0.0, 0.50, 0.8], [0.29, 0.0, 0.51, 0.8]]], dtype=torch.float64)
    priors = xyxy_to_cxcywh(gt[0])
    loc = torch.zeros(1, 2, 4, dtype=torch.float64, requires_grad=True)
    conf = torch.zeros(1, 2, 2, dtype=torch.float64)
    args = (loc, conf, priors, gt, torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool))
    paper = torch.autograd.grad(build_criterion("repgt", repgt_sigma=1.0)(*args)["repgt"], loc)[0]
    excess = torch.autograd.grad(build_criterion("repgt", repgt_sigma=1.0, repgt_excess=True)(*args)["repgt"], loc)[0]
    assert paper.abs().max() > 10 * max(excess.abs().max().item(), 1e-12)


def test_warmup_ramps_the_repulsion_weights_only():
    boxes, labels, valid = scene(2, 8, 4, num_classes=2)
    loc, conf = predictions(2, PRIORS, 2, 4)
    criterion = build_criterion("multibox+repgt+repbox", {"repgt": 1.0, "repbox": 0.5}, warmup=100)
    for iteration, ramp in ((0, 0.0), (25, 0.25), (100, 1.0), (5000, 1.0)):
        criterion.set_iteration(iteration)
        assert criterion.effective_weights == {"loc": 1.0, "conf": 1.0, "repgt": ramp, "repbox": 0.5 * ramp}
        out = criterion(loc, conf, PRIORS, boxes, labels, valid)
        expected = out["loc"] + out["conf"] + ramp * (out["repgt"] + 0.5 * out["repbox"])
        torch.testing.assert_close(out["loss"], expected)
    assert build_criterion("multibox+repgt").effective_weights["repgt"] == build_criterion("multibox+repgt").weights["repgt"]
    with pytest.raises(ValueError, match="warm-up"):
        build_criterion("multibox+repgt", warmup=-1)


def test_diagnostics_are_the_iog_of_the_positives_with_their_g_rep():
    boxes, labels, valid = scene(2, 10, 12, num_classes=2)
    loc, conf = predictions(2, PRIORS, 2, 3)
    criterion = build_criterion("multibox+repgt", repgt_target="prior")
    assert not [k for k in criterion(loc, conf, PRIORS, boxes, labels, valid) if k.startswith("diag/")]
    out = criterion(loc, conf, PRIORS, boxes, labels, valid, diagnose=True)
    # the reference: loop over positives with a same-class G_Rep of highest IoU with the prior
    m = match(PRIORS, boxes, labels, valid)
    pred, priors_xyxy = decode(loc.detach(), PRIORS), cxcywh_to_xyxy(PRIORS)
    values, own = [], []
    for b, p in torch.nonzero(m.positive).tolist():
        g = int(m.gt_index[b, p])
        others = [k for k in range(10) if valid[b, k] and k != g and labels[b, k] == labels[b, g]]
        ious = [ref.iou(priors_xyxy[p].tolist(), boxes[b, k].tolist()) for k in others]
        if ious and max(ious) > 0:
            rep = boxes[b, others[ious.index(max(ious))]]
            values.append(box_iog(pred[b, p][None], rep[None]).item())
            own.append(box_iog(boxes[b, g][None], rep[None]).item())
    values = torch.tensor(values, dtype=torch.float64)
    assert len(values) > 20
    torch.testing.assert_close(out["diag/repgt_iog_mean"], values.mean())
    torch.testing.assert_close(out["diag/repgt_iog_p99"], values.quantile(0.99))
    torch.testing.assert_close(out["diag/repgt_iog_ge90"], (values >= 0.9).double().mean())
    torch.testing.assert_close(out["diag/repgt_iog_gt_mean"], torch.tensor(own, dtype=torch.float64).mean())
    assert "diag/repgt_iog_mean" not in criterion.weights  # logged, never trained on


def test_new_options_run_on_meta_without_host_syncs():
    def ops(b):
        boxes, labels, valid = scene(b, 6, 1)
        loc, conf = predictions(b, PRIORS, 4, 0)
        args = [t.detach().to("meta").requires_grad_(t.requires_grad) for t in (loc, conf)]
        criterion = build_criterion("multibox+repgt", repgt_excess=True, warmup=10)
        criterion.set_iteration(3)
        with OpCounter() as counter:
            out = criterion(*args, PRIORS.to("meta"), boxes.to("meta"), labels.to("meta"), valid.to("meta"),
                            diagnose=True)
            out["loss"].backward()
        assert out["diag/repgt_iog_p99"].device.type == "meta"
        return counter.ops
    ops_2, ops_16 = ops(2), ops(16)
    assert ops_2 == ops_16
    forbidden = ("item", "_local_scalar_dense", "nonzero", "masked_select", "index.Tensor", "_to_cpu")
    assert not [op for op in ops_16 if any(f in op for f in forbidden)]


def test_defaults_are_the_validated_setting_and_the_paper_is_one_option_set_away():
    default = build_criterion("multibox+repgt")
    term = default.terms[1]
    assert (term.sigma, term.target, term.excess, default.weights["repgt"]) == (0.0, "pred", False, 2.0)
    paper = build_criterion("multibox+repgt", {"repgt": 0.5}, repgt_sigma=1.0, repgt_target="prior").terms[1]
    assert (paper.sigma, paper.target) == (1.0, "prior")
    # the default equals the per-image reference with sigma 0 and G_Rep by prediction
    boxes, labels, valid = scene(2, 10, 40, num_classes=2)
    loc, conf = predictions(2, PRIORS, 2, 6)
    expected = ref.repgt(loc.detach(), PRIORS, boxes, labels, valid, "pred", sigma=0.0)
    torch.testing.assert_close(default(loc, conf, PRIORS, boxes, labels, valid)["repgt"],
                               torch.tensor(expected, dtype=torch.float64))
