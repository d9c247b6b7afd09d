"""detect() against a per-image, per-class loop of torchvision.ops.nms (ssd.pytorch's Detect
with torchvision's candidate count) and a plain-Python Soft-NMS."""
import math

import pytest
import torch
from torchvision.ops import nms

from repssd.boxes import box_iou, xyxy_to_cxcywh
from repssd.coder import decode
from repssd.postprocess import detect
from repssd.priors import generate_priors

from conftest import DEVICES


def reference_detect(loc, conf, priors, conf_thresh=0.01, nms_thresh=0.45, top_k=200, candidates=400):
    boxes = decode(loc, priors).clamp(0, 1)
    probs = conf.softmax(-1)
    results = []
    for b in range(loc.shape[0]):
        found = []
        for c in range(1, conf.shape[2]):
            top = probs[b, :, c].topk(min(candidates, priors.shape[0]))
            above = top.values > conf_thresh
            cls_boxes, cls_scores = boxes[b, top.indices[above]], top.values[above]
            for i in nms(cls_boxes, cls_scores, nms_thresh).tolist():
                found.append((cls_scores[i].item(), c, cls_boxes[i].tolist()))
        found.sort(key=lambda d: (-d[0], d[1]))
        results.append(found[:top_k])
    return results


def reference_soft_nms(boxes, scores, conf_thresh, nms_thresh, sigma, gaussian):
    alive = [i for i in range(len(scores)) if scores[i] > conf_thresh]
    scores = scores.clone()
    kept = []
    while alive:
        best = max(alive, key=lambda i: scores[i].item())
        alive.remove(best)
        kept.append((scores[best].item(), boxes[best].tolist()))
        for j in list(alive):
            iou = box_iou(boxes[best][None], boxes[j][None]).item()
            decay = math.exp(-iou * iou / sigma) if gaussian else (1 - iou if iou > nms_thresh else 1.0)
            scores[j] *= decay
            if scores[j] <= conf_thresh:
                alive.remove(j)
    return kept


def random_outputs(batch, num_priors_spec="mobilenet_ssd300", num_classes=4, seed=0, sharpness=2.0):
    g = torch.Generator().manual_seed(seed)
    priors = generate_priors(num_priors_spec)
    loc = torch.randn(batch, priors.shape[0], 4, generator=g) * 0.5
    conf = torch.randn(batch, priors.shape[0], num_classes, generator=g) * sharpness
    return loc, conf, priors


def as_tuples(det):
    return sorted(zip(det.scores.tolist(), det.labels.tolist(), det.boxes.tolist()), key=lambda d: (-d[0], d[1]))


@pytest.mark.parametrize("seed", range(3))
def test_nms_equals_per_image_per_class_reference(seed):
    loc, conf, priors = random_outputs(3, seed=seed)
    got = detect(loc, conf, priors, conf_thresh=0.05, top_k=150, candidates=300)
    expected = reference_detect(loc, conf, priors, conf_thresh=0.05, top_k=150, candidates=300)
    for det, exp in zip(got, expected):
        assert len(det) == len(exp) > 0
        ours = as_tuples(det)
        assert [d[1] for d in ours] == [d[1] for d in exp]
        torch.testing.assert_close(torch.tensor([d[0] for d in ours]), torch.tensor([d[0] for d in exp]))
        torch.testing.assert_close(torch.tensor([d[2] for d in ours]), torch.tensor([d[2] for d in exp]))
        assert det.scores.tolist() == sorted(det.scores.tolist(), reverse=True)


@pytest.mark.parametrize("top_k", [1, 3, 40])
def test_small_top_k_equals_reference(top_k):
    loc, conf, priors = random_outputs(2, seed=11)
    got = detect(loc, conf, priors, top_k=top_k)
    for det, exp in zip(got, reference_detect(loc, conf, priors, top_k=top_k)):
        assert [d[1] for d in as_tuples(det)] == [d[1] for d in exp]
        torch.testing.assert_close(det.scores, torch.tensor([d[0] for d in exp]))


def test_candidates_beyond_the_first_pass_are_reached_when_needed():
    # 30 copies of one box (each suppresses the rest) outscore a lone box elsewhere: the first
    # pass over the 5 * top_k = 10 best keeps just one, so the lone box needs the second pass.
    boxes = [[0.1, 0.1, 0.4, 0.4]] * 30 + [[0.6, 0.6, 0.9, 0.9]]
    probs = [[1 - p, p] for p in torch.linspace(0.9, 0.6, 30).tolist()] + [[0.5, 0.5]]
    det = detect(*hand_outputs(boxes, probs), top_k=2)[0]
    torch.testing.assert_close(det.scores, torch.tensor([0.9, 0.5]))
    torch.testing.assert_close(det.boxes[1], torch.tensor([0.6, 0.6, 0.9, 0.9]))


def test_per_class_candidate_cap_applies_before_nms():
    # Class 1 has 5 disjoint boxes; with candidates=3 only its 3 best may be detected.
    boxes = [[0.2 * i, 0.0, 0.2 * i + 0.1, 0.1] for i in range(5)]
    probs = [[0.5 - 0.05 * i, 0.5 + 0.05 * i] for i in range(5)]
    det = detect(*hand_outputs(boxes, probs), candidates=3)[0]
    torch.testing.assert_close(det.scores, torch.tensor([0.7, 0.65, 0.6]))


def test_batched_equals_one_image_at_a_time():
    loc, conf, priors = random_outputs(4, seed=7)
    together = detect(loc, conf, priors)
    for b in range(4):
        alone = detect(loc[b:b + 1], conf[b:b + 1], priors)[0]
        assert torch.equal(together[b].scores, alone.scores) and torch.equal(together[b].labels, alone.labels)


def hand_outputs(boxes_xyxy, class_probs):
    """Priors placed exactly on the wanted boxes, loc 0, and logits giving those probabilities."""
    priors = xyxy_to_cxcywh(torch.tensor(boxes_xyxy))
    probs = torch.tensor(class_probs)
    conf = torch.log(probs.clamp(min=1e-9))
    return torch.zeros(1, len(priors), 4), conf[None], priors


def test_hand_case_overlap_suppresses_only_within_a_class():
    boxes = [[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]
    probs = [[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.3, 0.0, 0.7], [0.4, 0.6, 0.0]]
    det = detect(*hand_outputs(boxes, probs))[0]
    # Box 1 (IoU 0.9 with box 0, same class) is suppressed; box 2 has another class; box 3 is apart.
    assert det.labels.tolist() == [1, 2, 1]
    torch.testing.assert_close(det.scores, torch.tensor([0.9, 0.7, 0.6]))
    torch.testing.assert_close(det.boxes[2], torch.tensor([0.6, 0.6, 0.9, 0.9]))


@pytest.mark.parametrize("method", ["soft-linear", "soft-gaussian"])
def test_soft_nms_equals_plain_python_reference(method):
    loc, conf, priors = random_outputs(2, seed=3, num_classes=3)
    got = detect(loc, conf, priors, method=method, conf_thresh=0.05, nms_thresh=0.3, candidates=60, top_k=1000)
    boxes = decode(loc, priors).clamp(0, 1)
    probs = conf.softmax(-1)
    for b in range(2):
        expected = []
        for c in (1, 2):
            top = probs[b, :, c].topk(60)
            kept = reference_soft_nms(boxes[b, top.indices], top.values, 0.05, 0.3, 0.5, method == "soft-gaussian")
            expected += [(s, c, box) for s, box in kept]
        expected.sort(key=lambda d: (-d[0], d[1]))
        ours = as_tuples(got[b])
        assert len(ours) == len(expected)
        torch.testing.assert_close(torch.tensor([d[0] for d in ours]), torch.tensor([d[0] for d in expected]))
        assert [d[1] for d in ours] == [d[1] for d in expected]


def test_soft_nms_keeps_overlapping_boxes_with_decayed_scores():
    boxes = [[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5]]
    outputs = hand_outputs(boxes, [[0.1, 0.9], [0.2, 0.8]])
    iou = box_iou(torch.tensor(boxes[:1]), torch.tensor(boxes[1:])).item()
    hard = detect(*outputs)[0]
    linear = detect(*outputs, method="soft-linear")[0]
    gaussian = detect(*outputs, method="soft-gaussian", sigma=0.5)[0]
    assert len(hard) == 1 and len(linear) == 2 and len(gaussian) == 2
    torch.testing.assert_close(linear.scores[1], torch.tensor(0.8 * (1 - iou)))
    torch.testing.assert_close(gaussian.scores[1], torch.tensor(0.8 * math.exp(-iou ** 2 / 0.5)))


def test_top_k_cap_threshold_and_empty_images():
    loc, conf, priors = random_outputs(3, seed=1)
    conf[1, :, 0] = 30.0  # image 1: background everywhere
    dets = detect(loc, conf, priors, top_k=7)
    assert [len(d) for d in dets] == [7, 0, 7]
    assert dets[1].boxes.shape == (0, 4) and dets[1].labels.dtype == torch.int64
    assert all((d.scores > 0.01).all() for d in dets)
    with pytest.raises(ValueError, match="soft-linear"):
        detect(loc, conf, priors, method="greedy")


@pytest.mark.parametrize("device", DEVICES)
def test_device_equals_cpu(device):
    loc, conf, priors = random_outputs(2, seed=9)
    cpu = detect(loc, conf, priors)
    dev = detect(loc.to(device), conf.to(device), priors.to(device))
    for a, b in zip(cpu, dev):
        torch.testing.assert_close(a.scores, b.scores.cpu())
        assert torch.equal(a.labels, b.labels.cpu())


# ----------------------------------------------------------------------------- TF-style options
def _single(boxes_xyxy, scores):
    """loc/conf/priors that decode to exactly ``boxes_xyxy`` (zero offsets on priors = boxes), one
    class whose sigmoid score is ``scores``."""
    boxes = torch.tensor(boxes_xyxy, dtype=torch.float64)
    priors = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
    logits = torch.logit(torch.tensor(scores, dtype=torch.float64))
    conf = torch.stack([torch.zeros_like(logits), logits], 1)[None]
    return torch.zeros(1, len(scores), 4, dtype=torch.float64), conf, priors


def test_sigmoid_scores_are_each_columns_own():
    loc, conf, priors = _single([[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.9, 0.9]], [0.9, 0.2])
    conf[0, :, 0] = 5.0  # a large background logit: softmax would squash the class, sigmoid ignores it
    det = detect(loc, conf, priors, score="sigmoid", conf_thresh=0.0)[0]
    torch.testing.assert_close(det.scores, torch.tensor([0.9, 0.2], dtype=torch.float64))
    soft = detect(loc, conf, priors, score="softmax", conf_thresh=0.0)[0]
    assert soft.scores[0] < 0.1  # sigmoid(logit(0.9) - 5)
    with pytest.raises(ValueError, match="unknown score function"):
        detect(loc, conf, priors, score="probit")


def test_clip_after_nms_is_tensorflows_order():
    # A reaches far past the left edge; unclipped its IoU with B is 0.3 (B kept), clipped 1.0 (B gone).
    # C lies wholly outside the image: it takes part in NMS (suppressing D) but is dropped after.
    boxes = [[-0.4, 0.2, 0.2, 0.4], [0.0, 0.2, 0.2, 0.4], [1.1, 0.5, 1.3, 0.7], [1.0, 0.5, 1.25, 0.7]]
    loc, conf, priors = _single(boxes, [0.9, 0.8, 0.7, 0.6])
    after = detect(loc, conf, priors, score="sigmoid", nms_thresh=0.6, clip="after", candidates=None)[0]
    torch.testing.assert_close(after.scores, torch.tensor([0.9, 0.8], dtype=torch.float64))
    torch.testing.assert_close(after.boxes, torch.tensor([[0.0, 0.2, 0.2, 0.4], [0.0, 0.2, 0.2, 0.4]],
                                                         dtype=torch.float64))
    before = detect(loc, conf, priors, score="sigmoid", nms_thresh=0.6, clip=True)[0]
    assert before.scores.tolist()[:1] == [pytest.approx(0.9)] and 0.8 not in [round(s, 6) for s in before.scores.tolist()]
    with pytest.raises(ValueError, match="clip must be"):
        detect(loc, conf, priors, clip="sometimes")


def test_candidates_none_lets_every_prior_into_nms():
    # 450 disjoint tiny boxes: torchvision's 400 candidates per class would cut the last 50
    side = 0.04
    boxes = [[(i % 25) * side, (i // 25) * side, (i % 25) * side + side * 0.5, (i // 25) * side + side * 0.5]
             for i in range(450)]
    loc, conf, priors = _single(boxes, torch.linspace(0.9, 0.5, 450).tolist())
    assert len(detect(loc, conf, priors, score="sigmoid", top_k=500, candidates=400)[0]) == 400
    assert len(detect(loc, conf, priors, score="sigmoid", top_k=500, candidates=None)[0]) == 450


def test_postprocess_options_layers_defaults_config_and_flags():
    from repssd.postprocess import DEFAULTS, postprocess_options

    assert postprocess_options() == DEFAULTS
    saved = {"postprocess": {"score": "sigmoid", "nms_thresh": 0.6, "top_k": 100, "unknown": 1}}
    assert postprocess_options(saved) == {**DEFAULTS, "score": "sigmoid", "nms_thresh": 0.6, "top_k": 100}
    assert postprocess_options(saved, nms_thresh=0.5, top_k=None)["nms_thresh"] == 0.5
    assert postprocess_options(saved, top_k=None)["top_k"] == 100


def test_clip_after_caps_each_class_before_dropping_empty_boxes():
    # TF's order: NMS keeps top_k per class (A and the out-of-image B), B is dropped, then top_k per
    # image: C, the third survivor, never comes back
    boxes = [[0.1, 0.1, 0.2, 0.2], [1.2, 0.1, 1.3, 0.2], [0.5, 0.5, 0.6, 0.6]]
    loc, conf, priors = _single(boxes, [0.9, 0.8, 0.7])
    after = detect(loc, conf, priors, score="sigmoid", top_k=2, clip="after", candidates=None)[0]
    torch.testing.assert_close(after.scores, torch.tensor([0.9], dtype=torch.float64))
    before = detect(loc, conf, priors, score="sigmoid", top_k=2, clip=True)[0]
    assert len(before) == 2  # clipped first, B is a zero-area box that stays (torchvision keeps them)


def test_float64_scores_keep_confident_detections_distinct():
    # three separate boxes, logit margins 20 / 25 / 30: float32 rounds all three softmax scores to 1.0
    priors = xyxy_to_cxcywh(torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.4, 0.4, 0.6, 0.6], [0.8, 0.8, 1.0, 1.0]]))
    loc = torch.zeros(1, 3, 4)
    conf = torch.zeros(1, 3, 2)
    conf[0, :, 1] = torch.tensor([25.0, 30.0, 20.0])
    plain = detect(loc, conf, priors)[0]
    assert plain.scores.dtype == torch.float32 and (plain.scores == 1.0).all()  # the ties the evaluator saw
    ranked = detect(loc, conf, priors, score_dtype=torch.float64)[0]
    assert ranked.scores.dtype == torch.float64 and (ranked.scores < 1.0).all()
    assert ranked.scores[0] > ranked.scores[1] > ranked.scores[2]
    torch.testing.assert_close(ranked.boxes[:, 0], torch.tensor([0.4, 0.0, 0.8]))  # margin 30 first, 20 last
    # the NMS ranks by the float64 order too: an overlapping box with a lower margin is the one suppressed
    priors = xyxy_to_cxcywh(torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.0, 0.0, 0.2, 0.21]]))
    conf = torch.zeros(1, 2, 2)
    conf[0, :, 1] = torch.tensor([20.0, 30.0])
    kept = detect(torch.zeros(1, 2, 4), conf, priors, score_dtype=torch.float64)[0]
    assert len(kept) == 1 and kept.boxes[0, 3].item() == pytest.approx(0.21)
