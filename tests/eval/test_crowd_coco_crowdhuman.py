import json
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from repssd.eval import DetectionEvaluator, format_table, write_report
from repssd.eval import coco as coco_eval
from repssd.eval.crowd import crowd_mask, evaluate as crowd_evaluate
from repssd.eval.miss_rate import evaluate as ch_evaluate, log_average_miss_rate, match_greedy

from test_voc_eval import box, random_scene


def test_crowd_mask_on_hand_built_pairs():
    # A-B overlap IoU 0.25 (crowd), C-D IoU 1/19 (< 0.1, not crowd), E overlaps A but is another class
    boxes = [box(0, 0), box(4, 0, 10, 10), box(100, 0), box(109, 0), box(2, 0)]
    # A=[0,10], B=[4,14]: inter 6, union 14 -> .43; C=[100,110], D=[109,119]: inter 1, union 19
    labels = [1, 1, 1, 1, 2]
    assert crowd_mask(np.array(boxes, float), np.array(labels)).tolist() == [True, True, False, False, False]
    assert crowd_mask(np.array(boxes, float), np.array(labels), iou_threshold=0.05).tolist() == [True, True, True, True, False]


def test_crowd_ap_ignores_non_crowd_objects():
    gts = [{"boxes": [box(0, 0), box(4, 0, 10, 10), box(100, 100)], "labels": [1, 1, 1], "difficult": [False] * 3}]
    # the crowd pair is found once (one miss); the isolated object is found: it counts nowhere
    dets = [{"boxes": [box(100, 100), box(0, 0)], "scores": [0.9, 0.8], "labels": [1, 1]}]
    result = crowd_evaluate(dets, gts, use_07_metric=False)
    assert result["num_boxes"] == 2 and result["num_images"] == 1
    assert result["ap"][1] == pytest.approx(0.5)  # recall .5 at precision 1
    assert result["image_level"]["ap"][1] == pytest.approx(2 / 3)


def test_difficult_crowd_members_still_make_others_crowd_but_are_not_counted():
    gts = [{"boxes": [box(0, 0), box(4, 0, 10, 10)], "labels": [1, 1], "difficult": [False, True]}]
    dets = [{"boxes": [box(0, 0)], "scores": [0.9], "labels": [1]}]
    result = crowd_evaluate(dets, gts)
    assert result["num_boxes"] == 1 and result["ap"][1] == 1.0


def test_coco_matches_pycocotools_run_on_exported_files(tmp_path):
    dets, gts = random_scene(3, images=15)
    dataset, results = coco_eval.to_coco(dets, gts)
    (tmp_path / "gt.json").write_text(json.dumps(dataset))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        evaluator = COCOeval(gt, gt.loadRes(str(tmp_path / "dt.json")), "bbox")
        evaluator.params.maxDets = [1, 10, 300]
        evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    ours = coco_eval.evaluate(dets, gts, max_dets=300)
    assert [ours[k] for k in coco_eval.STAT_NAMES] == pytest.approx(list(evaluator.stats))


def test_crowdhuman_greedy_matching_with_ignore_regions():
    gt = [np.array([box(0, 0), box(50, 0), box(200, 200, 50, 50)], float)]
    ignore = [np.array([False, False, True])]
    dets = [np.array([box(1, 0), box(0, 1), box(205, 205), box(400, 400), box(50, 0)], float)]
    # d0 takes gt0; d1 would want gt0 (taken) -> no other above .5 -> FP; d2 inside the ignore region;
    # d3 matches nothing -> FP; d4 takes gt1
    assert match_greedy(dets, gt, ignore)[0].tolist() == [1, 0, -1, 0, 1]


def test_crowdhuman_metrics_on_a_hand_computed_case():
    gts = [{"boxes": [box(0, 0), box(50, 0)], "labels": [1, 1]}, {"boxes": [box(0, 0)], "labels": [1]}]
    dets = [{"boxes": [box(0, 0), box(300, 300)], "scores": [0.9, 0.6], "labels": [1, 1]},
            {"boxes": [box(0, 0)], "scores": [0.8], "labels": [1]}]
    result = ch_evaluate(dets, gts)
    # order: TP (.9), TP (.8), FP (.6): recall 1/3, 2/3, 2/3; precision 1, 1, 2/3
    assert result["ap"] == pytest.approx((1 / 3) * 1 + 0 * (1 + 2 / 3) / 2)
    # fppi 0, 0, .5: refs <= .5 first reach fppi >= ref at the 3rd point... except refs above .5 -> last point
    miss = np.array([2 / 3, 1 / 3, 1 / 3])
    fppi = np.array([0.0, 0.0, 0.5])
    index = [int(np.argmax(fppi >= r)) if (fppi >= r).any() else 2 for r in np.power(10, np.linspace(-2, 0, 9))]
    assert result["mr"] == pytest.approx(math.exp(np.log(miss[index]).mean()))
    assert result["mr"] == pytest.approx(1 / 3)
    # JI at threshold 0.7: image 1: 1 match of 2 GT, 1 det -> 1/2; image 2: 1/1 -> mean .75 (best)
    assert result["ji"] == pytest.approx(0.75)


def test_log_average_miss_rate_of_a_perfect_detector_is_zero():
    assert log_average_miss_rate(np.zeros(3), np.array([1.0, 2, 3]), 3, 10) == 0.0


def test_evaluator_report_table_and_files(tmp_path):
    dets, gts = random_scene(5)
    evaluator = DetectionEvaluator(["a", "b", "c"], metric="coco", crowd_subset=True)
    evaluator.process(dets[:10], gts[:10])
    evaluator.process(dets[10:], gts[10:])
    report = evaluator.evaluate()
    assert set(report["ap"]) <= {"a", "b", "c"} and "AP" in report["coco"] and "crowd" in report
    table = format_table(report)
    assert "crowd mAP" in table and "COCO AP50" in table
    paths = write_report(report, tmp_path)
    saved = json.loads(paths["json"].read_text())
    assert saved["map"] == pytest.approx(report["map"]) and "crowd" in saved and "curves" not in saved
    assert paths["plot"].stat().st_size > 1000 and "crowd mAP" in paths["markdown"].read_text()
    evaluator.reset()
    assert evaluator.detections == []
    with pytest.raises(ValueError, match="unknown metric"):
        DetectionEvaluator(["a"], metric="voc12")
