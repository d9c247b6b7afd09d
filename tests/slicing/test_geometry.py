import numpy as np
import pytest

from repssd.slicing import Slicing, auto_tile_size, parse_tile_size, tile_boxes, tile_starts


def test_tiles_of_a_1080p_frame_by_hand():
    # 540 px, 20% overlap: steps of 540 - 108 = 432; the last tile moved back to end at the border
    assert tile_starts(1920, 540, 0.2) == [0, 432, 864, 1296, 1380]
    assert tile_starts(1080, 540, 0.2) == [0, 432, 540]
    tiles = tile_boxes(1080, 1920, (540, 540), 0.2)
    assert tiles.shape == (15, 4)
    assert tiles[:5].tolist() == [[0, 0, 540, 540], [432, 0, 972, 540], [864, 0, 1404, 540], [1296, 0, 1836, 540],
                                  [1380, 0, 1920, 540]]
    assert tiles[-1].tolist() == [1380, 540, 1920, 1080]
    assert ((tiles[:, 2:] - tiles[:, :2]) == 540).all()


def test_a_tile_larger_than_the_image_is_the_image():
    assert tile_boxes(100, 80, (300, 500), 0.2).tolist() == [[0, 0, 80, 100]]
    assert tile_boxes(1, 1, (300, 300), 0.2).tolist() == [[0, 0, 1, 1]]


@pytest.mark.parametrize("height,width,size,overlap", [
    (1080, 1920, (512, 512), 0.2), (1080, 1920, (540, 540), 0.2), (480, 640, (256, 200), 0.35), (37, 1001, (10, 64), 0.0),
    (1080, 1920, (600, 600), 0.1), (5, 7, (9, 9), 0.5), (12000, 20000, (1024, 768), 0.25), (300, 300, (300, 300), 0.2)])
def test_tiles_equal_sahis(height, width, size, overlap):
    slicing = pytest.importorskip("sahi.slicing")
    expected = slicing.get_slice_bboxes(height, width, slice_height=size[1], slice_width=size[0],
                                        overlap_height_ratio=overlap, overlap_width_ratio=overlap)
    assert tile_boxes(height, width, size, overlap).tolist() == expected


def test_tiles_equal_sahis_on_random_sizes():
    slicing = pytest.importorskip("sahi.slicing")
    rng = np.random.default_rng(0)
    for _ in range(300):
        height, width = rng.integers(1, 3000, 2)
        size = rng.integers(1, 1200, 2)
        overlap = float(rng.choice([0.0, 0.1, 0.2, 0.25, 0.5, 0.9, rng.uniform(0, 0.95)]))
        expected = slicing.get_slice_bboxes(int(height), int(width), slice_height=int(size[1]), slice_width=int(size[0]),
                                            overlap_height_ratio=overlap, overlap_width_ratio=overlap)
        assert tile_boxes(int(height), int(width), (int(size[0]), int(size[1])), overlap).tolist() == expected


def test_whole_image_pass_is_appended_only_with_several_tiles():
    assert Slicing().tiles(480, 640, (300, 300), 0.1).tolist() == [[0, 0, 640, 480]]  # auto: not sliced
    tiles = Slicing(size=540).tiles(1080, 1920, (300, 300), 0.1)
    assert tiles.shape == (16, 4) and tiles[-1].tolist() == [0, 0, 1920, 1080]
    assert Slicing(size=540, full_image=False).tiles(1080, 1920, (300, 300), 0.1).shape == (15, 4)
    assert Slicing(size=2000).tiles(1080, 1920, (300, 300), 0.1).tolist() == [[0, 0, 1920, 1080]]


def test_auto_tile_size_sizes_a_person_to_the_smallest_anchor():
    # a person 65 px tall should come out 0.1 of the input (the smallest anchor): 650-px tiles
    assert auto_tile_size(1080, 1920, (300, 300), 0.1) == (650, 650)
    assert auto_tile_size(1080, 1920, (640, 384), 0.1) == (1083, 650)  # the model input's aspect
    assert auto_tile_size(1080, 1920, (300, 300), 0.2) == (325, 325)  # larger anchors, smaller tiles
    # an image that already shows a 65-px person at anchor size is not sliced
    assert auto_tile_size(480, 640, (300, 300), 0.1) == (640, 480)
    assert auto_tile_size(1, 1, (300, 300), 0.1) == (1, 1)
    assert auto_tile_size(600, 3000, (300, 300), 0.1) == (650, 650)  # a panorama: cut along its width


@pytest.mark.parametrize("text,expected", [("512", (512, 512)), ("640x360", (640, 360)), ("AUTO", "auto"),
                                           (300, (300, 300)), ((64, 32), (64, 32))])
def test_parse_tile_size(text, expected):
    assert parse_tile_size(text) == expected


@pytest.mark.parametrize("text", ["0", "-5", "12x0", "axb", "1x2x3", ""])
def test_bad_tile_sizes_are_refused(text):
    with pytest.raises(ValueError, match="tile size"):
        parse_tile_size(text)


@pytest.mark.parametrize("options,message", [({"overlap": 1.0}, "overlap"), ({"overlap": -0.1}, "overlap"),
                                             ({"merge": "wbf"}, "unknown merge"), ({"metric": "giou"}, "metric"),
                                             ({"merge": "crowd", "metric": "ios"}, "metric must be iou"),
                                             ({"thresh": 0.0}, "threshold"), ({"size": 0}, "tile size")])
def test_bad_slicing_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        Slicing(**options)
