"""Crowd error analysis: hand-built scenes with every category, a literal one-image-at-a-time
reference on random scenes, and the CLI / eval.py --errors end to end."""
import json
from collections import Counter

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms, box_iou

from repssd.eval.errors import CAUSES, FP_CATEGORIES, MISS_CAUSES, analyse, format_errors, image_counts, write_errors
from repssd.eval.inference import ground_truth_of

NMS = 0.45


def det(*rows, label=1):
    """Detections from (box, score) rows, all of ``label``."""
    return {"boxes": np.array([r[0] for r in rows], float).reshape(-1, 4), "scores": np.array([r[1] for r in rows]),
            "labels": np.full(len(rows), label)}


def join(*parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in ("boxes", "scores", "labels")}


def gt(boxes, labels=None, ignore=None):
    boxes = np.array(boxes, float).reshape(-1, 4)
    return {"boxes": boxes, "labels": np.array(labels if labels is not None else [1] * len(boxes)),
            "ignore": np.array(ignore if ignore is not None else [False] * len(boxes), bool)}


def kept_of(candidates, nms=NMS, top_k=None):
    """Greedy NMS per image and class (torchvision), then the top_k best."""
    out = []
    for c in candidates:
        keep = batched_nms(torch.tensor(c["boxes"]), torch.tensor(c["scores"]), torch.tensor(c["labels"]), nms).numpy()
        keep = keep[:top_k] if top_k else keep
        out.append({k: v[keep] for k, v in c.items()})
    return out


def scenes():
    """Ten images, one situation each (comments: the outcome at score 0.5); candidates are built
    and the kept list is checked to be their NMS."""
    a, b = [0, 0, 20, 40], [20, 0, 40, 40]
    candidates = [
        det(([8, 0, 18, 20], 0.9), ([12, 0, 22, 20], 0.8)),  # 0: TP + duplicate (IoU .43 between them)
        det(([100, 20, 120, 60], 0.7)),                      # 1: poorly localised (IoU 1/3), lone GT missed
        det((a, 0.95), (b, 0.94), ([10, 0, 30, 40], 0.7)),   # 2: two TP + a crowd error between them
        det(([200, 200, 220, 240], 0.6), ([10, 10, 30, 30], 0.65)),  # 3: background FP + one on an ignore region
        det((a, 0.9), ([6, 0, 26, 40], 0.8)),                # 4: neighbour's TP suppresses the second person
        det(([100, 16, 120, 56], 0.9), ([100, 6, 120, 46], 0.6)),  # 5: a false positive suppresses it
        det(([2, 0, 22, 40], 0.9)),                          # 6: one box for two: the second is claimed
        det((a, 0.3), ([0, 2, 20, 42], 0.2)),                # 7: low score (kept 0.3, suppressed 0.2)
        det((a, 0.99), label=2),                             # 8: only another class on it: no candidate
        det(),                                               # 9: nothing at all
    ]
    truth = [gt([[10, 0, 20, 20]]), gt([[100, 0, 120, 40]]), gt([a, b]), gt([[0, 0, 50, 50]], ignore=[True]),
             gt([a, [6, 0, 26, 40]]), gt([[100, 0, 120, 40]]), gt([a, [4, 0, 24, 40]]), gt([a]),
             gt([a, [50, 50, 60, 60]], labels=[1, 2]), gt([])]
    return kept_of(candidates), candidates, truth


def test_hand_built_scene_counts_every_category_exactly():
    kept, candidates, truth = scenes()
    assert [len(k["scores"]) for k in kept] == [2, 1, 3, 2, 1, 1, 1, 1, 1, 0]  # NMS removed 4's, 5's and 7's second
    result = analyse(kept, candidates, truth, NMS, score_thresholds=[0.5], fppi=[0.1, 0.3, 1.0])
    at = {row["name"]: row for row in result["thresholds"]}
    row = at["score>=0.5"]
    assert (row["tp"], row["fp"], row["ignored"], row["misses"], row["npos"]) == (5, 5, 1, 6, 11)
    assert row["fp_by_category"] == {"duplicate": 1, "crowd": 1, "localisation": 2, "background": 1}
    assert row["misses_by_cause"] == {"suppressed_neighbour": 1, "suppressed_other": 1, "merged_neighbour": 0,
                                      "merged_other": 0, "claimed": 1, "low_score": 1, "no_candidate": 2}
    outcome = [[g["outcome"].get("score>=0.5") for g in r["ground_truth"]] for r in result["records"]]
    assert outcome == [["tp"], ["no_candidate"], ["tp", "tp"], [None], ["tp", "suppressed_neighbour"],
                       ["suppressed_other"], ["tp", "claimed"], ["low_score"], ["no_candidate"], []]
    categories = [[d["category"] for d in r["detections"]] for r in result["records"]]
    assert categories == [["tp", "duplicate"], ["localisation"], ["tp", "tp", "crowd"], ["ignored", "background"],
                          ["tp"], ["localisation"], ["tp"], ["tp"], [], []]
    # FP scores 0.9, 0.8, 0.7, 0.7, 0.6 over 10 images: FPPI 0.1 at 0.9, 0.3 at 0.7; 1.0 never (all: 0.3)
    assert [(at[n]["score_threshold"], at[n]["reached"]) for n in ("fppi=0.1", "fppi=0.3", "fppi=1")] == \
        [(0.9, True), (0.7, True), (0.3, False)]
    # at 0.9 the suppressed candidates (0.8, 0.6) are below the threshold: claimed and low score instead
    assert at["fppi=0.1"]["misses_by_cause"] == {"suppressed_neighbour": 0, "suppressed_other": 0,
                                                 "merged_neighbour": 0, "merged_other": 0, "claimed": 2,
                                                 "low_score": 2, "no_candidate": 2}
    assert (at["fppi=0.1"]["tp"], at["fppi=0.1"]["fp"]) == (5, 1)
    assert at["fppi=1"]["tp"] == 6 and at["fppi=1"]["misses_by_cause"]["low_score"] == 0
    json.dumps(result)  # plain lists and dicts


def test_records_name_the_matched_gt_and_the_detection_that_took_it():
    kept, candidates, truth = scenes()
    records = analyse(kept, candidates, truth, NMS)["records"]
    assert [d["gt"] for d in records[0]["detections"]] == [0, 0]  # the duplicate's GT is the taken one
    assert records[8]["ground_truth"][0]["matched_by"] is None and len(records[8]["ground_truth"]) == 1  # car dropped
    assert records[6]["ground_truth"][0]["matched_by"] == 0 and records[3]["ground_truth"][0]["ignore"]
    assert [r["id"] for r in records[:2]] == ["0", "1"]


def test_curves_are_cumulative_counts_against_the_score_threshold():
    kept, candidates, truth = scenes()
    curves = analyse(kept, candidates, truth, NMS, curve_points=11)["curves"]
    assert curves["score_thresholds"][5] == 0.5
    assert curves["fp"]["localisation"] == [2] * 8 + [1, 1, 0]  # 0.7 and 0.9
    assert curves["fp"]["crowd"] == [1] * 8 + [0] * 3
    assert all(tp + sum(m[k] for m in curves["misses"].values()) == 11 for k, tp in enumerate(curves["tp"]))


def test_unreadable_images_and_empty_input():
    kept, candidates, truth = scenes()
    kept[1] = candidates[1] = None
    result = analyse(kept, candidates, truth, NMS, ids=[f"im{i}" for i in range(10)])
    assert result["images"] == 9 and result["npos"] == 10 and result["unreadable"] == ["im1"]
    assert result["records"][1]["image"] == 2 and result["records"][1]["id"] == "im2"
    empty = analyse([], [], [], NMS)
    assert empty["images"] == empty["npos"] == 0 and empty["records"] == []
    assert all(r["tp"] == r["fp"] == r["misses"] == 0 for r in empty["thresholds"])
    none = analyse([det()], [det()], [gt([])], NMS)
    assert none["thresholds"][0]["fp"] == 0 and none["thresholds"][1]["reached"] is False


def test_a_kept_detection_missing_from_the_candidates_is_refused():
    kept, candidates, truth = scenes()
    kept[2] = det(([10, 0, 30, 40], 0.71))
    with pytest.raises(ValueError, match="not among the candidates"):
        analyse(kept, candidates, truth, NMS)


def random_scenes(seed, images=30, top_k=8):
    """Crowds of 0-8 people (some ignore / another class); candidates jittered around them and
    clutter, random scores; kept = NMS, then the top_k best."""
    rng = np.random.default_rng(seed)
    truth, candidates = [], []
    for _ in range(images):
        n = int(rng.integers(0, 9))
        xy = rng.uniform(0, 60, (n, 2)) + rng.uniform(0, 300, 2)  # one crowd per image
        boxes = np.concatenate([xy, xy + rng.uniform(15, 50, (n, 2))], 1)
        truth.append({"boxes": boxes, "labels": np.where(rng.random(n) < 0.15, 2, 1), "ignore": rng.random(n) < 0.1,
                      "difficult": rng.random(n) < 0.05})
        near = np.repeat(boxes, 3, 0) + rng.normal(0, 6, (3 * n, 4))
        clutter = rng.uniform(0, 350, (4, 2))
        c = np.concatenate([near, np.concatenate([clutter, clutter + 30], 1)])
        c[:, 2:] = np.maximum(c[:, 2:], c[:, :2] + 1)
        candidates.append({"boxes": c, "scores": rng.random(len(c)), "labels": np.where(rng.random(len(c)) < 0.8, 1, 2)})
    return kept_of(candidates, top_k=top_k), candidates, truth


def iou_ioa(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return iw * ih / (area + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih), iw * ih / area


def literal(kept, candidates, truth, t, label=1):
    """The definitions, one image, detection and GT at a time, matching anew at threshold t."""
    fp, causes = Counter(), Counter()
    for k, c, g in zip(kept, candidates, truth):
        real = (g["labels"] == label) & ~g["ignore"] & ~g["difficult"]
        objects, regions = g["boxes"][real], g["boxes"][g["ignore"] | ((g["labels"] == label) & g["difficult"])]
        order = np.argsort(-k["scores"], kind="stable")
        dets = [(k["boxes"][i], k["scores"][i]) for i in order if k["labels"][i] == label and k["scores"][i] >= t]
        owner, match = [-1] * len(objects), []
        for d, (box, _) in enumerate(dets):
            ious = [iou_ioa(box, o)[0] for o in objects]
            free = [j for j in range(len(objects)) if owner[j] < 0 and ious[j] >= 0.5]
            if free:
                j = max(free, key=lambda j: (ious[j], -j))
                owner[j] = d
                match.append(j)
                continue
            match.append(-1)
            if any(i >= 0.5 for i in ious):
                fp["duplicate"] += 1
            elif not any(iou_ioa(box, r)[1] >= 0.5 for r in regions):
                fp[{0: "background", 1: "localisation"}.get(sum(i >= 0.1 for i in ious), "crowd")] += 1
        kept_rows = {(tuple(b), s) for b, s, lab in zip(k["boxes"], k["scores"], k["labels"]) if lab == label}
        cands = [(b, s) for b, s, lab in zip(c["boxes"], c["scores"], c["labels"]) if lab == label]
        for j, o in enumerate(objects):
            if owner[j] >= 0:
                causes["tp"] += 1
                continue
            suppressed = [b for b, s in cands if s >= t and iou_ioa(b, o)[0] >= 0.5 and (tuple(b), s) not in kept_rows]
            by = [next((d for d, (kb, _) in enumerate(dets) if iou_ioa(kb, b)[0] > NMS), None) for b in suppressed]
            if any(d is not None and match[d] >= 0 and match[d] != j for d in by):
                causes["suppressed_neighbour"] += 1
            elif suppressed:
                causes["suppressed_other"] += 1
            elif any(match[d] >= 0 and match[d] != j and iou_ioa(kb, o)[0] >= 0.5 for d, (kb, _) in enumerate(dets)):
                causes["claimed"] += 1
            elif any(iou_ioa(b, o)[0] >= 0.5 for b, _ in cands):
                causes["low_score"] += 1
            else:
                causes["no_candidate"] += 1
    return fp, causes


def test_batched_analysis_equals_the_literal_definitions_at_every_threshold():
    seen = Counter()
    for seed in range(3):
        kept, candidates, truth = random_scenes(seed)
        thresholds = [0.0, 0.25, 0.5, 0.8]
        result = analyse(kept, candidates, truth, NMS, score_thresholds=thresholds, fppi=[])
        for row, t in zip(result["thresholds"], thresholds):
            fp, causes = literal(kept, candidates, truth, t)
            assert row["fp_by_category"] == {k: fp[k] for k in row["fp_by_category"]}
            assert row["misses_by_cause"] == {k: causes[k] for k in row["misses_by_cause"]} and row["tp"] == causes["tp"]
            assert row["tp"] + row["misses"] == row["npos"] and sum(row["fp_by_category"].values()) == row["fp"]
            seen.update({k: v for k, v in {**row["fp_by_category"], **row["misses_by_cause"]}.items()})
    unsliced = [c for c in CAUSES[1:] if not c.startswith("merged")]  # merges need sliced candidates
    assert min(seen[k] for k in [*FP_CATEGORIES, *unsliced]) > 0  # every category and cause occurs


def test_per_image_counts_add_up_to_the_threshold_counts():
    kept, candidates, truth = random_scenes(3)
    result = analyse(kept, candidates, truth, NMS, score_thresholds=[0.25, 0.5], fppi=[])
    for row, t in zip(result["thresholds"], (0.25, 0.5)):
        counts = image_counts(result["records"], t)
        assert all(len(v) == len(truth) for v in counts.values())
        assert {k: int(counts[k].sum()) for k in FP_CATEGORIES} == row["fp_by_category"]
        assert {k: int(counts[k].sum()) for k in MISS_CAUSES} == row["misses_by_cause"]
        assert counts["fp"].sum() == row["fp"] and counts["missed"].sum() == row["misses"]
        alone = analyse([kept[4]], [candidates[4]], [truth[4]], NMS, score_thresholds=[t], fppi=[])["thresholds"][0]
        assert counts["crowd"][4] == alone["fp_by_category"]["crowd"] and counts["missed"][4] == alone["misses"]
    with pytest.raises(ValueError, match="no outcome at score>=0.7"):
        image_counts(result["records"], 0.7)


def test_batched_result_equals_per_image_results():
    kept, candidates, truth = random_scenes(7, images=12)
    together = analyse(kept, candidates, truth, NMS, score_thresholds=[0.3, 0.6], fppi=[])
    alone = [analyse([k], [c], [g], NMS, score_thresholds=[0.3, 0.6], fppi=[]) for k, c, g in zip(kept, candidates, truth)]
    for i, (record, single) in enumerate(zip(together["records"], alone)):
        assert {**single["records"][0], "image": i, "id": str(i)} == record
    for k, row in enumerate(together["thresholds"]):
        for key in ("tp", "fp", "ignored", "misses", "npos"):
            assert row[key] == sum(a["thresholds"][k][key] for a in alone)


def test_reports_are_written(tmp_path):
    kept, candidates, truth = scenes()
    result = analyse(kept, candidates, truth, NMS)
    paths = write_errors(result, tmp_path)
    assert all(p.exists() for p in paths.values()) and paths["plot"].stat().st_size > 0
    saved = json.loads(paths["json"].read_text())
    assert "records" not in saved and saved["thresholds"] == result["thresholds"]
    assert len(json.loads(paths["records"].read_text())["images"]) == 10
    table = format_errors(result)
    assert "crowd" in table and "fppi=0.1" in table and "| --- |" in paths["markdown"].read_text()


# --- end to end: predict_with_candidates, the CLI and eval.py --errors on a tiny random model ---


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from repssd.data.synthetic import generate
    from repssd.models import build_model
    base = tmp_path_factory.mktemp("errorsrun")
    generate(base / "data", train=0, test=4, seed=1, size=128)
    torch.manual_seed(0)
    model = build_model("mb1_ssdlite", 3, width_mult=0.25)
    (base / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"model": model.state_dict()}, base / "run" / "checkpoints" / "last.pth")
    (base / "run" / "config.json").write_text(json.dumps({
        "model": "mb1_ssdlite", "model_options": {"width_mult": 0.25}, "dataset": "synthetic",
        "data_root": str(base / "data"), "test_split": "test"}))
    return base


@pytest.mark.parametrize("options", [{"top_k": 50}, {}])
def test_candidates_are_the_kept_detections_without_nms(run, options):
    """Every kept detection is a candidate, also where the untrained model's tied scores make
    torch.topk pick different priors at the per-class cap in the two post-processings (top_k 200)."""
    from repssd.data import SSDTestTransform
    from repssd.data.factory import open_dataset
    from repssd.eval.inference import predict_dataset, predict_with_candidates
    from repssd.models import build_model
    from repssd.postprocess import postprocess_options
    torch.manual_seed(0)
    model = build_model("mb1_ssdlite", 3, width_mult=0.25)
    dataset = open_dataset("synthetic", run / "data", "test", SSDTestTransform(model.image_size))
    post = postprocess_options(**options)
    kept, candidates = predict_with_candidates(model, dataset, batch_size=3, progress=False, **post)
    alone = predict_dataset(model, dataset, batch_size=3, progress=False, **post)
    for k, c, a in zip(kept, candidates, alone):
        assert all(torch.equal(k[key], a[key]) for key in k)  # predict_dataset's output, unchanged
        rows = set(zip(map(tuple, c["boxes"].tolist()), c["scores"].tolist(), c["labels"].tolist()))
        assert set(zip(map(tuple, k["boxes"].tolist()), k["scores"].tolist(), k["labels"].tolist())) <= rows
        assert len(rows) > len(k["scores"]) and bool((c["scores"].diff() <= 0).all())  # best first
        # no NMS in them: IoU above the threshold between same-class candidates
        same = c["labels"][:, None] == c["labels"]
        assert bool(((box_iou(c["boxes"], c["boxes"]) > post["nms_thresh"]) & same).triu(1).any())
    analyse(kept, candidates, ground_truth_of(dataset), post["nms_thresh"])  # the identity check passes


def test_cli_writes_the_files_and_the_counts_add_up(run, capsys):
    from repssd.eval.errors import main
    out = run / "errors-cli"
    assert main(["--weights", str(run / "run/checkpoints/last.pth"), "--workers", "0", "--score-thresh", "0.3,0.5",
                 "--output-dir", str(out)]) == 0
    assert "suppressed_neighbour" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"errors.json", "errors.md", "errors.png", "error_records.json"}
    result = json.loads((out / "errors.json").read_text())
    assert result["images"] == 4 and result["label"] == 1 and result["class_name"] == "person"
    assert [r["name"] for r in result["thresholds"]] == ["score>=0.3", "score>=0.5", "fppi=0.1", "fppi=1"]
    for row in result["thresholds"]:
        assert row["tp"] + row["misses"] == row["npos"] == sum(row["misses_by_cause"].values()) + row["tp"]
        assert sum(row["fp_by_category"].values()) == row["fp"]
    records = json.loads((out / "error_records.json").read_text())["images"]
    assert sum(len(r["ground_truth"]) for r in records) >= result["npos"] > 0


def test_eval_errors_flag_reuses_the_inference_and_writes_the_same_analysis(run, capsys):
    import eval as eval_cli
    out = run / "eval-errors"
    assert eval_cli.main(["--weights", str(run / "run/checkpoints/last.pth"), "--workers", "0", "--errors",
                          "--output-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mAP (voc07)" in text and "Crowd error analysis of person" in text
    assert (out / "report.json").exists() and (out / "errors.png").exists() and (out / "error_records.json").exists()
    from repssd.eval.errors import main
    assert main(["--weights", str(run / "run/checkpoints/last.pth"), "--workers", "0", "--output-dir",
                 str(run / "cli-same")]) == 0
    a, b = (json.loads((d / "errors.json").read_text())["thresholds"] for d in (out, run / "cli-same"))
    assert a == b


def test_eval_errors_needs_the_model(run, capsys):
    import eval as eval_cli
    code = eval_cli.main(["--detections", "x.json", "--dataset", "synthetic", "--data-root", str(run / "data"), "--errors"])
    assert code == 2 and "--errors needs --weights" in capsys.readouterr().err


def test_cli_refuses_bad_options_in_one_line(run, capsys):
    from repssd.eval.errors import main
    assert main(["--weights", str(run / "run/checkpoints/last.pth"), "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch-size must be positive" in err


def test_soft_nms_has_no_candidates():
    from repssd.eval.inference import candidate_options
    assert candidate_options({"nms_thresh": 0.45, "top_k": 200})["nms_thresh"] == 1.0
    with pytest.raises(ValueError, match="hard NMS"):
        candidate_options({"method": "soft-linear"})


def test_sliced_candidates_blame_the_merge():
    """Candidates linked to the detections they ended in (sliced inference): a person whose box
    the merge folded into a neighbour's true positive is merged away (neighbour), one folded into
    a false positive is merged (other), one removed by its tile's NMS stays suppressed."""
    a, b = [0, 0, 20, 40], [12, 0, 32, 40]
    kept = [det((a, 0.9)), det(([100, 0, 150, 40], 0.9)), det((a, 0.9))]
    candidates = [
        {**det((a, 0.9), (b, 0.8)), "final": np.array([0, 0]), "merged": np.array([False, True])},
        {**det(([100, 0, 150, 40], 0.9), ([100, 0, 120, 40], 0.7)), "final": np.array([0, 0]),
         "merged": np.array([False, True])},
        {**det((a, 0.9), ([6, 0, 26, 40], 0.8)), "final": np.array([0, -1]), "merged": np.array([False, False])},
    ]
    truth = [gt([a, b]), gt([[100, 0, 120, 40]]), gt([a, [6, 0, 26, 40]])]
    row = analyse(kept, candidates, truth, NMS, score_thresholds=[0.5], fppi=[])["thresholds"][0]
    assert row["misses_by_cause"] == {"merged_neighbour": 1, "merged_other": 1, "suppressed_neighbour": 1,
                                      "suppressed_other": 0, "claimed": 0, "low_score": 0, "no_candidate": 0}
    assert row["tp"] == 2 and row["fp_by_category"]["localisation"] == 1
    # a merged box differs from every candidate: the links, not box equality, say which is kept
    kept[0]["boxes"] = np.array([[0.0, 0, 21, 40]])
    assert analyse(kept, candidates, truth, NMS, score_thresholds=[0.5], fppi=[])["thresholds"][0]["tp"] == 2
