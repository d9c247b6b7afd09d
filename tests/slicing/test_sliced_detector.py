"""Sliced inference end to end: batched over images, streamed tiles, links for the error analysis,
and SAHI's get_sliced_prediction through repssd's adapter giving the same detections."""
import warnings

import numpy as np
import pytest
import torch

from repssd.detector import Detector
from repssd.models import build_model
from repssd.slicing import Slicing

POST = {"conf_thresh": 0.05, "nms_thresh": 0.5, "top_k": 30}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("mb1_ssdlite", 3, width_mult=0.25).eval()


def images(seed=0, sizes=((200, 330), (120, 90), (256, 256))):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.boxes, y.boxes)
        torch.testing.assert_close(x.scores, y.scores)
        assert torch.equal(x.labels, y.labels)


@pytest.mark.parametrize("merge,metric", [("nms", "iou"), ("greedy-nmm", "ios"), ("crowd", "iou")])
def test_images_sliced_together_equal_one_at_a_time(model, merge, metric):
    slicing = Slicing(size=(96, 80), overlap=0.25, merge=merge, metric=metric)
    detector = Detector(model, batch_size=5, fast=False, slicing=slicing, **POST)
    together = detector.predict(images())
    same(together, [detector.predict([image])[0] for image in images()])
    for image, det in zip(images(), together):
        h, w = image.shape[:2]
        assert len(det) > 0 and (det.boxes >= 0).all() and (det.boxes[:, 0::2] <= w).all() and (det.boxes[:, 1::2] <= h).all()
        assert (det.scores[:-1] >= det.scores[1:]).all()


def test_one_tile_covering_the_image_is_the_plain_detector_and_is_said(model):
    plain = Detector(model, fast=False, **POST).predict(images())
    with pytest.warns(UserWarning, match="covers the whole of an image"):
        sliced = Detector(model, fast=False, slicing=Slicing(size=400, merge="nms"), **POST).predict(images())
    same(sliced, plain)


def test_tiles_are_streamed_batch_size_at_a_time(model):
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.input_size, self.priors = inner, inner.input_size, inner.priors
            self.preprocess = inner.preprocess

        def forward(self, x):
            seen.append(x.shape[0])
            return self.inner(x)

    big = images(1, sizes=((700, 900),))
    slicing = Slicing(size=128, overlap=0.2)
    Detector(Spy(model), batch_size=4, fast=False, slicing=slicing, **POST).predict(big)
    tiles = len(slicing.tiles(700, 900, model.input_size, 0.1))
    assert max(seen) == 4 and sum(seen) == tiles and len(seen) == -(-tiles // 4)


def test_candidates_link_every_detection_and_merge(model):
    detector = Detector(model, batch_size=8, fast=False, slicing=Slicing(size=96, merge="crowd"), **POST)
    detections, candidates = detector.predict_sliced(images(), with_candidates=True)
    same(detections, detector.predict(images()))
    merged_any = False
    for det, cand in zip(detections, candidates):
        kept = (cand["final"] >= 0) & ~cand["merged"]
        assert sorted(cand["final"][kept].tolist()) == list(range(len(det)))  # one representative each
        assert torch.equal(cand["scores"][kept].sort(descending=True).values, det.scores)
        assert (cand["final"][cand["merged"]] >= 0).all()
        merged_any |= bool(cand["merged"].any())
        assert len(cand["scores"]) >= len(det)  # tiles' outputs without NMS
    assert merged_any


def test_a_one_pixel_image_and_a_non_square_model(model):
    tiny = [np.zeros((1, 1, 3), np.uint8)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(Detector(model, fast=False, slicing=Slicing(size=64), **POST).predict(tiny)) == 1
    wide = build_model("ssdlite_mbv2_tf", 2, image_size=(160, 96)).eval()
    detector = Detector(wide, fast=False, slicing=Slicing(size="auto"), **POST)
    det = detector.predict(images(2, sizes=((480, 640),)))[0]
    assert (det.boxes[:, 2] <= 640).all()
    assert Slicing().tile_size(480, 640, wide.input_size, 0.1)[0] > Slicing().tile_size(480, 640, wide.input_size, 0.1)[1]


@pytest.mark.parametrize("kind,metric,merge", [("NMS", "IOU", "nms"), ("GREEDYNMM", "IOS", "greedy-nmm"),
                                               ("NMS", "IOS", "nms"), ("GREEDYNMM", "IOU", "greedy-nmm")])
def test_sahi_sliced_prediction_through_the_adapter_equals_repssd(model, kind, metric, merge):
    predict = pytest.importorskip("sahi.predict")
    from repssd.integrations.sahi import RepssdDetectionModel

    # random weights spread wide: distinct scores and boxes, no IoU exactly at the threshold
    torch.manual_seed(1)
    model = build_model("mb1_ssdlite", 3, width_mult=0.25).eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) * 0.6 + 0.4 if tensor.ndim == 1 else torch.randn_like(tensor) * 0.3)
    image = images(3, sizes=((240, 400),))[0]
    adapter = RepssdDetectionModel(model=model, device="cpu", postprocess=POST)
    result = predict.get_sliced_prediction(image, adapter, slice_height=100, slice_width=120, overlap_height_ratio=0.2,
                                           overlap_width_ratio=0.2, postprocess_type=kind, postprocess_match_metric=metric,
                                           postprocess_match_threshold=0.5, force_postprocess_type=True, verbose=0)
    theirs = sorted((p.score.value, *p.bbox.to_xyxy(), p.category.id) for p in result.object_prediction_list)
    slicing = Slicing(size=(120, 100), overlap=0.2, merge=merge, metric=metric.lower(), thresh=0.5)
    # SAHI runs one slice per forward pass: so does this side, for bit-equal network outputs
    det = Detector(model, batch_size=1, fast=False, slicing=slicing, **POST).predict([image])[0]
    ours = sorted(zip(det.scores.tolist(), *det.boxes.T.tolist(), det.labels.tolist()))
    assert len(ours) == len(theirs) > 10
    np.testing.assert_allclose(np.array(ours), np.array(theirs), atol=1e-4)
