"""The plug-in system: spec parsing, weights, a new term in one file, the meta-device run, DDP."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from repssd.losses import TERMS, LossContext, LossTerm, build_criterion, parse_weights, register
from repssd.matcher import match
from repssd.priors import generate_priors

from conftest import DEVICES, OpCounter, free_port, make_random_boxes


def batch(b, g=6, seed=0, device="cpu", num_classes=21, priors="ssd300_voc"):
    gen = torch.Generator().manual_seed(seed)
    pr = generate_priors(priors)
    boxes = make_random_boxes(b * g, gen, min_size=0.1).view(b, g, 4)
    labels = torch.randint(1, num_classes, (b, g), generator=gen)
    valid = torch.rand(b, g, generator=gen) < 0.8
    loc = (0.3 * torch.randn(b, pr.shape[0], 4, generator=gen)).requires_grad_()
    conf = torch.randn(b, pr.shape[0], num_classes, generator=gen).requires_grad_()
    to = lambda t: t.detach().to(device).requires_grad_(t.requires_grad)  # noqa: E731
    return to(loc), to(conf), pr.to(device), boxes.to(device), labels.to(device), valid.to(device)


def test_the_two_strategies_agree_on_a_crowded_batch(monkeypatch):
    import repssd.batching
    args = batch(4, g=20, seed=9)
    spec = "multibox+repgt+repbox"
    cpu = build_criterion(spec)(*args)
    grads_cpu = torch.autograd.grad(cpu["loss"], args[:2])
    monkeypatch.setattr(repssd.batching, "cpu_strategy", lambda device: False)
    dense = build_criterion(spec)(*args)
    grads_dense = torch.autograd.grad(dense["loss"], args[:2])
    for key in cpu:
        torch.testing.assert_close(cpu[key], dense[key], rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_cpu, grads_dense):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_outputs_and_weighted_total():
    out = build_criterion("multibox+repgt+repbox")(*batch(2))
    assert set(out) == {"loc", "conf", "repgt", "repbox", "loss"}
    torch.testing.assert_close(out["loss"], out["loc"] + out["conf"] + out["repgt"] + 0.5 * out["repbox"])
    custom = build_criterion("multibox+repgt", weights={"repgt": 2.0, "loc": 0.0})(*batch(2))
    torch.testing.assert_close(custom["loss"], custom["conf"] + 2.0 * custom["repgt"])


def test_parse_weights():
    assert parse_weights("repgt=0.5, repbox=1") == {"repgt": 0.5, "repbox": 1.0}
    with pytest.raises(ValueError, match="name=number"):
        parse_weights("repgt:0.5")


@pytest.mark.parametrize("kwargs, message", [
    ({"spec": "multibox+repulsion"}, "unknown loss term 'repulsion'.*known terms: multibox, repgt, repbox"),
    ({"spec": "multibox+repgt+repgt"}, "names a term twice"),
    ({"spec": "multibox", "repgt_sigma": 0.5}, "option 'repgt_sigma' is for loss term 'repgt', which is not in 'multibox'"),
    ({"spec": "multibox", "sigma": 0.5}, "unknown loss option 'sigma'; known options: .*neg_pos_ratio"),
    ({"spec": "multibox", "weights": {"repbox": 0.5}}, "'repbox' \\(an output of 'repbox', not in 'multibox'\\)"),
    ({"spec": "multibox", "weights": {"foo": 1.0}}, "unknown output 'foo'.*outputs of 'multibox': loc, conf"),
    ({"spec": "repgt", "repgt_target": "box"}, "repgt_target must be 'prior' or 'pred'"),
])
def test_bad_specs_list_what_is_known(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_criterion(**kwargs)


@pytest.fixture
def example_term():
    """The README's example term (plus an unweighted, logged-only output)."""
    @register("boxsize")
    class BoxSize(LossTerm):
        outputs = ("boxsize", "num_pos")
        default_weights = {"boxsize": 0.1}

        def __init__(self, boxsize_power: float = 2.0):
            super().__init__()
            self.power = boxsize_power

        def forward(self, ctx: LossContext) -> dict[str, torch.Tensor]:
            pos = ctx.positives(256)
            wh = pos.pred_boxes[..., 2:] - pos.pred_boxes[..., :2]
            size = (wh.prod(-1) ** (self.power / 2) * pos.valid).sum() / ctx.num_pos
            return {"boxsize": size, "num_pos": ctx.num_pos}

    yield BoxSize
    del TERMS["boxsize"]


def test_a_new_term_plugs_in(example_term):
    args = batch(2)
    out = build_criterion("multibox+boxsize", boxsize_power=4.0)(*args)
    # "num_pos" has no weight: logged, not summed.
    torch.testing.assert_close(out["loss"], out["loc"] + out["conf"] + 0.1 * out["boxsize"])
    m = match(args[2], args[3], args[4], args[5])
    assert out["num_pos"].item() == m.positive.sum().item() > 0
    # the same as the mean of (w * h)^2 over all positives, decoded the long way
    from repssd.coder import decode
    boxes = decode(args[0], args[2])
    wh = boxes[..., 2:] - boxes[..., :2]
    expected = (wh.prod(-1) ** 2 * m.positive).sum() / m.positive.sum()
    torch.testing.assert_close(out["boxsize"], expected)
    with pytest.raises(ValueError, match="registered twice"):
        register("boxsize")(example_term)


def count_step(spec, b):
    loc, conf, priors, boxes, labels, valid = batch(b, device="meta")
    with OpCounter() as counter:
        build_criterion(spec)(loc, conf, priors, boxes, labels, valid)["loss"].backward()
    assert loc.grad.shape == loc.shape and conf.grad.device.type == "meta"
    return counter.ops


@pytest.mark.parametrize("spec, bound", [("multibox", 200), ("multibox+repgt+repbox", 600)])
def test_meta_forward_backward_with_operator_count_independent_of_batch(spec, bound):
    ops_2, ops_32 = count_step(spec, 2), count_step(spec, 32)
    assert ops_2 == ops_32
    assert len(ops_2) < bound  # multibox: 140 today (torchvision's SSD: 261 at B=2, 3,471 at B=32)
    forbidden = ("item", "_local_scalar_dense", "nonzero", "masked_select", "index.Tensor", "_to_cpu")
    assert not [op for op in ops_32 if any(f in op for f in forbidden)]


@pytest.mark.parametrize("device", DEVICES)
def test_device_equals_cpu(device):
    spec = "multibox+repgt+repbox"
    cpu = build_criterion(spec)(*batch(3, seed=4))
    dev = build_criterion(spec)(*batch(3, seed=4, device=device))
    for key in cpu:
        torch.testing.assert_close(dev[key].cpu(), cpu[key], rtol=1e-4, atol=1e-5)


def _ddp_worker(rank, world, port, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        args = batch(1 + rank, seed=rank, priors="mobilenet_ssd300")
        m = match(args[2], args[3], args[4], args[5])
        results[rank] = (m.positive.sum().item(), LossContext.count_positives(m).item())
    finally:
        dist.destroy_process_group()


def test_num_pos_is_averaged_over_processes():
    port = free_port()
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, port, results), nprocs=2)
    local = [results[r][0] for r in range(2)]
    assert results[0][1] == results[1][1] == pytest.approx(sum(local) / 2)


def _ddp_loss_worker(rank, world, port, parts, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        loc, conf, priors, *gt = _ddp_batch()
        mine = parts[rank]
        loc, conf = loc[mine].detach().requires_grad_(), conf[mine].detach().requires_grad_()
        out = build_criterion("multibox+repgt+repbox")(loc, conf, priors, *(t[mine] for t in gt))
        grads = torch.autograd.grad(out["loss"], (loc, conf))
        results[rank] = ({k: v.item() for k, v in out.items()}, [g.tolist() for g in grads])
    finally:
        dist.destroy_process_group()


def _ddp_batch():
    """5 crowded images with ignore regions, float64 (mobilenet_ssd300: 3000 priors)."""
    from test_ignore_regions import crowd_with_regions
    from test_losses_reference import PRIORS, predictions
    boxes, labels, valid, ignore = crowd_with_regions(5, 10, 4)
    labels = labels.clamp(max=2)  # two classes, so RepGT finds same-class neighbours
    loc, conf = predictions(5, PRIORS, 3, 6)
    return loc, conf, PRIORS, boxes, labels, valid, ignore


def test_two_process_losses_average_to_the_one_process_loss_on_the_whole_batch():
    """DDP averages each process's loss (its gradients): num_pos and RepBox's pair count are
    averaged over processes, so the mean of the two processes' values is the one-process value
    on the concatenated batch, for every term, whatever the split (here 2 + 3 images)."""
    port = free_port()
    parts = [slice(0, 2), slice(2, 5)]
    results = mp.Manager().dict()
    mp.spawn(_ddp_loss_worker, args=(2, port, parts, results), nprocs=2)
    loc, conf, priors, boxes, labels, valid, ignore = _ddp_batch()
    whole = build_criterion("multibox+repgt+repbox")(loc, conf, priors, boxes, labels, valid, ignore)
    grads = torch.autograd.grad(whole["loss"], (loc, conf))
    assert whole["repbox"] > 0 and whole["repgt"] > 0
    for key, value in whole.items():
        assert (results[0][0][key] + results[1][0][key]) / 2 == pytest.approx(value.item(), rel=1e-9), key
    for rank, part in enumerate(parts):  # DDP's gradient is the mean of the processes'
        for got, expected in zip(results[rank][1], grads):
            torch.testing.assert_close(torch.tensor(got, dtype=torch.float64) / 2, expected[part])
    # per-process pair counts (no all-reduce) would not give this: RepBox's two halves differ
    local = [build_criterion("repbox")(loc[p], conf[p], priors, boxes[p], labels[p], valid[p], ignore[p])["repbox"]
             for p in parts]
    assert ((local[0] + local[1]) / 2).item() != pytest.approx(whole["repbox"].item(), rel=1e-6)
