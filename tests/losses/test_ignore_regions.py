"""Ignore regions (CrowdHuman masks, COCO iscrowd): priors they cover are neither positive nor
negative, they are never G_Rep or RepBox targets, and leaving them out changes nothing."""
import pytest
import torch

import loss_references as ref
from repssd.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh
from repssd.losses import build_criterion
from repssd.matcher import ignored_priors, match

from conftest import OpCounter
from test_losses_reference import PRIORS, predictions, scene

# One object on prior 0; prior 1 lies wholly inside the region [.5, .5, .9, .9]; prior 2 has 53%
# of its area inside it (x .82-.97 against the region's .9, y wholly inside); prior 3 is far away.
OBJECT = [0.0, 0.0, 0.4, 0.4]
REGION = [0.5, 0.5, 0.9, 0.9]
TOY_PRIORS = xyxy_to_cxcywh(torch.tensor([OBJECT, [0.6, 0.6, 0.7, 0.7], [0.82, 0.6, 0.97, 0.7],
                                          [0.0, 0.9, 0.1, 1.0]], dtype=torch.float64))


def toy_step(with_region: bool, hardest: int = 1, iof: float = 0.5, spec: str = "multibox"):
    """conf gradient of a one-image step where prior ``hardest`` has by far the highest
    cross-entropy against background. Only one negative is mined (1 positive, ratio 1)."""
    boxes = torch.tensor([[OBJECT, REGION]], dtype=torch.float64)
    labels = torch.tensor([[1, 1]])
    valid = torch.tensor([[True, False]])  # the region is never an object
    ignore = torch.tensor([[False, True]]) if with_region else None
    loc = torch.zeros(1, 4, 4, dtype=torch.float64, requires_grad=True)
    logits = torch.zeros(1, 4, 2, dtype=torch.float64)
    logits[0, :, 0] = 3.0  # every negative is confidently background ...
    logits[0, hardest] = torch.tensor([-4.0, 4.0], dtype=torch.float64)  # ... but this one
    conf = logits.requires_grad_()
    criterion = build_criterion(spec, neg_pos_ratio=1.0, ignore_iof=iof)
    out = criterion(loc, conf, TOY_PRIORS, boxes, labels, valid, ignore)
    return out, torch.autograd.grad(out["conf"], conf)[0][0]


def test_a_prior_in_an_ignore_region_gets_no_confidence_gradient_and_is_mined_without_it(strategy):
    _, grad = toy_step(with_region=True)
    assert torch.count_nonzero(grad[1]) == 0  # the hardest negative, inside the region: out
    assert torch.count_nonzero(grad[0]) > 0  # the positive still trains
    assert torch.count_nonzero(grad[2]) > 0 or torch.count_nonzero(grad[3]) > 0  # the next negative is mined instead
    _, grad = toy_step(with_region=False)
    assert torch.count_nonzero(grad[1]) > 0  # no region: it is the one negative mined
    assert torch.count_nonzero(grad[2]) == torch.count_nonzero(grad[3]) == 0


def test_the_iof_threshold_decides_which_priors_are_ignored(strategy):
    # prior 2 spans x .82-.97, the region ends at .9: (.9 - .82) / .15 = 53% of its width (and all
    # of its height) lies inside
    inside = ref.iof([0.82, 0.6, 0.97, 0.7], REGION)
    assert inside == pytest.approx(0.08 / 0.15)
    _, grad = toy_step(with_region=True, hardest=2, iof=0.5)
    assert torch.count_nonzero(grad[2]) == 0
    _, grad = toy_step(with_region=True, hardest=2, iof=0.6)
    assert torch.count_nonzero(grad[2]) > 0
    # the same threshold, from the matcher's side: ignored = inside a region and not positive
    m = match(TOY_PRIORS, torch.tensor([[OBJECT, REGION]], dtype=torch.float64), torch.tensor([[1, 1]]),
              torch.tensor([[True, True]]), gt_ignore=torch.tensor([[False, True]]))
    assert m.ignored.tolist() == [[False, True, True, False]]
    assert m.positive.tolist() == [[True, False, False, False]]  # the region is never matched, valid or not
    assert m.negative.tolist() == [[False, False, False, True]]


@pytest.mark.parametrize("seed", range(3))
def test_multibox_with_ignore_regions_equals_the_per_image_reference(seed, strategy):
    boxes, labels, valid, ignore = crowd_with_regions(3, 10, seed)
    loc, conf = predictions(3, PRIORS, 4, seed)
    out = build_criterion("multibox")(loc, conf, PRIORS, boxes, labels, valid, ignore)
    loc_ref, conf_ref = ref.multibox(loc, conf, PRIORS, boxes, labels, valid, gt_ignore=ignore)
    torch.testing.assert_close(out["loc"], loc_ref)
    torch.testing.assert_close(out["conf"], conf_ref)
    grads = torch.autograd.grad(out["loc"] + out["conf"], (loc, conf))
    grads_ref = torch.autograd.grad(loc_ref + conf_ref, (loc, conf))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)
    # and the regions matter here: without them the confidence loss differs
    plain = build_criterion("multibox")(loc, conf, PRIORS, boxes, labels, valid)
    assert not torch.isclose(plain["conf"], out["conf"])


def crowd_with_regions(batch, num_gt, seed):
    """The reference tests' crowded scenes, with about a quarter of the boxes turned into
    (enlarged) ignore regions; every image but the single-GT one gets at least one."""
    boxes, labels, valid = scene(batch, num_gt, seed)
    g = torch.Generator().manual_seed(100 + seed)
    ignore = valid & (torch.rand(batch, num_gt, generator=g) < 0.25)
    ignore[1:, -1] = valid[1:, -1] = True
    centre, size = xyxy_to_cxcywh(boxes).split(2, dim=-1)
    grown = cxcywh_to_xyxy(torch.cat([centre, 1.8 * size], dim=-1)).clamp(0.0, 1.0)
    boxes = torch.where(ignore.unsqueeze(-1), grown, boxes)
    return boxes, labels, valid & ~ignore, ignore


@pytest.mark.parametrize("spec, key", [("multibox+repgt", "repgt"), ("multibox+repbox", "repbox")])
def test_repulsion_is_unchanged_by_an_ignore_region_over_the_positives(spec, key, strategy):
    boxes, labels, valid = scene(3, 10, 11, num_classes=2)
    loc, conf = predictions(3, PRIORS, 2, 2)
    before = build_criterion(spec)(loc, conf, PRIORS, boxes, labels, valid)[key]
    assert before > 0
    # a region over each image's first real object (its box, grown), same class, added as a slot
    first = valid.float().argmax(dim=1)
    region = boxes[torch.arange(3), first]
    region = torch.cat([region[:, :2] - 0.02, region[:, 2:] + 0.02], dim=1).clamp(0.0, 1.0)
    boxes_r = torch.cat([boxes, region.unsqueeze(1)], dim=1)
    labels_r = torch.cat([labels, labels[torch.arange(3), first].unsqueeze(1)], dim=1)
    valid_r = torch.cat([valid, torch.zeros(3, 1, dtype=torch.bool)], dim=1)
    ignore_r = torch.cat([torch.zeros_like(valid), torch.ones(3, 1, dtype=torch.bool)], dim=1)
    with_region = build_criterion(spec)(loc, conf, PRIORS, boxes_r, labels_r, valid_r, ignore_r)
    torch.testing.assert_close(with_region[key], before)
    # the region does overlap positives: as an object it would change the value
    as_object = build_criterion(spec)(loc, conf, PRIORS, boxes_r, labels_r, valid_r | ignore_r)[key]
    assert not torch.isclose(as_object, before)
    # and an ignore slot marked valid by mistake is still an ignore region
    mistaken = build_criterion(spec)(loc, conf, PRIORS, boxes_r, labels_r, valid_r | ignore_r, ignore_r)
    for name in with_region:
        torch.testing.assert_close(mistaken[name], with_region[name])


def test_omitting_gt_ignore_or_passing_none_set_keeps_todays_values_exactly(strategy):
    boxes, labels, valid, ignore = crowd_with_regions(3, 10, 5)
    loc, conf = predictions(3, PRIORS, 4, 1)
    spec = "multibox+repgt+repbox"
    today = build_criterion(spec)(loc, conf, PRIORS, boxes, labels, valid)
    none_set = build_criterion(spec)(loc, conf, PRIORS, boxes, labels, valid, torch.zeros_like(ignore))
    for name in today:
        assert torch.equal(today[name], none_set[name]), name
    grads = [torch.autograd.grad(out["loss"], (loc, conf)) for out in (today, none_set)]
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_ignored_priors_equals_the_loop_reference(strategy):
    boxes, labels, valid, ignore = crowd_with_regions(4, 10, 3)
    no_labels = torch.zeros(PRIORS.shape[0], dtype=torch.long)
    for threshold in (0.3, 0.5, 1.0):
        got = ignored_priors(cxcywh_to_xyxy(PRIORS), boxes, ignore, threshold)
        for b in range(4):
            expected = ref.ignored_priors(b, PRIORS, boxes, ignore, no_labels, threshold)
            assert set(torch.nonzero(got[b]).flatten().tolist()) == expected
    assert ignore.sum() > 0 and got.any()


def test_ignore_iof_is_validated():
    with pytest.raises(ValueError, match="ignore_iof must be in \\(0, 1\\]"):
        build_criterion("multibox", ignore_iof=0.0)
    with pytest.raises(ValueError, match="ignore_iof must be in \\(0, 1\\]"):
        match(PRIORS, torch.zeros(1, 1, 4), torch.ones(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool),
              gt_ignore=torch.zeros(1, 1, dtype=torch.bool), ignore_iof=1.5)


def count_ignore_step(spec, b):
    boxes, labels, valid, ignore = crowd_with_regions(b, 8, 0)
    loc, conf = predictions(b, PRIORS, 4, 0)
    args = [t.detach().float().to("meta").requires_grad_() for t in (loc, conf)]
    with OpCounter() as counter:
        out = build_criterion(spec)(*args, PRIORS.float().to("meta"), boxes.float().to("meta"), labels.to("meta"),
                                    valid.to("meta"), ignore.to("meta"))
        out["loss"].backward()
    assert args[1].grad.device.type == "meta"
    return counter.ops


@pytest.mark.parametrize("spec", ["multibox", "multibox+repgt+repbox"])
def test_ignore_regions_run_on_meta_with_operator_count_independent_of_batch(spec):
    ops_2, ops_32 = count_ignore_step(spec, 2), count_ignore_step(spec, 32)
    assert ops_2 == ops_32
    forbidden = ("item", "_local_scalar_dense", "nonzero", "masked_select", "index.Tensor", "_to_cpu")
    assert not [op for op in ops_32 if any(f in op for f in forbidden)]
    without = build_criterion(spec)
    boxes, labels, valid, _ = crowd_with_regions(2, 8, 0)
    loc, conf = predictions(2, PRIORS, 4, 0)
    args = [t.detach().float().to("meta").requires_grad_() for t in (loc, conf)]
    with OpCounter() as counter:
        without(*args, PRIORS.float().to("meta"), boxes.float().to("meta"), labels.to("meta"),
                valid.to("meta"))["loss"].backward()
    views = ("slice", "select", "unsqueeze", "unbind", "expand", "view", "detach")
    kernels = lambda ops: [op for op in ops if not any(v in op for v in views)]  # noqa: E731
    assert len(kernels(ops_2)) - len(kernels(counter.ops)) <= 32  # the regions cost about thirty kernels
