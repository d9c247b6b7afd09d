"""CrowdHuman AP / MR^-2 / JI against a plain per-detection reference of the CrowdHuman toolkit's
rules (CrowdDet's lib/evaluate: compare_caltech, eval_AP, eval_MR, compute_JI_with_ignore), on
crowded scenes with ignore regions, and hand-built cases of what ignore regions do."""
import math

import numpy as np
import pytest

from repssd.eval.miss_rate import evaluate

from test_voc_eval import box

THRESHOLD = 0.5
MR_REFERENCES = [0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000]


def overlap(a, b, over="union"):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    if over == "first":
        return inter / area_a
    return inter / (area_a + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def reference_ap_mr(dets, gts):
    """The toolkit's rules, one detection and one GT at a time."""
    scored, objects_total = [], 0
    for det, gt in zip(dets, gts):
        objects = [list(b) for b, ig in zip(gt["boxes"], gt["ignore"]) if not ig]
        regions = [list(b) for b, ig in zip(gt["boxes"], gt["ignore"]) if ig]
        objects_total += len(objects)
        taken = set()
        for i in sorted(range(len(det["scores"])), key=lambda i: -det["scores"][i]):
            d = list(det["boxes"][i])
            best, best_iou = None, THRESHOLD
            for j, g in enumerate(objects):
                if j not in taken and overlap(d, g) > best_iou:
                    best, best_iou = j, overlap(d, g)
            if best is not None:
                taken.add(best)
                scored.append((det["scores"][i], 1))
            elif not any(overlap(d, r, "first") > THRESHOLD for r in regions):
                scored.append((det["scores"][i], 0))  # a false positive; on a region: not scored
    scored.sort(key=lambda item: -item[0])
    tp = fp = 0
    recall, precision, fppi = [], [], []
    for _, hit in scored:
        tp, fp = tp + hit, fp + (1 - hit)
        recall.append(tp / objects_total)
        precision.append(tp / (tp + fp))
        fppi.append(fp / len(gts))
    ap = sum((recall[i] - recall[i - 1]) * (precision[i] + precision[i - 1]) / 2 for i in range(1, len(recall)))
    picks = [next((i for i, f in enumerate(fppi) if f >= ref), len(fppi) - 1) for ref in MR_REFERENCES]
    mr = math.exp(sum(math.log(1 - recall[i]) if recall[i] < 1 else -math.inf for i in picks) / len(picks))
    return ap, mr


def best_matching(edges, i=0, used=frozenset()):
    """Maximum total weight of a one-to-one matching; edges[i] = {gt: weight} of detection i.
    Returns (weight, matched detections, matched GT)."""
    if i == len(edges):
        return 0.0, frozenset(), frozenset()
    best = best_matching(edges, i + 1, used)  # detection i unmatched
    for j, weight in edges[i].items():
        if j not in used:
            rest, dets, gts = best_matching(edges, i + 1, used | {j})
            if rest + weight > best[0]:
                best = (rest + weight, dets | {i}, gts | {j})
    return best


def reference_ji(dets, gts):
    means = []
    for t in range(10):
        ratios = []
        for det, gt in zip(dets, gts):
            boxes = [list(b) for b, s in zip(det["boxes"], det["scores"]) if s > t / 10]
            objects = [list(b) for b, ig in zip(gt["boxes"], gt["ignore"]) if not ig]
            regions = [list(b) for b, ig in zip(gt["boxes"], gt["ignore"]) if ig]
            edges = [{j: overlap(d, g) for j, g in enumerate(objects) if overlap(d, g) > THRESHOLD} for d in boxes]
            _, matched_dets, matched_gts = best_matching(edges)
            inside = lambda b: any(overlap(b, r, "first") > THRESHOLD for r in regions)  # noqa: E731
            n = len(boxes) - sum(inside(b) for i, b in enumerate(boxes) if i not in matched_dets)
            m = len(objects) - sum(inside(g) for j, g in enumerate(objects) if j not in matched_gts)
            k = len(matched_dets)
            if m or n:
                ratios.append(k / (m + n - k))
        means.append(sum(ratios) / len(ratios) if ratios else 0.0)
    return max(means)


def crowd_scene(seed, images=12):
    """Pedestrian crowds (overlapping boxes) with ignore regions, duplicate and stray detections,
    detections on the regions and objects inside regions."""
    rng = np.random.default_rng(seed)
    dets, gts = [], []
    for _ in range(images):
        n = int(rng.integers(0, 7))
        x = rng.uniform(0, 400, n).cumsum() % 500
        y = rng.uniform(0, 200, n)
        w, h = rng.uniform(20, 60, n), rng.uniform(60, 160, n)
        people = np.stack([x, y, x + w, y + h], 1) if n else np.zeros((0, 4))
        people = np.concatenate([people, people[: n // 2] + rng.normal(0, 10, (n // 2, 4))])  # crowd pairs
        regions = []
        for _ in range(int(rng.integers(0, 3))):
            rx, ry = rng.uniform(0, 450, 2)
            regions.append([rx, ry, rx + rng.uniform(60, 200), ry + rng.uniform(60, 200)])
        regions = np.array(regions).reshape(-1, 4)
        inside = [[r[0] + 5, r[1] + 5, r[0] + 35, r[1] + 55] for r in regions[:1]]  # an object in a region
        people = np.concatenate([people, np.array(inside).reshape(-1, 4)])
        people[:, 2:] = np.maximum(people[:, 2:], people[:, :2] + 4)
        boxes = np.concatenate([people, regions])
        ignore = np.arange(len(boxes)) >= len(people)
        m = int(rng.integers(0, 10))
        pick = rng.integers(0, max(len(boxes), 1), m)
        base = boxes[pick] if len(boxes) else rng.uniform(0, 400, (m, 4))
        small = np.concatenate([base[:, :2] + 5, base[:, :2] + 45], 1)  # inside a region when base is one
        det = np.where((ignore[pick] if len(boxes) else np.zeros(m, bool))[:, None], small,
                       base + rng.normal(0, 12, (m, 4)))
        det = np.concatenate([det, rng.uniform(0, 450, (2, 2)).repeat(2, 1) + [0, 0, 40, 90]])  # strays
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 2)
        scores = np.round(rng.random(len(det)), 3)
        gts.append({"boxes": boxes, "labels": np.ones(len(boxes), int), "ignore": ignore})
        dets.append({"boxes": det, "scores": scores, "labels": np.ones(len(det), int)})
    return dets, gts


@pytest.mark.parametrize("seed", range(6))
def test_ap_mr_ji_equal_the_toolkit_rules_on_crowds_with_ignore_regions(seed):
    dets, gts = crowd_scene(seed)
    assert any(g["ignore"].any() for g in gts)
    result = evaluate(dets, gts)
    ap, mr = reference_ap_mr(dets, gts)
    assert result["ap"] == pytest.approx(ap, abs=1e-12)
    assert result["mr"] == pytest.approx(mr, abs=1e-12)
    assert result["ji"] == pytest.approx(reference_ji(dets, gts), abs=1e-12)
    assert result["npos"] == sum(int((~g["ignore"]).sum()) for g in gts)


def test_a_detection_on_an_ignore_region_is_neither_true_nor_false_positive():
    gts = [{"boxes": [box(0, 0), box(200, 200, 150, 150)], "labels": [1, 1], "ignore": [False, True]}]
    hit = {"boxes": [box(0, 0)], "scores": [0.9], "labels": [1]}
    on_region = {"boxes": [box(0, 0), box(210, 210, 40, 40)], "scores": [0.9, 0.95], "labels": [1, 1]}
    # box(210, 210, 40, 40) lies wholly inside the region (IoA 1) though its IoU with it is small
    assert evaluate([on_region], gts) == evaluate([hit], gts)
    assert evaluate([hit], gts)["mr"] == 0.0
    # without the region the same detection is a false positive ranked first: at every FPPI
    # reference the miss rate is still 1
    plain = [{"boxes": [box(0, 0)], "labels": [1]}]
    assert evaluate([on_region], plain)["mr"] == 1.0


def test_ji_drops_unmatched_detections_and_objects_inside_ignore_regions():
    region = box(200, 0, 200, 200)
    gts = [{"boxes": [box(0, 0), box(210, 10), region], "labels": [1, 1, 1], "ignore": [False, False, True]}]
    # one match; an unmatched detection inside the region; the object inside the region missed
    dets = [{"boxes": [box(0, 0), box(300, 100, 40, 40)], "scores": [0.9, 0.9], "labels": [1, 1]}]
    # k = 1, n = 2 - 1 (inside), m = 2 - 1 (the missed object lies in the region): JI 1
    assert evaluate(dets, gts)["ji"] == pytest.approx(1.0)
    # without the region both count: k = 1, n = 2, m = 2 -> 1 / 3
    no_region = [{"boxes": [box(0, 0), box(210, 10)], "labels": [1, 1]}]
    assert evaluate(dets, no_region)["ji"] == pytest.approx(1 / 3)
    # a detection that does match the object inside the region is a match (k = 2, n = m = 2)
    both = [{"boxes": [box(0, 0), box(210, 10)], "scores": [0.9, 0.8], "labels": [1, 1]}]
    assert evaluate(both, gts)["ji"] == pytest.approx(1.0)


def test_ji_uses_scores_strictly_above_the_threshold_and_maximum_weight_matching():
    gts = [{"boxes": [box(0, 0)], "labels": [1]}]
    # score exactly 0.5: kept at thresholds 0 .. 0.4 only; the JI there is 1 either way
    dets = [{"boxes": [box(0, 0)], "scores": [0.5], "labels": [1]}]
    assert evaluate(dets, gts)["ji"] == pytest.approx(1.0)
    # two detections over one of two GT: one-to-one, one match (k = 1, n = 2, m = 2)
    gts = [{"boxes": [box(0, 0), box(8, 0)], "labels": [1, 1]}]
    dets = [{"boxes": [box(1, 0), box(2, 0)], "scores": [0.9, 0.9], "labels": [1, 1]}]
    assert evaluate(dets, gts)["ji"] == pytest.approx(1 / 3)
