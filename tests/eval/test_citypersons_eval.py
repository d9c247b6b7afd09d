"""CityPersons MR^-2 against the official script's own output (fixture made by running
cvgroup-njust/CityPersons' eval_MR_multisetup.py, see tests/fixtures/make_citypersons_reference.py),
against a loop-for-loop transcription of it on random scenes, and on hand-computed cases."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from citypersons_reference import miss_rate as reference_miss_rate
from repssd.eval.citypersons import OFFICIAL_NAMES, SETUPS, evaluate, match_setups

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "citypersons_eval_reference.json").read_text())
SCENARIOS = {s["name"]: s for s in FIXTURE["scenarios"]}
LABELS = {**OFFICIAL_NAMES, "Partial": "Partial", "Bare": "Bare"}  # ours -> the fixture's setup labels


def xyxy(rows) -> np.ndarray:
    rows = np.asarray(rows, np.float64).reshape(-1, 4)
    return np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:]], axis=1)


def repssd_inputs(scenario):
    """The fixture's xywh rows as repssd's per-image dicts (xyxy)."""
    gt = np.asarray(scenario["gt"], np.float64).reshape(-1, 8)
    det = np.asarray(scenario["dets"], np.float64).reshape(-1, 7)
    truth, found = [], []
    for i in range(scenario["num_images"]):
        g, d = gt[gt[:, 0] == i], det[det[:, 0] == i]
        truth.append({"boxes": xyxy(g[:, 1:5]), "labels": g[:, 7].astype(np.int64), "ignore": g[:, 5] > 0,
                      "visibility": g[:, 6]})
        found.append({"boxes": xyxy(d[:, 1:5]), "scores": d[:, 5], "labels": d[:, 6].astype(np.int64)})
    return found, truth


def reference_rows(scenario):
    """The fixture's category-1 rows per image, as the transcription takes them."""
    gts = [[] for _ in range(scenario["num_images"])]
    dts = [[] for _ in range(scenario["num_images"])]
    for i, x, y, w, h, ignore, vis, cat in scenario["gt"]:
        if cat == 1:
            gts[int(i)].append((x, y, w, h, ignore, vis))
    for i, x, y, w, h, score, cat in scenario["dets"]:
        if cat == 1:
            dts[int(i)].append((x, y, w, h, score))
    return gts, dts


def same_mr(ours: float, official: float) -> bool:
    return math.isnan(ours) if official == -1 else abs(ours - official) <= 1e-6


@pytest.mark.parametrize("name", SCENARIOS)
def test_matches_official_script(name):
    scenario = SCENARIOS[name]
    result = evaluate(*repssd_inputs(scenario))
    assert result["num_images"] == scenario["num_images"]
    for ours, label in LABELS.items():
        assert same_mr(result["mr"][ours], scenario["mr"][label]), (ours, result["mr"][ours], scenario["mr"][label])
        recall = np.asarray(scenario["recall"][label])
        expected = [] if (recall == -1).all() else (1 - recall).tolist()
        np.testing.assert_allclose(result["miss_at_fppi"][ours], expected, atol=1e-12)


@pytest.mark.parametrize("name", SCENARIOS)
def test_transcription_matches_official_script(name):
    scenario = SCENARIOS[name]
    gts, dts = reference_rows(scenario)
    for ours, label in LABELS.items():
        mr, recall = reference_miss_rate(gts, dts, *SETUPS[ours])
        assert mr == pytest.approx(scenario["mr"][label], abs=1e-12)
        assert recall == pytest.approx(scenario["recall"][label], abs=1e-12)


QUARTERS = st.integers(0, 480).map(lambda v: v / 4)
HEIGHTS = st.one_of(st.sampled_from([15.75, 16, 20, 40, 49.75, 50, 62.5, 75, 75.25, 93.75]),
                    st.integers(8, 120).map(float))
VISIBILITY = st.integers(0, 1000).map(lambda v: v / 1000)  # not within float32 rounding of a bound
SCORES = st.one_of(st.sampled_from([0.3, 0.5, 0.9]), st.floats(0, 1))


@st.composite
def scenes(draw):
    """Small crowded scenes: per image GT ``(x, y, w, h, ignore, vis)`` and detections
    ``(x, y, w, h, score)``, half of them near a GT, in quarter pixels."""
    gts, dts = [], []
    for _ in range(draw(st.integers(1, 6))):
        gt = [(draw(QUARTERS), draw(QUARTERS), draw(HEIGHTS) * 0.5, h, int(draw(st.booleans()) and draw(st.booleans())),
               draw(VISIBILITY)) for h in draw(st.lists(HEIGHTS, max_size=5))]
        dt = []
        for _ in range(draw(st.integers(0, 6))):
            if gt and draw(st.booleans()):
                x, y, w, h = draw(st.sampled_from(gt))[:4]
                dx, dy, dh = (draw(st.integers(-12, 12)) / 4 for _ in range(3))
                dt.append((x + dx, y + dy, w, max(h + dh, 1.0), draw(SCORES)))
            else:
                dt.append((draw(QUARTERS), draw(QUARTERS), 20.0, draw(HEIGHTS), draw(SCORES)))
        gts.append(gt)
        dts.append(dt)
    return gts, dts


@settings(max_examples=60, deadline=None)
@given(scenes())
def test_matches_transcription_on_random_scenes(scene):
    gts, dts = scene
    truth = [{"boxes": xyxy([g[:4] for g in gt]), "labels": np.ones(len(gt), np.int64),
              "ignore": np.array([g[4] for g in gt], bool), "visibility": np.array([g[5] for g in gt])} for gt in gts]
    found = [{"boxes": xyxy([d[:4] for d in dt]), "scores": np.array([d[4] for d in dt]),
              "labels": np.ones(len(dt), np.int64)} for dt in dts]
    result = evaluate(found, truth)
    for name, (heights, visible) in SETUPS.items():
        mr, _ = reference_miss_rate(gts, dts, heights, visible)
        assert same_mr(result["mr"][name], mr), (name, result["mr"][name], mr)


def scene(gt, dets, images=1, visibility=None, ignore=None):
    """One scored image (xywh rows; GT ``ignore`` flags) plus ``images - 1`` empty ones."""
    truth = [{"boxes": xyxy(gt), "labels": np.ones(len(gt), np.int64),
              "ignore": np.array(ignore or [0] * len(gt), bool),
              **({"visibility": np.array(visibility)} if visibility else {})}]
    found = [{"boxes": xyxy([d[:4] for d in dets]), "scores": np.array([d[4] for d in dets]),
              "labels": np.ones(len(dets), np.int64)}]
    empty = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)}
    return found + [empty] * (images - 1), truth + [empty] * (images - 1)


A, B, C = (0, 0, 40, 100), (100, 0, 40, 100), (200, 0, 40, 100)
TP_FP_TP = math.exp((8 * math.log(2 / 3) + math.log(1 / 3)) / 9)  # 1 image, 3 GT: TP, FP, TP


def test_detection_on_ignore_region_is_neither_true_nor_false_positive():
    region = (300, 0, 200, 200)
    inside = (340, 40, 40, 100, 0.8)  # intersection over its own area 1, IoU 0.1 with the region
    dets = [(*A, 0.9), inside, (*B, 0.7)]
    assert evaluate(*scene([A, B, C, region], dets, ignore=[0, 0, 0, 1]))["mr"]["Reasonable"] == pytest.approx(1 / 3)
    assert evaluate(*scene([A, B, C], dets))["mr"]["Reasonable"] == pytest.approx(TP_FP_TP)


@pytest.mark.parametrize("setup, gt_height, det_height, expected", [
    ("Reasonable", 100, 39.75, 1 / 3), ("Reasonable", 100, 40, TP_FP_TP),  # kept from 50 / 1.25
    ("Reasonable_small", 60, 93.75, 1 / 3), ("Reasonable_small", 60, 93.5, TP_FP_TP)])  # below 75 * 1.25
def test_detections_outside_the_height_filter_are_dropped(setup, gt_height, det_height, expected):
    gt = [(x, 0, 40, gt_height) for x in (0, 100, 200)]
    dets = [(*gt[0], 0.9), (300, 0, 20, det_height, 0.8), (*gt[1], 0.7)]  # the middle one hits nothing
    assert evaluate(*scene(gt, dets))["mr"][setup] == pytest.approx(expected)


def test_short_person_is_ignored_in_reasonable_but_counted_in_all():
    short = (100, 0, 20, 49)
    result = evaluate(*scene([A, short], [(*A, 0.9), (*short, 0.95)], visibility=[1.0, 1.0]))
    assert result["npos"]["Reasonable"] == 1 and result["npos"]["All"] == 2
    assert result["mr"]["Reasonable"] == 0.0 and result["mr"]["All"] == 0.0  # on the short one: ignored, not FP
    result = evaluate(*scene([A, short], [(*A, 0.9)]))
    assert result["mr"]["Reasonable"] == 0.0 and result["mr"]["All"] == pytest.approx(0.5)


def test_recall_of_final_detection_where_the_first_is_a_false_positive():
    # 10 images: the false positive alone reaches FPPI 0.1, above the references 0.01 .. 0.0562,
    # whose index -1 reads the final recall (0.5), not 0: MR 0.5, not 0.5 ** (5 / 9)
    result = evaluate(*scene([A, B], [(300, 0, 40, 100, 0.9), (*A, 0.8)], images=10))
    assert result["miss_at_fppi"]["Reasonable"] == pytest.approx([0.5] * 9)
    assert result["mr"]["Reasonable"] == pytest.approx(0.5)


def test_iou_exactly_at_threshold_matches_and_ties_go_to_the_later_person():
    gt = np.array([[[0, 0, 30, 100], [16, 0, 30, 100], [400, 0, 40, 100]]], np.float64)  # xywh
    det = np.array([[[8, 0, 30, 100], [0, 0, 30, 100], [410, 0, 40, 100]]], np.float64)  # IoU 22/38 with both
    outcome = match_setups(det, np.ones((1, 1, 3), bool), gt, np.ones((1, 3), bool), np.zeros((1, 1, 3), bool))
    # the first takes the second person, so the second detection finds the first free;
    # the third is at IoU 30/50 = 0.6 (and an exact 0.5 below)
    assert outcome.tolist() == [[[1, 1, 1]]]
    half = match_setups(np.array([[[10, 0, 30, 100]]], float), np.ones((1, 1, 1), bool),
                        np.array([[[0, 0, 30, 100]]], float), np.ones((1, 1), bool), np.zeros((1, 1, 1), bool))
    assert half.tolist() == [[[1]]]  # intersection 20, union 40: IoU 0.5


def test_a_match_wins_over_an_ignore_region():
    gt = np.array([[[0, 0, 40, 100], [0, 0, 200, 200]]], np.float64)
    det = np.array([[[0, 0, 40, 100], [0, 0, 40, 100]]], np.float64)
    outcome = match_setups(det, np.ones((1, 1, 2), bool), gt, np.ones((1, 2), bool), np.array([[[False, True]]]))
    assert outcome.tolist() == [[[1, -1]]]  # the duplicate lands on the region


def test_empty_setups_give_nan_and_no_detections_give_one():
    result = evaluate(*scene([(0, 0, 10, 30)], [], images=3))
    assert math.isnan(result["mr"]["Reasonable"]) and result["npos"]["Reasonable"] == 0
    assert result["mr"]["All"] == 1.0 and result["miss_at_fppi"]["Reasonable"] == []
    nothing = evaluate([], [])
    assert nothing["num_images"] == 0 and all(math.isnan(v) for v in nothing["mr"].values())


def test_float32_visibility_at_a_bound_is_in_range_and_torch_inputs_work():
    truth = [{"boxes": torch.tensor([[0, 0, 40, 100], [100, 0, 140, 100]], dtype=torch.float32),
              "labels": torch.tensor([1, 1]), "ignore": torch.tensor([False, False]),
              "visibility": torch.tensor([0.65, 0.9], dtype=torch.float32)}]
    found = [{"boxes": torch.tensor([[0.0, 0, 40, 100]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    result = evaluate(found, truth)
    assert result["npos"] == {"Reasonable": 2, "Reasonable_small": 0, "Heavy": 1, "All": 2, "Partial": 2, "Bare": 1}
    assert result["mr"]["Heavy"] == 0.0 and result["mr"]["Bare"] == 1.0


def test_other_labels_take_no_part_unless_ignored():
    # A, C, D people; B of class 2 (dropped); a class-0 ignore region (kept)
    truth = [{"boxes": xyxy([A, B, C, (600, 0, 40, 100), (300, 0, 200, 200)]), "labels": np.array([1, 2, 1, 1, 0]),
              "ignore": np.array([False, False, False, False, True])}]
    found = [{"boxes": xyxy([A, (340, 40, 40, 100), B, C]), "scores": np.array([0.9, 0.85, 0.8, 0.7]),
              "labels": np.array([1, 1, 1, 1])}]
    result = evaluate(found, truth)
    assert result["npos"]["Reasonable"] == 3
    assert result["mr"]["Reasonable"] == pytest.approx(TP_FP_TP)  # on the region: not scored; on B: a FP
    found[0]["labels"] = np.array([1, 1, 2, 1])
    assert evaluate(found, truth)["mr"]["Reasonable"] == pytest.approx(1 / 3)


def test_setup_selection():
    found, truth = scene([A], [(*A, 0.9)])
    assert list(evaluate(found, truth, setups=["Bare", "Heavy"])["mr"]) == ["Bare", "Heavy"]
    custom = evaluate(found, truth, setups={"tall": ((101, 1e10), (0, 1e10))})
    assert custom["npos"] == {"tall": 0}
    with pytest.raises(ValueError, match="known: Reasonable"):
        evaluate(found, truth, setups=["reasonable"])
