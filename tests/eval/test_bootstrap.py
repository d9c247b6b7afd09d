"""Paired bootstrap over images: weighted AP equals the devkit AP of the resampled image list."""
import numpy as np
import pytest

from repssd.eval import crowd, voc
from repssd.eval.bootstrap import (detection_outcomes, paired_bootstrap, paired_count_bootstrap, resampled_map,
                                   resampled_miss_rate)
from repssd.eval.miss_rate import log_average_miss_rate


def scenes(seed, images=40, noise=5.0):
    """GT with crowds and difficult objects; detections = noisy GT plus clutter, random scores."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(images):
        n = int(rng.integers(0, 8))
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(15, 60, (n, 2))], 1)
        gts.append({"boxes": boxes, "labels": rng.integers(1, 3, n), "difficult": rng.random(n) < 0.1})
        clutter = rng.uniform(0, 200, (4, 2))
        found = boxes + rng.normal(0, noise, boxes.shape)
        d = np.concatenate([found, np.concatenate([clutter, clutter + 30], 1)])
        labels = np.concatenate([gts[-1]["labels"], rng.integers(1, 3, 4)])
        dets.append({"boxes": d, "labels": labels, "scores": rng.random(len(d))})
    return dets, gts


@pytest.mark.parametrize("use_07", [True, False])
@pytest.mark.parametrize("crowd_iou", [None, 0.1])
def test_unit_weights_equal_the_devkit_map(use_07, crowd_iou):
    dets, gts = scenes(0)
    outcomes = detection_outcomes(dets, gts, crowd_iou=crowd_iou)
    expected = (voc.evaluate(dets, gts, use_07_metric=use_07)["map"] if crowd_iou is None
                else crowd.evaluate(dets, gts, crowd_iou, use_07_metric=use_07)["map"])
    assert resampled_map(outcomes, np.ones((1, len(gts))), use_07)[0] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_weights_equal_evaluating_the_resampled_image_list(seed):
    dets, gts = scenes(seed)
    rng = np.random.default_rng(100 + seed)
    picks = [rng.integers(0, len(gts), len(gts)) for _ in range(4)]
    weights = np.stack([np.bincount(p, minlength=len(gts)) for p in picks])
    got = resampled_map(detection_outcomes(dets, gts), weights)
    expected = [voc.evaluate([dets[i] for i in p], [gts[i] for i in p])["map"] for p in picks]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def literal_miss_rate(dets, gts):
    """The toolkit's log-average miss rate of label 1 over the VOC-matched detections, as a list."""
    o = detection_outcomes(dets, gts)
    mine = o.labels == 1
    return log_average_miss_rate(np.cumsum(o.fp[mine]), np.cumsum(o.tp[mine]), int(o.npos[:, 1].sum()), len(gts))


@pytest.mark.parametrize("seed", range(3))
def test_weighted_miss_rate_equals_the_resampled_image_list(seed):
    dets, gts = scenes(seed)
    outcomes = detection_outcomes(dets, gts)
    assert resampled_miss_rate(outcomes, np.ones((1, len(gts))))[0] == pytest.approx(literal_miss_rate(dets, gts))
    rng = np.random.default_rng(200 + seed)
    picks = [rng.integers(0, len(gts), len(gts)) for _ in range(4)]
    weights = np.stack([np.bincount(p, minlength=len(gts)) for p in picks])
    expected = [literal_miss_rate([dets[i] for i in p], [gts[i] for i in p]) for p in picks]
    np.testing.assert_allclose(resampled_miss_rate(outcomes, weights), expected, atol=1e-12)
    assert 0 < min(expected) and max(expected) < 1  # the references were reached, not the fallbacks


def test_paired_bootstrap_of_the_miss_rate():
    dets, gts = scenes(1, images=80, noise=2.0)
    worse, _ = scenes(1, images=80, noise=12.0)
    result = paired_bootstrap([detection_outcomes(dets, gts)], [detection_outcomes(worse, gts)], num_samples=200,
                              metric="mr")
    assert result["diff"] == pytest.approx(literal_miss_rate(dets, gts) - literal_miss_rate(worse, gts))
    assert result["low"] <= result["diff"] <= result["high"] < 0  # the better model misses fewer
    with pytest.raises(ValueError, match="metric must be"):
        paired_bootstrap([detection_outcomes(dets, gts)], [detection_outcomes(dets, gts)], metric="ap")


def test_paired_bootstrap_of_a_better_model():
    dets, gts = scenes(1, images=80, noise=2.0)
    worse, _ = scenes(1, images=80, noise=12.0)  # same GT, sloppier boxes
    good = [detection_outcomes(dets, gts)]
    bad = [detection_outcomes(worse, gts)]
    result = paired_bootstrap(good, bad, num_samples=300)
    observed = voc.evaluate(dets, gts)["map"] - voc.evaluate(worse, gts)["map"]
    assert result["diff"] == pytest.approx(observed)
    assert 0 < result["low"] < result["diff"] < result["high"] and result["p_le_0"] == 0.0
    same = paired_bootstrap(good, good, num_samples=50)
    assert same["low"] == same["high"] == same["diff"] == 0.0


def test_paired_bootstrap_refuses_unpaired_inputs():
    dets, gts = scenes(2)
    one = detection_outcomes(dets, gts)
    with pytest.raises(ValueError, match="same number of seeds"):
        paired_bootstrap([one, one], [one])
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap([one], [detection_outcomes(dets[:-1], gts[:-1])])


def test_paired_count_bootstrap_resamples_images_with_seeds_paired():
    rng = np.random.default_rng(4)
    a, b = rng.poisson(2.0, (3, 25)), rng.poisson(3.0, (3, 25))  # 3 seeds x 25 images
    result = paired_count_bootstrap(a, b, num_samples=200, seed=5)
    assert result["diff"] == pytest.approx(np.mean(a.sum(1) - b.sum(1)))
    assert result["a"] == pytest.approx(a.sum(1).mean()) and result["b"] == pytest.approx(b.sum(1).mean())
    draws = np.random.default_rng(5)  # the literal definition: resample image indices, same ones for every seed
    literal = []
    for _ in range(200):
        idx = draws.integers(0, 25, 25)
        literal.append(np.mean([a[s, idx].sum() - b[s, idx].sum() for s in range(3)]))
    assert result["low"] == pytest.approx(np.quantile(literal, 0.025))
    assert result["high"] == pytest.approx(np.quantile(literal, 0.975))
    assert result["p_le_0"] == pytest.approx(np.mean(np.array(literal) <= 0))
    same = paired_count_bootstrap(a, a, num_samples=30)
    assert same["low"] == same["high"] == same["diff"] == 0.0
    with pytest.raises(ValueError, match="equal shape"):
        paired_count_bootstrap(a, b[:2])
