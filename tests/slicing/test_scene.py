"""The scene estimate of sliced inference (repssd.slicing.scene): the height line from detections and
the band tiles it gives, on hand-built scenes whose answer is known."""
import numpy as np
import pytest

from repssd.slicing.scene import HeightFit, band_tiles, fit_heights


def people(rows: np.ndarray, intercept: float, slope: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Boxes (width 0.4 x height) whose feet are on ``rows`` and whose heights follow the line."""
    rng = np.random.default_rng(seed)
    height = (intercept + slope * rows) * (1 + noise * rng.standard_normal(len(rows)))
    x = rng.uniform(0, 1500, len(rows))
    return np.stack([x, rows - height, x + 0.4 * height, rows], 1)


def test_the_line_is_recovered_despite_outliers():
    rows = np.linspace(300, 1080, 40)
    boxes = people(rows, 20.0, 0.2, noise=0.03)
    boxes = np.concatenate([boxes, [[100, 200, 300, 900], [50, 850, 60, 860]]])  # a poster and a fragment
    scores = np.r_[np.full(40, 0.8), 0.9, 0.9]
    fit = fit_heights(boxes, scores)
    assert fit.count == 42 and abs(fit.slope - 0.2) < 0.01 and abs(fit.intercept - 20) < 6
    assert 0 < fit.spread < 0.15  # 3% noise: the 10% quantile falls short by about 4%


def test_people_cut_by_the_border_do_not_fake_a_slope():
    whole = people(np.array([300.0, 350, 420]), 120, 0.0)  # three people 120 px tall
    cut = np.array([[10, 0, 40, 100.0], [60, 0, 90, 200.0], [100, 0, 130, 280.0]])  # tops at row 0: h = feet
    fit = fit_heights(np.concatenate([whole, cut]), np.ones(6), image_height=480)
    assert fit.count == 3 and fit.slope == pytest.approx(0, abs=1e-9) and fit.intercept == pytest.approx(120)


def test_too_few_boxes_give_a_constant_and_none_give_none():
    assert fit_heights(np.zeros((0, 4)), np.zeros(0)) is None
    fit = fit_heights(np.array([[0, 0, 10, 50.0], [0, 100, 10, 180.0]]), np.array([0.9, 0.4]))
    assert fit.slope == 0 and fit.intercept == 50  # the weighted median: the surer box
    same_row = fit_heights(people(np.full(5, 500.0), 60, 0), np.ones(5))
    assert same_row.slope == 0 and same_row.intercept == pytest.approx(60)


def covered(tiles: np.ndarray, fit: HeightFit, image_height: int, target: float = 60.0) -> list[int]:
    """Rows whose people neither the whole-image pass nor any tile covering the row shows at ~target px."""
    bad = []
    for y in range(0, image_height, 10):
        if fit.at(y) * 300 / image_height >= target:
            continue
        over = tiles[(tiles[:, 1] <= y) & (tiles[:, 3] >= y)]
        if not len(over) or (fit.at(y) * 300 / (over[:, 2] - over[:, 0])).max() < 0.95 * target:
            bad.append(y)
    return bad


def test_bands_aim_the_least_person_at_the_target():
    fit = HeightFit(20.0, 0.2, 40)  # 20 px tall at the top row, 236 px at the bottom of a 1080p frame
    tiles = band_tiles(1080, 1920, fit, target=60.0, input_height=300)
    assert len(tiles) and (tiles[:, :2] >= 0).all() and (tiles[:, 2] <= 1920).all() and (tiles[:, 3] <= 1080).all()
    sides = tiles[:, 2] - tiles[:, 0]
    assert (sides == tiles[:, 3] - tiles[:, 1]).all()  # square
    assert covered(tiles, fit, 1080) == []
    assert sides[0] == 100 and sides[0] < sides[-1]  # 20 px people at the top: 100 px tiles (20 * 300 / 60)
    assert len(tiles) < 60  # fixed 100 px tiles everywhere would take 19 x 13 = 247


def test_an_upside_down_frame_puts_the_small_tiles_at_the_bottom():
    fit = HeightFit(236.0, -0.2, 40)
    tiles = band_tiles(1080, 1920, fit, target=60.0, input_height=300)
    sides = tiles[:, 2] - tiles[:, 0]
    assert sides[-1] < sides[0] and tiles[:, 3].max() == 1080 and covered(tiles, fit, 1080) == []


def test_tiles_scale_with_the_picture():
    fit = HeightFit(20.0, 0.2, 40)
    full = band_tiles(1080, 1920, fit, 60.0, 300, min_tile=1)
    third = band_tiles(360, 640, HeightFit(20.0 / 3, 0.2, 40), 60.0, 300, min_tile=1)
    assert np.median(third[:, 2] - third[:, 0]) == pytest.approx(np.median(full[:, 2] - full[:, 0]) / 3, rel=0.15)


def test_people_the_whole_image_shows_large_enough_need_no_tiles():
    assert band_tiles(480, 640, HeightFit(200.0, 0.0, 10), target=60.0, input_height=300).shape == (0, 4)


@pytest.mark.parametrize("height, width", [(200, 30000), (30000, 200), (1, 1)])
def test_extreme_shapes_give_tiles_inside_the_image(height, width):
    tiles = band_tiles(height, width, HeightFit(10.0, 0.001, 5), target=60.0, input_height=300)
    assert len(tiles) < 5000
    assert (tiles[:, 0] >= 0).all() and (tiles[:, 2] <= width).all() and (tiles[:, 3] <= height).all()
