import pytest
import torch
import torchvision

from conftest import DEVICES

from repssd.boxes import (box_area, box_iog, box_iou, clip_boxes, cxcywh_to_xyxy, pairwise_iog,
                          xyxy_to_cxcywh)


A = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0], [4.0, 4.0, 5.0, 6.0]])
B = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [2.0, 0.0, 4.0, 2.0]])


def test_box_iou_hand_computed_table():
    # Row i, column j: IoU(A_i, B_j) worked out by hand.
    expected = torch.tensor([
        [1 / 4, 1 / 7, 1.0, 0.0],          # A0 (area 4): inside, corner overlap 1, equal, touching edge
        [0.0, 1.0, 1 / 7, 1 / 7],          # A1 (area 4): corner touch, equal, overlap 1, overlap 1
        [0.0, 0.0, 0.0, 0.0],              # A2: disjoint from everything
    ])
    torch.testing.assert_close(box_iou(A, B), expected)


def test_box_iou_matches_torchvision_bit_for_bit(random_boxes):
    a, b = random_boxes(30, seed=1), random_boxes(50, seed=2)
    assert torch.equal(box_iou(a, b), torchvision.ops.box_iou(a, b))


def test_box_iou_batched_equals_per_image(random_boxes):
    a = random_boxes(24, seed=3).view(3, 8, 4)
    b = random_boxes(10, seed=4)
    batched = box_iou(a, b)
    assert batched.shape == (3, 8, 10)
    for i in range(3):
        assert torch.equal(batched[i], box_iou(a[i], b))


def test_box_iou_empty_boxes_give_zero_not_nan():
    zero = torch.zeros(2, 4)
    assert torch.equal(box_iou(zero, zero), torch.zeros(2, 2))
    assert box_iou(torch.zeros(0, 4), B).shape == (0, 4)


def test_box_iog_hand_computed():
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 4.0, 4.0]])
    gt = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 2.0]])
    # overlap 1 of gt area 4; 1 of 4; disjoint; gt entirely covered.
    torch.testing.assert_close(box_iog(pred, gt), torch.tensor([0.25, 0.25, 0.0, 1.0]))


def test_box_iog_is_not_symmetric_and_zero_area_gt_gives_zero():
    small, big = torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([0.0, 0.0, 2.0, 2.0])
    assert box_iog(big, small).item() == 1.0
    assert box_iog(small, big).item() == 0.25
    assert box_iog(big, torch.tensor([1.0, 1.0, 1.0, 3.0])).item() == 0.0


def test_pairwise_iog_matches_elementwise(random_boxes):
    a, b = random_boxes(7, seed=5), random_boxes(9, seed=6)
    table = pairwise_iog(a, b)
    for i in range(7):
        for j in range(9):
            assert table[i, j] == box_iog(a[i], b[j])
    # a leading batch dimension, a shared second set, and an empty gt box (0, not NaN)
    batched = pairwise_iog(torch.stack([a, a.flip(0)]), b)
    assert torch.equal(batched[0], table) and torch.equal(batched[1], table.flip(0))
    empty = torch.tensor([[0.2, 0.2, 0.2, 0.5]])
    assert pairwise_iog(a, empty).eq(0).all()


def test_converters_round_trip_and_known_values(random_boxes):
    boxes = random_boxes(40, seed=7, dtype=torch.float64)
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes)), boxes)
    assert xyxy_to_cxcywh(torch.tensor([1.0, 2.0, 5.0, 4.0])).tolist() == [3.0, 3.0, 4.0, 2.0]
    batched = boxes.view(2, 20, 4)
    assert torch.equal(xyxy_to_cxcywh(batched)[1], xyxy_to_cxcywh(boxes[20:]))


def test_box_area_and_clip():
    assert box_area(A).tolist() == [4.0, 4.0, 2.0]
    assert box_area(torch.tensor([2.0, 2.0, 1.0, 3.0])).item() == 0.0
    clipped = clip_boxes(torch.tensor([[-0.5, 0.2, 1.5, 0.9]]))
    torch.testing.assert_close(clipped, torch.tensor([[0.0, 0.2, 1.0, 0.9]]))
    assert clip_boxes(torch.tensor([5.0, -1.0, 40.0, 9.0]), 30, 8).tolist() == [5.0, 0.0, 30.0, 8.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_iou_keeps_dtype(dtype, random_boxes):
    assert box_iou(random_boxes(3, dtype=dtype), random_boxes(4, seed=1, dtype=dtype)).dtype == dtype


@pytest.mark.parametrize("device", DEVICES)
def test_box_ops_on_device_equal_cpu(device, random_boxes):
    a, b = random_boxes(20, seed=8), random_boxes(30, seed=9)
    assert torch.equal(box_iou(a.to(device), b.to(device)).cpu(), box_iou(a, b))
    assert torch.equal(box_iog(a.to(device), b[:20].to(device)).cpu(), box_iog(a, b[:20]))


def test_box_iou_gradients_are_correct(random_boxes):
    a = random_boxes(4, seed=10, dtype=torch.float64).requires_grad_()
    b = random_boxes(5, seed=11, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(box_iou, (a, b))
    assert torch.autograd.gradcheck(box_iog, (a, b[:4]))
