"""SSD augmentation: every output box valid and inside the image (property tests), flags follow boxes."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repssd.data import SSDTestTransform, SSDTrainTransform, TileCrop, parse_tile_crop


@st.composite
def samples(draw):
    h, w = draw(st.integers(16, 120)), draw(st.integers(16, 120))
    n = draw(st.integers(0, 6))
    boxes = []
    for _ in range(n):
        x1, y1 = draw(st.floats(0, w - 2)), draw(st.floats(0, h - 2))
        boxes.append([x1, y1, draw(st.floats(x1 + 1, w)), draw(st.floats(y1 + 1, h))])
    seed = draw(st.integers(0, 2**31 - 1))
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
              "labels": torch.arange(1, n + 1), "difficult": torch.arange(n) % 2 == 0,
              "ignore": torch.arange(n) % 3 == 0, "size": torch.tensor([h, w])}
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), target, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples())
def test_train_transform_outputs_only_valid_boxes_inside_the_image(sample):
    image, target, seed = sample
    torch.manual_seed(seed)
    out_image, out = SSDTrainTransform(size=64)(image, target)
    assert out_image.shape == (3, 64, 64) and out_image.dtype == torch.uint8
    boxes = out["boxes"]
    assert ((boxes >= 0) & (boxes <= 1)).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) * 64 >= 1 - 1e-4).all()  # no degenerate box survives
    # flags stay aligned with their boxes: label k carries difficult = (k-1) % 2 == 0, ignore = (k-1) % 3 == 0
    k = out["labels"] - 1
    assert torch.equal(out["difficult"], k % 2 == 0) and torch.equal(out["ignore"], k % 3 == 0)
    assert len(out["labels"]) == len(boxes) <= len(target["boxes"])
    assert out["size"].tolist() == list(image.shape[:2])


def test_images_without_boxes_pass_through():
    image = np.zeros((30, 40, 3), np.uint8)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    out_image, out = SSDTrainTransform(size=32)(image, empty)
    assert out_image.shape == (3, 32, 32) and out["boxes"].shape == (0, 4)


def test_zoom_out_fills_with_the_mean_and_crops_happen():
    torch.manual_seed(0)
    image = np.zeros((50, 50, 3), np.uint8)
    target = {"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "labels": torch.tensor([1])}
    transform = SSDTrainTransform(size=50, mean=(123, 117, 104))
    fills, shrunk = 0, 0
    for _ in range(40):
        out_image, out = transform(image, target)
        fills += bool((out_image.flatten(1) == torch.tensor([[123], [117], [104]])).all(0).any())
        shrunk += bool(len(out["boxes"]) and (out["boxes"][0, 2:] - out["boxes"][0, :2]).max() < 0.5)
    assert fills > 5 and shrunk > 3


def test_test_transform_resizes_and_normalises_exactly():
    image = np.zeros((100, 200, 3), np.uint8)
    target = {"boxes": torch.tensor([[20.0, 10.0, 100.0, 60.0]]), "labels": torch.tensor([3])}
    out_image, out = SSDTestTransform(size=300)(image, target)
    assert out_image.shape == (3, 300, 300)
    torch.testing.assert_close(out["boxes"], torch.tensor([[0.1, 0.1, 0.5, 0.6]]))
    out_image, out = SSDTestTransform(size=(640, 384))(image, target)
    assert out_image.shape == (3, 384, 640)
    torch.testing.assert_close(out["boxes"], torch.tensor([[0.1, 0.1, 0.5, 0.6]]))


@pytest.mark.parametrize("size", [96, (112, 64)])
def test_boxes_follow_the_pixels_through_zoom_crop_flip_and_resize(size):
    """A white rectangle on black: after every augmentation its box must frame the white pixels
    (square and non-square outputs, (W, H))."""
    image = np.zeros((120, 160, 3), np.uint8)
    image[30:90, 40:100] = 255
    target = {"boxes": torch.tensor([[40.0, 30.0, 100.0, 90.0]]), "labels": torch.tensor([1])}
    transform = SSDTrainTransform(size=size, mean=(0, 0, 0))
    width, height = (size, size) if isinstance(size, int) else size
    checked = 0
    for seed in range(60):
        torch.manual_seed(seed)
        out_image, out = transform(image, target)
        if not len(out["boxes"]):
            continue
        white = out_image.max(0).values > 100
        ys, xs = torch.nonzero(white, as_tuple=True)
        found = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert out_image.shape == (3, height, width)
        torch.testing.assert_close(out["boxes"][0] * torch.tensor([width, height, width, height]), found,
                                   atol=2.0, rtol=0)
        checked += 1
    assert checked > 40


def test_sample_patch_follows_the_min_iou_rule():
    from repssd.data.transforms import sample_patch
    rng = np.random.default_rng(0)
    boxes = np.array([[10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 190.0, 140.0]])
    for min_iou in (0.0, 0.1, 0.3, 0.5):
        for _ in range(20):
            patch = sample_patch(boxes, 200, 150, min_iou, rng)
            if patch is None:
                continue
            left, top, right, bottom = patch
            assert 0 <= left < right <= 200 and 0 <= top < bottom <= 150
            cx, cy = boxes[:, [0, 2]].mean(1), boxes[:, [1, 3]].mean(1)
            inside = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
            iw = np.clip(np.minimum(right, boxes[:, 2]) - np.maximum(left, boxes[:, 0]), 0, None)
            ih = np.clip(np.minimum(bottom, boxes[:, 3]) - np.maximum(top, boxes[:, 1]), 0, None)
            iou = iw * ih / ((right - left) * (bottom - top) + (boxes[:, 2:] - boxes[:, :2]).prod(1) - iw * ih)
            assert inside.any() and iou[inside].max() >= min_iou
    # a 20 x 20 box can never reach IoU 0.9 with a patch of at least 60 x 45
    assert sample_patch(boxes[:1], 200, 150, 0.9, rng) is None


def _frame(width=2000, height=1200, boxes=((900, 500, 960, 650),), ignore=None):
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
              "labels": torch.ones(len(boxes), dtype=torch.int64),
              "difficult": torch.zeros(len(boxes), dtype=torch.bool),
              "ignore": torch.tensor(ignore or [False] * len(boxes))}
    return np.full((height, width, 3), 90, np.uint8), target


def test_tile_crop_window_holds_a_person_at_the_tile_scale():
    image, target = _frame()
    transform = SSDTrainTransform(300, (127, 127, 127), tile=TileCrop((650, 650), jitter=(1.0, 1.0)))
    for seed in range(10):
        torch.manual_seed(seed)
        out, result = transform(image, target)
        assert out.shape == (3, 300, 300)
        box = result["boxes"].numpy()[0] * 300
        # the person (60 x 150 px) keeps its size at the tile's scale 300/650, wherever the window is
        np.testing.assert_allclose(box[2:] - box[:2], np.array([60, 150]) * 300 / 650, atol=1e-3)
        assert not result["ignore"][0]


def test_tile_crop_cut_people_become_ignore_regions_and_small_images_are_seen_whole():
    # two people 700 px apart: a 650-px window around one cuts or drops the other
    image, target = _frame(boxes=((100, 500, 160, 650), (700, 500, 760, 650)))
    tile = TileCrop((650, 650), jitter=(1.0, 1.0), cut=0.5)
    transform = SSDTrainTransform(300, (127, 127, 127), tile=tile)
    seen_cut = False
    for seed in range(40):
        torch.manual_seed(seed)
        _, result = transform(image, target)
        boxes = result["boxes"].numpy() * 300
        widths = boxes[:, 2] - boxes[:, 0]
        whole = np.isclose(widths, 60 * 300 / 650, atol=1e-3)
        # a box is an object only with at least half of it inside; otherwise it is an ignore region
        assert (result["ignore"].numpy() == (widths < 0.5 * 60 * 300 / 650 - 1e-6)).all()
        assert whole.any()
        seen_cut |= bool(result["ignore"].any())
    assert seen_cut
    small, small_target = _frame(width=500, height=400, boxes=((100, 100, 160, 250),))
    assert tile.window(small_target["boxes"].numpy(), np.array([True]), 500, 400, np.random.default_rng(0)) is None


def test_parse_tile_crop():
    assert parse_tile_crop("") is None
    assert parse_tile_crop("size=auto,jitter=0.8-1.2", auto_size=(650, 650)) == TileCrop((650, 650), (0.8, 1.2))
    assert parse_tile_crop("size=640x360,p=0.5,cut=0.3").size == (640, 360)
    for bad, message in [("jitter=1", "size= is required"), ("size=0", "size"), ("size=650,cut=2", "cut"),
                         ("size=650,zoom=2", "unknown key"), ("size=650,jitter=2-1", "jitter")]:
        with pytest.raises(ValueError, match=message):
            parse_tile_crop(bad, auto_size=(650, 650))
