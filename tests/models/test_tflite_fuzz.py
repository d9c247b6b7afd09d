"""The TFLite import on corrupt files: seeded single-byte changes and truncations of a small written
SSD (most of them in the flatbuffer's tables, where an index or a shape lives, rather than in the
weights) either convert or are refused in one line naming the file: never a traceback from deep
inside, never weights with NaN in them."""
import numpy as np
import pytest
import torch

from repssd.convert import WeightsError
from repssd.convert.tflite_model import convert_tflite
from repssd.models import build_model
from tflite_writer import randomised, ssd_tflite, write_tflite

MUTATIONS = 200
TABLES = 1 << 16  # the builder writes the weight buffers first: they end up last, the tables in the first bytes

def mutated(data: bytes, rng: np.random.Generator) -> bytes:
    """``data`` cut short (1 in 5), or with one byte replaced: in the tables, in the last bytes or anywhere."""
    if rng.random() < 0.2:
        return data[: int(rng.integers(8, len(data)))]
    where = rng.random()
    low, high = (0, TABLES) if where < 0.5 else (len(data) - TABLES, len(data)) if where < 0.75 else (0, len(data))
    changed = bytearray(data)
    changed[int(rng.integers(low, high))] = int(rng.integers(0, 256))
    return bytes(changed)

@pytest.fixture(scope="module")
def written(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "m.tflite"
    postprocess = {"max_detections": 10, "nms_iou_threshold": 0.6, "nms_score_threshold": 1e-8, "num_classes": 1,
                   "y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0, "w_scale": 5.0}
    return ssd_tflite(randomised(build_model("ssd_mbv1_tf", 2, image_size=(64, 64))), path,
                      postprocess=postprocess).read_bytes()

def test_every_corrupt_file_converts_or_is_refused_in_one_line(written, tmp_path):
    rng = np.random.default_rng(2026)
    path = tmp_path / "corrupt.tflite"
    outcomes = {"converted": 0, "refused": 0}
    for _ in range(MUTATIONS):
        path.write_bytes(mutated(written, rng))
        try:
            state, _ = convert_tflite(path)
        except WeightsError as err:  # TFLiteError is one
            message = str(err)
            assert message.startswith(str(path)) and "\n" not in message, message
            outcomes["refused"] += 1
            continue
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
        outcomes["converted"] += 1
    assert min(outcomes.values()) > MUTATIONS // 10, outcomes  # both kinds are exercised

def test_an_operator_naming_a_tensor_past_the_table_is_refused(tmp_path):
    """The variant the fuzzing found first: a conv input index beyond the tensor table."""

    tensors = [{"name": "image", "dtype": np.float32, "shape": (1, 8, 8, 3), "data": None, "quantised": False},
               {"name": "out", "dtype": np.float32, "shape": (1, 8, 8, 4), "data": None, "quantised": False}]
    path = write_tflite(tmp_path / "bad.tflite", tensors, [{"kind": "CONV_2D", "inputs": [0, 7, 1], "outputs": [1]}],
                        [0], [1])
    with pytest.raises(WeightsError, match=r"bad\.tflite: operator 0 \(CONV_2D\) inputs name tensor 7, but the file "
                                           r"has 2 tensors"):
        convert_tflite(path)

def test_nan_weights_are_refused_naming_the_file(tmp_path):
    model = randomised(build_model("ssd_mbv1_tf", 2, image_size=(64, 64)))
    with torch.no_grad():
        model.head.conf[0].weight[0, 0, 0, 0] = float("inf")
    path = ssd_tflite(model, tmp_path / "inf.tflite")
    with pytest.raises(WeightsError, match=r"inf\.tflite: NaN or infinite weights in 1 tensor\(s\), e.g. head\.conf\.0"):
        convert_tflite(path)
