import numpy as np
import pytest
import torch

from repssd.data.transforms import resize
from repssd.detector import Detector
from repssd.models import build_model
from repssd.postprocess import detect


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("mb1_ssdlite", 3, width_mult=0.25).eval()


def test_predict_returns_pixel_boxes_of_each_original_image(model):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(120, 400), (300, 300), (90, 50)]]
    results = Detector(model, batch_size=1, top_k=50).predict(images)
    assert len(results) == 3
    batched = Detector(model, batch_size=2, top_k=50).predict(images)
    assert [len(d) for d in batched] == [len(d) for d in results]
    for image, det in zip(images, results):
        h, w = image.shape[:2]
        assert 0 < len(det) <= 50
        assert (det.boxes[:, 0::2] <= w).all() and (det.boxes[:, 1::2] <= h).all() and (det.boxes >= 0).all()
        # Same as normalised detections on the resized image, scaled by the image's own size.
        resized = torch.from_numpy(resize(image, 300)).permute(2, 0, 1)[None]
        with torch.no_grad():
            expected = detect(*model(model.preprocess(resized)), model.priors, top_k=50)[0]
        torch.testing.assert_close(det.boxes, expected.boxes * torch.tensor([w, h, w, h]))
        assert torch.equal(det.labels, expected.labels)


def test_bad_images_are_named(model):
    with pytest.raises(ValueError, match="image 1: expected an HxWx3 RGB array"):
        Detector(model).predict([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8)])
