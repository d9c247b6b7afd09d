"""VOC AP against the devkit's per-detection loop, written here, plus hand-computed cases."""
import numpy as np
import pytest

from repssd.eval.voc import average_precision, evaluate


def devkit_class_ap(detections, ground_truth, label, iou_threshold=0.5, use_07=True, plus_one=True):
    """py-faster-rcnn's voc_eval, loop for loop (stable sort for ties)."""
    one = 1.0 if plus_one else 0.0
    records, npos = {}, 0
    for i, gt in enumerate(ground_truth):
        mine = np.asarray(gt["labels"]) == label
        difficult = np.asarray(gt.get("difficult", np.zeros(len(mine), bool)), bool)[mine]
        records[i] = {"bbox": np.asarray(gt["boxes"], float).reshape(-1, 4)[mine], "difficult": difficult,
                      "det": [False] * int(mine.sum())}
        npos += int((~difficult).sum())
    rows = [(i, s, b) for i, d in enumerate(detections) for b, s, lab in zip(np.asarray(d["boxes"]).reshape(-1, 4),
            d["scores"], d["labels"]) if lab == label]
    order = np.argsort([-r[1] for r in rows], kind="stable")
    tp, fp = np.zeros(len(rows)), np.zeros(len(rows))
    for d, k in enumerate(order):
        image, _, bb = rows[k]
        r = records[image]
        ovmax, jmax = -np.inf, 0
        bbgt = r["bbox"]
        if bbgt.size:
            iw = np.maximum(np.minimum(bbgt[:, 2], bb[2]) - np.maximum(bbgt[:, 0], bb[0]) + one, 0)
            ih = np.maximum(np.minimum(bbgt[:, 3], bb[3]) - np.maximum(bbgt[:, 1], bb[1]) + one, 0)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + one) * (bb[3] - bb[1] + one)
                   + (bbgt[:, 2] - bbgt[:, 0] + one) * (bbgt[:, 3] - bbgt[:, 1] + one) - inters)
            overlaps = inters / uni
            ovmax, jmax = np.max(overlaps), int(np.argmax(overlaps))
        if ovmax > iou_threshold:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[d] = 1.0
                    r["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return average_precision(rec, prec, use_07), npos


def random_scene(seed, images=25, classes=3):
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(images):
        n = rng.integers(0, 8)
        xy = rng.uniform(0, 300, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 120, (n, 2))], 1)
        gts.append({"boxes": boxes, "labels": rng.integers(1, classes + 1, n), "difficult": rng.random(n) < 0.15})
        m = rng.integers(0, 12)
        pick = rng.integers(0, max(n, 1), m)
        base = boxes[pick] if n else rng.uniform(0, 300, (m, 4))
        noisy = base + rng.normal(0, 8, (m, 4))
        noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2] + 1)
        labels = gts[-1]["labels"][pick] if n else rng.integers(1, classes + 1, m)
        labels = np.where(rng.random(m) < 0.1, rng.integers(1, classes + 1, m), labels)
        dets.append({"boxes": noisy, "scores": rng.random(m), "labels": labels})
    return dets, gts


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("use_07, plus_one", [(True, True), (False, True), (False, False)])
def test_equals_the_devkit_loop(seed, use_07, plus_one):
    dets, gts = random_scene(seed)
    result = evaluate(dets, gts, use_07_metric=use_07, plus_one=plus_one)
    expected = {}
    for label in (1, 2, 3):
        ap, npos = devkit_class_ap(dets, gts, label, use_07=use_07, plus_one=plus_one)
        if npos:
            expected[label] = ap
    assert result["ap"].keys() == expected.keys()
    for label, ap in expected.items():
        assert result["ap"][label] == pytest.approx(ap, abs=1e-12)
    assert result["map"] == pytest.approx(np.mean(list(expected.values())), abs=1e-12)


def box(x, y, w=10, h=10):
    return [x, y, x + w, y + h]


def test_perfect_detections_give_one():
    gts = [{"boxes": [box(0, 0), box(50, 50)], "labels": [1, 2], "difficult": [False, False]}]
    dets = [{"boxes": [box(0, 0), box(50, 50)], "scores": [0.9, 0.8], "labels": [1, 2]}]
    for use_07 in (True, False):
        assert evaluate(dets, gts, use_07_metric=use_07)["map"] == 1.0


def test_a_false_positive_above_lowers_ap_by_the_hand_computed_amount():
    gts = [{"boxes": [box(0, 0), box(50, 50)], "labels": [1, 1], "difficult": [False, False]}]
    dets = [{"boxes": [box(0, 0), box(200, 200), box(50, 50)], "scores": [0.9, 0.8, 0.7], "labels": [1, 1, 1]}]
    # ranks: TP (r .5, p 1), FP (r .5, p .5), TP (r 1, p 2/3). Area: .5 * 1 + .5 * 2/3 = 5/6.
    assert evaluate(dets, gts, use_07_metric=False)["ap"][1] == pytest.approx(5 / 6)
    # 11-point: t = 0..0.5 -> 1 (6 points), t = 0.6..1 -> 2/3 (5 points)
    assert evaluate(dets, gts, use_07_metric=True)["ap"][1] == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_duplicates_are_false_positives():
    gts = [{"boxes": [box(0, 0)], "labels": [1], "difficult": [False]}]
    dets = [{"boxes": [box(0, 0), box(1, 0)], "scores": [0.9, 0.8], "labels": [1, 1]}]
    result = evaluate(dets, gts, use_07_metric=False)
    rec, prec = result["curves"][1]
    assert rec.tolist() == [1.0, 1.0] and prec.tolist() == [1.0, 0.5] and result["ap"][1] == 1.0


def test_difficult_and_ignored_gt_change_nothing():
    dets, gts = random_scene(7)
    base = evaluate(dets, gts)
    extra_dets, extra_gts = [], []
    for d, g in zip(dets, gts):  # a difficult GT and an ignore region, each with a detection on it
        extra_gts.append({"boxes": np.concatenate([g["boxes"].reshape(-1, 4), [box(500, 500), box(700, 700)]]),
                          "labels": np.concatenate([g["labels"], [1, 1]]),
                          "difficult": np.concatenate([g["difficult"], [True, False]]),
                          "ignore": np.concatenate([np.zeros(len(g["labels"]), bool), [False, True]])})
        extra_dets.append({"boxes": np.concatenate([d["boxes"].reshape(-1, 4), [box(500, 500), box(700, 700)]]),
                           "scores": np.concatenate([d["scores"], [0.99, 0.98]]),
                           "labels": np.concatenate([d["labels"], [1, 1]])})
    assert evaluate(extra_dets, extra_gts)["ap"] == base["ap"]


def test_classes_without_gt_or_without_detections():
    gts = [{"boxes": [box(0, 0), box(30, 30)], "labels": [1, 2], "difficult": [False, True]}]
    dets = [{"boxes": [box(60, 60)], "scores": [0.5], "labels": [3]}]
    result = evaluate(dets, gts)
    assert result["ap"] == {1: 0.0}  # class 2 has only a difficult GT, class 3 none: left out
    assert evaluate([{"boxes": np.zeros((0, 4)), "scores": [], "labels": []}], gts)["map"] == 0.0


def test_scale_vectorised_path_handles_many_gt_per_image():
    dets, gts = random_scene(11, images=3)
    gts[0] = {"boxes": np.tile([box(i, i) for i in range(60)], (1, 1)), "labels": np.ones(60, int),
              "difficult": np.zeros(60, bool)}
    result = evaluate(dets, gts)
    assert result["ap"][1] == pytest.approx(devkit_class_ap(dets, gts, 1)[0], abs=1e-12)
