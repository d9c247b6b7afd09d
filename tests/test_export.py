import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from repssd.coder import decode
from repssd.export import ExportModule, export_onnx, main, select_nms
from repssd.models import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = build_model("mb1_ssdlite", 3, width_mult=0.25).eval()
    with torch.no_grad():  # spread the class scores so NMS decisions are not near-ties
        for layer in model.head.conf:
            (layer[-1] if isinstance(layer, torch.nn.Sequential) else layer).weight.mul_(20)
    return model


def images(batch, seed=0):
    return torch.randint(0, 256, (batch, 3, 300, 300), generator=torch.Generator().manual_seed(seed)).float()


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch_with_a_dynamic_batch(model, tmp_path, batch):
    path = export_onnx(model, tmp_path / "m.onnx")
    assert not any(m.training for m in model.modules())  # the exporter leaves the mode as it was
    x = images(batch)
    boxes, scores = ort.InferenceSession(str(path)).run(None, {"images": x.numpy()})
    with torch.no_grad():
        loc, conf = model(model.preprocess(x))
    np.testing.assert_allclose(boxes, decode(loc, model.priors).clamp(0, 1).numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(scores, conf.softmax(-1).numpy(), atol=1e-4, rtol=0)


def test_nms_in_the_graph_selects_what_eager_selects(model, tmp_path):
    path = export_onnx(model, tmp_path / "nms.onnx", nms=True, conf_thresh=0.5, top_k=1000)
    x = images(2, seed=1)
    _, _, selected = ort.InferenceSession(str(path)).run(None, {"images": x.numpy()})
    with torch.no_grad():
        _, _, eager = ExportModule(model, nms=True, conf_thresh=0.5, top_k=1000)(x)
    assert len(selected) > 100
    assert set(map(tuple, selected.tolist())) == set(map(tuple, eager.tolist()))
    assert set(selected[:, 1].tolist()) <= {1, 2}  # labels, background excluded


def test_select_nms_caps_per_image_and_class():
    boxes = torch.tensor([[[0, 0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6], [0.8, 0.8, 0.9, 0.9]]]).float()
    scores = torch.tensor([[[0.9, 0.8, 0.7], [0.1, 0.95, 0.2]]])  # [B=1, K=2, P=3]
    assert select_nms(boxes, scores, 2, 0.5, 0.15).tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 2]]


def test_cli_exports_a_checkpoint_and_rejects_bad_weights(model, tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model": "mb1_ssdlite", "model_options": {"width_mult": 0.25}}))
    weights = tmp_path / "last.pth"
    torch.save({"model": model.state_dict()}, weights)
    assert main(["--weights", str(weights), "--nms"]) == 0
    session = ort.InferenceSession(str(tmp_path / "last.onnx"))
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "selected"]
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"x")
    assert main(["--weights", str(bad)]) == 2
    assert "bad.pth: not a readable" in capsys.readouterr().err
