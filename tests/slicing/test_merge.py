import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from repssd.slicing import Sources, merge, pair_metric


def one_tile_per_image(num_images: int, size: float = 200.0) -> Sources:
    regions = torch.tensor([[0.0, 0.0, size, size]]).repeat(num_images, 1)
    return Sources(regions, torch.arange(num_images), torch.zeros(num_images, 4, dtype=torch.bool))


def random_detections(n: int, seed: int, num_images: int = 1, size: float = 200.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size * 0.8
    wh = torch.rand(n, 2, generator=g) * size * 0.3 + 2
    boxes = torch.cat([xy, (xy + wh).clamp(max=size)], 1)
    scores = torch.rand(n, generator=g)
    labels = torch.randint(1, 3, (n,), generator=g)
    image = torch.randint(0, num_images, (n,), generator=g)
    return boxes, scores, labels, image


def literal_greedy(boxes, scores, labels, image, metric, thresh):
    """Textbook greedy suppression, one (image, class) at a time -> keep mask, owner."""
    n = len(scores)
    keep, owner = np.zeros(n, bool), np.full(n, -1)
    order = sorted(range(n), key=lambda i: -float(scores[i]))
    alive = np.ones(n, bool)
    for i in order:
        if not alive[i]:
            continue
        keep[i] = True
        for j in order:
            if alive[j] and j != i and not keep[j] and image[j] == image[i] and labels[j] == labels[i]:
                if float(pair_metric(boxes[i], boxes[j], metric)) >= thresh:
                    alive[j], owner[j] = False, i
    return keep, owner


@pytest.mark.parametrize("metric", ["iou", "ios"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_merge_equals_the_literal_loop(metric, seed):
    boxes, scores, labels, image = random_detections(150, seed, num_images=3)
    result = merge(boxes, scores, labels, image, one_tile_per_image(3), "nms", metric, 0.4)
    keep, owner = literal_greedy(boxes, scores, labels, image, metric, 0.4)
    assert result.keep.numpy().tolist() == keep.tolist()
    assert result.owner.numpy().tolist() == owner.tolist()
    assert torch.equal(result.boxes, boxes)  # nms never changes a box


def test_iou_merge_keeps_what_torchvision_batched_nms_keeps():
    boxes, scores, labels, image = random_detections(400, 7, num_images=4)
    # torchvision suppresses IoU > t, the merge IoU >= t: equal away from exact ties
    expected = batched_nms(boxes, scores, image * 10 + labels, 0.5)
    result = merge(boxes, scores, labels, image, one_tile_per_image(4), "nms", "iou", 0.5)
    assert sorted(torch.nonzero(result.keep).squeeze(1).tolist()) == sorted(expected.tolist())


def test_batched_images_equal_one_at_a_time():
    boxes, scores, labels, image = random_detections(200, 3, num_images=3)
    for method, metric in [("nms", "ios"), ("greedy-nmm", "ios"), ("greedy-nmm", "iou")]:
        together = merge(boxes, scores, labels, image, one_tile_per_image(3), method, metric, 0.5)
        for i in range(3):
            mine = image == i
            alone = merge(boxes[mine], scores[mine], labels[mine], torch.zeros(int(mine.sum()), dtype=torch.int64),
                          one_tile_per_image(1), method, metric, 0.5)
            assert torch.equal(together.keep[mine], alone.keep)
            torch.testing.assert_close(together.boxes[mine], alone.boxes)


@pytest.mark.parametrize("metric", ["iou", "ios"])
def test_greedy_nmm_equals_sahis(metric):
    combine = pytest.importorskip("sahi.postprocess.combine")
    from sahi.prediction import ObjectPrediction

    boxes, scores, labels, _ = random_detections(120, 11)
    predictions = [ObjectPrediction(bbox=b, category_id=int(c), category_name=str(int(c)), score=float(s))
                   for b, s, c in zip(boxes.double().tolist(), scores.tolist(), labels.tolist())]
    merged = combine.GreedyNMMPostprocess(0.5, metric.upper(), class_agnostic=False)(predictions)
    expected = sorted((p.score.value, *p.bbox.to_xyxy()) for p in merged)
    result = merge(boxes.double(), scores.double(), labels, torch.zeros(120, dtype=torch.int64),
                   one_tile_per_image(1), "greedy-nmm", metric, 0.5)
    got = sorted((s, *b) for b, s in zip(result.boxes[result.keep].tolist(), scores.double()[result.keep].tolist()))
    np.testing.assert_allclose(np.array(got), np.array(expected), atol=1e-6)


def two_tiles_and_the_image():
    """Tile A [0, 100] x [0, 100], tile B [80, 180] x [0, 100], the whole 180 x 100 image."""
    regions = torch.tensor([[0.0, 0, 100, 100], [80, 0, 180, 100], [0, 0, 180, 100]])
    interior = torch.tensor([[False, False, True, False], [True, False, False, False], [False] * 4])
    return Sources(regions, torch.zeros(3, dtype=torch.int64), interior)


def run(boxes, scores, source, method, metric="iou", thresh=0.6):
    boxes, scores = torch.tensor(boxes), torch.tensor(scores)
    result = merge(boxes, scores, torch.ones(len(scores), dtype=torch.int64), torch.tensor(source),
                   two_tiles_and_the_image(), method, metric, thresh)
    return result.boxes[result.keep].tolist()


def test_a_person_cut_by_a_tile_edge_becomes_one_whole_box():
    # person [70, 20, 110, 90]: tile A sees [70, 100] (cut at its right edge), B sees [80, 110] (cut at its left)
    boxes, scores, source = [[70.0, 20, 100, 90], [80, 20, 110, 90]], [0.9, 0.8], [0, 1]
    assert run(boxes, scores, source, "crowd") == [[70.0, 20, 110, 90]]
    assert len(run(boxes, scores, source, "nms")) == 2  # IoU 0.5 < 0.6: a duplicate on the edge
    assert run(boxes, scores, source, "greedy-nmm", "ios", 0.5) == [[70.0, 20, 110, 90]]


def test_a_cut_box_takes_its_whole_counterpart_and_a_whole_box_stays_whole():
    # B sees the person [85, 112] whole; A's cut piece [85, 100] is the better-scoring one
    assert run([[85.0, 20, 100, 90], [85, 20, 112, 90]], [0.9, 0.7], [0, 1], "crowd") == [[85.0, 20, 112, 90]]
    # the whole box is kept and the cut piece never widens it
    assert run([[70.0, 20, 100, 90], [60, 18, 112, 90]], [0.6, 0.9], [0, 2], "crowd") == [[60.0, 18, 112, 90]]


def test_an_occluded_person_on_a_tile_edge_is_not_merged_into_the_occluder():
    # P1 in front [60, 10, 120, 95]; P2 behind it [86, 20, 108, 70], its box inside P1's; both cross
    # A's right edge (x = 100); B (from x = 80) sees P2 whole, the whole-image pass only P1
    p1_a, p1_b, p1_full = [60.0, 10, 100, 95], [80.0, 10, 120, 95], [60.0, 10, 120, 95]
    p2_a, p2_b = [86.0, 20, 100, 70], [86.0, 20, 108, 70]
    boxes = [p1_a, p1_b, p1_full, p2_a, p2_b]
    scores, source = [0.9, 0.85, 0.8, 0.7, 0.6], [0, 1, 2, 0, 1]
    assert sorted(run(boxes, scores, source, "crowd")) == sorted([p1_full, p2_b])
    # intersection over the smaller box: P2 lies in P1's box, so both its views merge into P1's
    assert run(boxes, scores, source, "greedy-nmm", "ios", 0.5) == [p1_full]
    assert run(boxes, scores, source, "nms", "ios", 0.5) == [p1_a]
    assert sorted(run(boxes, scores, source, "nms")) == sorted([p1_a, p1_b, p2_a])  # P1 twice, P2 cut


def test_boxes_of_different_images_or_classes_never_merge():
    regions = torch.tensor([[0.0, 0, 100, 100], [0, 0, 100, 100]])
    sources = Sources(regions, torch.tensor([0, 1]), torch.zeros(2, 4, dtype=torch.bool))
    box = torch.tensor([[10.0, 10, 50, 50]]).repeat(3, 1)
    result = merge(box, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 1, 2]), torch.tensor([0, 1, 0]), sources,
                   "nms", "iou", 0.5)
    assert result.keep.tolist() == [True, True, True]


def test_no_detections():
    result = merge(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                   one_tile_per_image(1), "crowd", "iou", 0.5)
    assert result.keep.shape == (0,) and result.owner.shape == (0,)
