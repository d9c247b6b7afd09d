"""Batched matching against a per-image transcription of ssd.pytorch's ``match()``."""
import pytest
import torch

import repssd.matcher as matcher_module
from repssd.batching import cpu_chunks
from repssd.boxes import box_iou, cxcywh_to_xyxy, xyxy_to_cxcywh
from repssd.coder import encode
from repssd.matcher import match
from repssd.priors import generate_priors

from conftest import DEVICES, OpCounter, make_random_boxes


def ssd_pytorch_match(threshold, truths, priors, labels):
    """ssd.pytorch layers/box_utils.py match() for one image, with labels already in 1..C-1.

    Returns (conf [P], best_truth_idx [P], loc [P, 4]); ``truths`` holds only real GT.
    """
    overlaps = box_iou(truths, cxcywh_to_xyxy(priors))
    best_prior_overlap, best_prior_idx = overlaps.max(1, keepdim=True)
    best_truth_overlap, best_truth_idx = overlaps.max(0, keepdim=True)
    best_truth_idx.squeeze_(0)
    best_truth_overlap.squeeze_(0)
    best_prior_idx.squeeze_(1)
    best_truth_overlap.index_fill_(0, best_prior_idx, 2)
    for j in range(best_prior_idx.size(0)):
        best_truth_idx[best_prior_idx[j]] = j
    conf = labels[best_truth_idx].clone()
    conf[best_truth_overlap < threshold] = 0
    return conf, best_truth_idx, encode(truths[best_truth_idx], priors)


def random_batch(batch, num_gt, seed, dtype=torch.float32, num_classes=5):
    """A padded batch with padding scattered anywhere (not only at the end) and garbage in it."""
    g = torch.Generator().manual_seed(seed)
    boxes = make_random_boxes(batch * num_gt, g, dtype).view(batch, num_gt, 4)
    # Crowds: copy some boxes with a small shift, so GT compete for the same priors.
    shifted = (boxes.roll(1, dims=1) + 0.01).clamp(max=1.0)
    crowd = torch.rand(batch, num_gt, 1, generator=g) < 0.3
    boxes = torch.where(crowd, shifted, boxes)
    labels = torch.randint(1, num_classes, (batch, num_gt), generator=g)
    valid = torch.rand(batch, num_gt, generator=g) < 0.8
    garbage = torch.rand(batch, num_gt, 4, generator=g, dtype=torch.float64).to(dtype)
    boxes = torch.where(valid.unsqueeze(-1), boxes, garbage)
    return boxes, labels, valid


def assert_equals_reference(priors, boxes, labels, valid, threshold=0.5):
    result = match(priors, boxes, labels, valid, threshold)
    targets = result.loc_targets(boxes, priors)
    for b in range(boxes.shape[0]):
        real = valid[b].nonzero().squeeze(1)
        if real.numel() == 0:
            assert (result.labels[b] == 0).all()
            continue
        conf, idx, loc = ssd_pytorch_match(threshold, boxes[b, real], priors.to(boxes), labels[b, real])
        assert torch.equal(result.labels[b], conf)
        pos = conf > 0
        assert torch.equal(result.gt_index[b][pos], real[idx][pos])
        assert torch.equal(targets[b][pos], loc[pos])
        assert (targets[b][~pos] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(6))
def test_batched_equals_per_image_reference(seed, dtype, strategy):
    priors = generate_priors("ssd300_voc")
    boxes, labels, valid = random_batch(batch=4, num_gt=1 + 7 * seed, seed=seed, dtype=dtype)
    assert_equals_reference(priors, boxes, labels, valid)


@pytest.mark.parametrize("seed", range(3))
def test_reference_parity_on_mobilenet_priors_and_other_threshold(seed):
    boxes, labels, valid = random_batch(batch=3, num_gt=12, seed=100 + seed)
    assert_equals_reference(generate_priors("mobilenet_ssd300"), boxes, labels, valid, threshold=0.35)


def test_small_fixed_case():
    # Four priors, two GT; IoU table (rows GT, columns priors) is hand-computed:
    #   GT0 = [0, 0, .5, .5]:  [1.00, 0.25, 0.00, 0.00]
    #   GT1 = [.5, .5, 1, 1]:  [0.00, 0.00, 0.25, 1/7 ]
    priors_xyxy = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.25, 0.5],
                                [0.5, 0.5, 0.75, 0.75], [0.25, 0.25, 0.75, 0.75]])
    gt = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]])
    result = match(xyxy_to_cxcywh(priors_xyxy), gt, torch.tensor([[3, 7]]), torch.tensor([[True, True]]))
    # Prior 0: IoU 1 with GT0 -> class 3. Prior 1: 0.5 with GT0 (boundary counts) -> 3.
    # Prior 2: best prior of GT1 (0.25) -> forced to class 7. Prior 3: 1/7 -> background.
    assert result.labels.tolist() == [[3, 3, 7, 0]]
    assert result.gt_index[0, :3].tolist() == [0, 0, 1]
    torch.testing.assert_close(result.iou, torch.tensor([[1.0, 0.5, 0.25, 1 / 7]]))


def test_contested_prior_goes_to_the_higher_gt_index():
    priors = xyxy_to_cxcywh(torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.6, 0.6, 1.0, 1.0]]))
    # Three GT whose best prior is prior 0; their IoU with it is below the threshold.
    gt = torch.tensor([[[0.0, 0.0, 0.1, 0.1], [0.0, 0.0, 0.15, 0.15], [0.3, 0.3, 0.42, 0.42]]])
    result = match(priors, gt, torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.bool))
    assert result.labels.tolist() == [[3, 0]]
    assert result.gt_index[0, 0].item() == 2
    # The same with the last one padded: GT 1 wins; padding never takes a prior.
    result = match(priors, gt, torch.tensor([[1, 2, 3]]), torch.tensor([[True, True, False]]))
    assert result.labels.tolist() == [[2, 0]] and result.gt_index[0, 0].item() == 1


def test_forced_prior_wins_over_a_better_gt_for_that_prior():
    priors = xyxy_to_cxcywh(torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.45, 0.45]]))
    # GT0 fits prior 0 exactly (IoU 1) but its best is prior 0 anyway; GT1's best prior is 1.
    gt = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.44, 0.44]]])
    result = match(priors, gt, torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.bool))
    assert result.labels.tolist() == [[1, 2]]


def test_empty_ground_truth_is_all_background(strategy):
    priors = generate_priors("ssd300_voc")
    none = match(priors, torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.bool))
    assert none.labels.shape == (2, 8732) and not none.positive.any()
    boxes, labels, valid = random_batch(batch=3, num_gt=4, seed=3)
    valid[1] = False  # one image with only padding in a batch with real GT
    result = match(priors, boxes, labels, valid)
    assert not result.positive[1].any() and result.positive[0].any()
    assert torch.isfinite(result.loc_targets(boxes, priors)).all()


def test_padded_and_zero_area_gt_are_never_matched(strategy):
    priors = generate_priors("ssd300_voc")
    boxes, labels, valid = random_batch(batch=4, num_gt=10, seed=5)
    boxes[0, 0] = torch.tensor([0.3, 0.3, 0.3, 0.6])  # degenerate box marked valid
    result = match(priors, boxes, labels, valid)
    matched_slot = result.gt_index[result.positive]
    image = torch.arange(4).unsqueeze(1).expand(4, 8732)[result.positive]
    assert valid[image, matched_slot].all()
    assert not ((image == 0) & (matched_slot == 0)).any()


def test_cpu_chunking_gives_the_same_result(monkeypatch):
    priors = generate_priors("mobilenet_ssd300")
    boxes, labels, valid = random_batch(batch=7, num_gt=9, seed=8)
    whole = match(priors, boxes, labels, valid)
    monkeypatch.setattr(matcher_module, "CPU_CHUNK_ELEMENTS", 2 * 9 * 3000)  # several chunks
    chunked = match(priors, boxes, labels, valid)
    for field in ("labels", "gt_index", "iou"):
        assert torch.equal(getattr(whole, field), getattr(chunked, field))


def test_cpu_chunks_group_images_by_length_within_the_budget():
    lengths = torch.tensor([3, 0, 10, 1])  # e.g. last real GT slots
    chunks = cpu_chunks(lengths, budget=1000, cost=lambda width: max(width, 1) * 100)
    # 3 images x width 3 x 100 priors fit in 1000; adding the 10-wide image would not.
    assert [(images.tolist(), width) for images, width in chunks] == [([1, 3, 0], 3), ([2], 10)]
    assert cpu_chunks(torch.zeros(0, dtype=torch.long), 10, lambda w: w)[0][1] == 0


def test_invalid_threshold_is_rejected():
    with pytest.raises(ValueError, match="iou_threshold"):
        match(generate_priors("ssd300_voc"), torch.zeros(1, 1, 4), torch.ones(1, 1, dtype=torch.long),
              torch.ones(1, 1, dtype=torch.bool), iou_threshold=0.0)


def count_match_ops(batch, device="meta"):
    boxes, labels, valid = random_batch(batch=batch, num_gt=6, seed=1)
    priors = generate_priors("ssd300_voc", device=device)
    args = boxes.to(device), labels.to(device), valid.to(device)
    with OpCounter() as counter:
        result = match(priors, *args)
        result.loc_targets(args[0], priors)
    return counter.ops, result


def test_runs_on_meta_with_operator_count_independent_of_batch():
    ops_2, result = count_match_ops(2)
    ops_32, result_32 = count_match_ops(32)
    assert result_32.labels.device.type == "meta" and result_32.labels.shape == (32, 8732)
    assert ops_2 == ops_32
    assert len(ops_2) < 120  # about 100 today, views included; guards against a per-GT loop
    # No host syncs: nothing that reads values back or picks data-dependent shapes.
    forbidden = ("item", "_local_scalar_dense", "nonzero", "masked_select", "index.Tensor")
    assert not [op for op in ops_32 if any(f in op for f in forbidden)]


@pytest.mark.parametrize("device", DEVICES)
def test_device_result_equals_cpu(device):
    priors = generate_priors("ssd300_voc")
    boxes, labels, valid = random_batch(batch=5, num_gt=15, seed=21)
    on_cpu = match(priors, boxes, labels, valid)
    on_device = match(priors.to(device), boxes.to(device), labels.to(device), valid.to(device))
    assert torch.equal(on_device.labels.cpu(), on_cpu.labels)
    assert torch.equal(on_device.gt_index.cpu()[on_cpu.positive], on_cpu.gt_index[on_cpu.positive])
