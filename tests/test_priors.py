"""Priors against literal transcriptions of the two reference generators (nested loops)."""
import itertools
import math

import pytest
import torch

from repssd.priors import SPECS, PriorSpec, generate_priors, get_spec


def ssd_pytorch_priors(spec: PriorSpec) -> torch.Tensor:
    """ssd.pytorch layers/functions/prior_box.py PriorBox.forward, loop for loop."""
    mean = []
    for k, f in enumerate(spec.feature_maps):
        for i, j in itertools.product(range(f), repeat=2):
            f_k = spec.image_size / spec.steps[k]
            cx, cy = (j + 0.5) / f_k, (i + 0.5) / f_k
            s_k = spec.min_sizes[k] / spec.image_size
            mean += [cx, cy, s_k, s_k]
            s_k_prime = math.sqrt(s_k * (spec.max_sizes[k] / spec.image_size))
            mean += [cx, cy, s_k_prime, s_k_prime]
            for ar in spec.aspect_ratios[k]:
                mean += [cx, cy, s_k * math.sqrt(ar), s_k / math.sqrt(ar)]
                mean += [cx, cy, s_k / math.sqrt(ar), s_k * math.sqrt(ar)]
    return torch.Tensor(mean).view(-1, 4).clamp_(max=1, min=0)


def pytorch_ssd_priors(spec: PriorSpec) -> torch.Tensor:
    """qfgaohao/pytorch-ssd vision/utils/box_utils.py generate_ssd_priors, loop for loop."""
    priors = []
    for k, f in enumerate(spec.feature_maps):
        scale = spec.image_size / spec.steps[k]
        for j, i in itertools.product(range(f), repeat=2):
            x_center, y_center = (i + 0.5) / scale, (j + 0.5) / scale
            h = w = spec.min_sizes[k] / spec.image_size
            priors.append([x_center, y_center, w, h])
            h = w = math.sqrt(spec.max_sizes[k] * spec.min_sizes[k]) / spec.image_size
            priors.append([x_center, y_center, w, h])
            h = w = spec.min_sizes[k] / spec.image_size
            for ratio in spec.aspect_ratios[k]:
                ratio = math.sqrt(ratio)
                priors.append([x_center, y_center, w * ratio, h / ratio])
                priors.append([x_center, y_center, w / ratio, h * ratio])
    return torch.clamp(torch.tensor(priors), 0.0, 1.0)


@pytest.mark.parametrize("name, count", [("ssd300_voc", 8732), ("ssd300_coco", 8732),
                                         ("ssd512_voc", 24564), ("ssd512_coco", 24564),
                                         ("mobilenet_ssd300", 3000), ("ssd300_torchvision", 8732)])
def test_prior_counts(name, count):
    spec = get_spec(name)
    assert spec.num_priors == count
    assert generate_priors(spec).shape == (count, 4)


@pytest.mark.parametrize("name", ["ssd300_voc", "ssd300_coco", "ssd512_voc", "ssd512_coco"])
def test_priors_equal_ssd_pytorch_exactly(name):
    assert torch.equal(generate_priors(name), ssd_pytorch_priors(get_spec(name)))


def test_mobilenet_priors_equal_pytorch_ssd_exactly():
    assert torch.equal(generate_priors("mobilenet_ssd300"), pytorch_ssd_priors(get_spec("mobilenet_ssd300")))


def test_ssd300_voc_first_rows_of_each_map():
    priors = generate_priors("ssd300_voc")
    r2, r3 = math.sqrt(2), math.sqrt(3)
    # First cell of the 38x38 map: s_k = 30/300, s_k' = sqrt(0.1 * 60/300), then ar 2 pair.
    first = [[0.5 / 37.5, 0.5 / 37.5, 0.1, 0.1],
             [0.5 / 37.5, 0.5 / 37.5, math.sqrt(0.1 * 0.2), math.sqrt(0.1 * 0.2)],
             [0.5 / 37.5, 0.5 / 37.5, 0.1 * r2, 0.1 / r2],
             [0.5 / 37.5, 0.5 / 37.5, 0.1 / r2, 0.1 * r2]]
    torch.testing.assert_close(priors[:4], torch.tensor(first))
    # Second cell moves along x (column) first, then rows.
    torch.testing.assert_close(priors[4, :2], torch.tensor([1.5 / 37.5, 0.5 / 37.5]))
    torch.testing.assert_close(priors[4 * 38, :2], torch.tensor([0.5 / 37.5, 1.5 / 37.5]))
    # First cell of the 19x19 map (offset 38*38*4 = 5776): 6 boxes, ar 2 and 3.
    s = 60 / 300
    second = [[0.5 / 18.75, 0.5 / 18.75, s, s],
              [0.5 / 18.75, 0.5 / 18.75, math.sqrt(s * 111 / 300), math.sqrt(s * 111 / 300)],
              [0.5 / 18.75, 0.5 / 18.75, s * r2, s / r2], [0.5 / 18.75, 0.5 / 18.75, s / r2, s * r2],
              [0.5 / 18.75, 0.5 / 18.75, s * r3, s / r3], [0.5 / 18.75, 0.5 / 18.75, s / r3, s * r3]]
    torch.testing.assert_close(priors[5776:5782], torch.tensor(second))
    # The 1x1 map's big square is clipped: sqrt(264 * 315) / 300 = 0.961; its ar-2 box is 1.245 wide -> 1.
    last = priors[-4:]
    torch.testing.assert_close(last[:, :2], torch.full((4, 2), 0.5))
    assert last[2, 2].item() == 1.0 and last[3, 3].item() == 1.0


@pytest.mark.parametrize("name", sorted(n for n, s in SPECS.items() if isinstance(s, PriorSpec)))
def test_first_row_of_each_map_is_its_first_cell(name):
    spec = get_spec(name)
    priors = generate_priors(spec)
    offset = 0
    for k, (f, a) in enumerate(zip(spec.feature_maps, spec.boxes_per_location)):
        centre = 0.5 * spec.steps[k] / spec.image_size
        row = priors[offset]
        torch.testing.assert_close(row, torch.tensor([centre, centre, spec.min_sizes[k] / spec.image_size,
                                                      spec.min_sizes[k] / spec.image_size]).clamp(0, 1))
        offset += f * f * a
    assert offset == spec.num_priors


def test_priors_are_clipped_and_cached():
    priors = generate_priors("ssd512_coco")
    assert priors.min() >= 0 and priors.max() <= 1
    assert generate_priors("ssd512_coco") is priors
    assert generate_priors(get_spec("ssd512_coco"), device="cpu") is priors
    assert generate_priors("ssd512_coco", dtype=torch.float64).dtype == torch.float64


def test_priors_on_meta_device():
    priors = generate_priors("ssd300_voc", device="meta")
    assert priors.device.type == "meta" and priors.shape == (8732, 4)


def test_unknown_spec_lists_known_names():
    with pytest.raises(ValueError, match="ssd300_voc"):
        get_spec("ssd301")


def test_inconsistent_spec_is_rejected():
    with pytest.raises(ValueError, match="entries"):
        PriorSpec("bad", 300, (38, 19), (8,), (30, 60), (60, 111), ((2,), (2,)))


def test_boxes_per_location_is_derived():
    assert get_spec("ssd300_voc").boxes_per_location == (4, 6, 6, 6, 4, 4)
    assert get_spec("ssd512_voc").boxes_per_location == (4, 6, 6, 6, 6, 4, 4)
    assert get_spec("mobilenet_ssd300").boxes_per_location == (6,) * 6


# ----------------------------------------------------------------------------- TF's grid anchors
def test_grid_anchors_equal_tensorflows():
    """The anchors the original TF graph computes (tests/fixtures/make_tf_reference.py)."""
    from pathlib import Path

    import numpy as np
    anchors = np.load(Path(__file__).parent / "fixtures" / "tf_ssdlite_reference.npz")["astronaut/anchors"]
    ymin, xmin, ymax, xmax = anchors.T
    tf_cxcywh = torch.from_numpy(np.stack([(xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin], 1))
    torch.testing.assert_close(generate_priors("tf_ssd_anchors"), tf_cxcywh, rtol=0, atol=1e-6)


def test_grid_anchor_shapes_by_hand():
    spec = get_spec("tf_ssd_anchors")
    priors = generate_priors(spec)
    assert spec.boxes_per_location == (3, 6, 6, 6, 6, 6) and priors.shape == (1917, 4)
    r2 = math.sqrt(2)
    # first cell of the 19x19 map: (0.1, 1:1), (0.2, 2:1), (0.2, 1:2), centred at 0.5 / 19
    c = 0.5 / 19
    torch.testing.assert_close(priors[:3], torch.tensor([[c, c, 0.1, 0.1], [c, c, 0.2 * r2, 0.2 / r2],
                                                         [c, c, 0.2 / r2, 0.2 * r2]]))
    last = priors[-6:]  # the 1x1 map: scale 0.95, ratios 1, 2, 0.5, 3, 0.3333, then sqrt(0.95 * 1) at 1:1
    torch.testing.assert_close(last[:, :2], torch.full((6, 2), 0.5))
    r3, r03 = math.sqrt(3), math.sqrt(0.3333)
    torch.testing.assert_close(last[:, 2:], torch.tensor([[0.95, 0.95], [0.95 * r2, 0.95 / r2], [0.95 / r2, 0.95 * r2],
                                                          [0.95 * r3, 0.95 / r3], [0.95 * r03, 0.95 / r03],
                                                          [math.sqrt(0.95)] * 2]))
    # the second map's scale: 0.2 + 0.75 / 5
    first_of_second = priors[19 * 19 * 3]
    torch.testing.assert_close(first_of_second, torch.tensor([0.05, 0.05, 0.35, 0.35]))


def test_grid_anchors_on_a_non_square_input_stay_square_in_pixels():
    spec = get_spec("tf_ssd_anchors").with_input_size(640, 384).with_feature_maps(((24, 40), (12, 20), (6, 10),
                                                                                  (3, 5), (2, 3), (1, 2)))
    priors = generate_priors(spec)
    assert priors.shape == (spec.num_priors, 4) == (3 * 24 * 40 + 6 * (240 + 60 + 15 + 6 + 2), 4)
    square = priors[0]  # (0.1, 1:1) of the first cell: 0.1 of the shorter side (384 px) each way
    torch.testing.assert_close(square[2:] * torch.tensor([640.0, 384.0]), torch.tensor([38.4, 38.4]))
    torch.testing.assert_close(square[:2], torch.tensor([0.5 / 40, 0.5 / 24]))  # x from 40 columns, y from 24 rows
    second_cell = priors[3]  # next column, same row
    torch.testing.assert_close(second_cell[:2], torch.tensor([1.5 / 40, 0.5 / 24]))


def test_anchor_reference_keeps_pixel_sizes_at_other_inputs():
    from repssd.models import build_model, size_option

    native = build_model("ssdlite_mbv2_tf", 2)
    same = build_model("ssdlite_mbv2_tf", 2, anchor_reference=300)
    assert torch.equal(native.priors, same.priors)  # at 300 px the reference is the input itself
    big = build_model("ssdlite_mbv2_tf", 2, image_size=600, anchor_reference=300)
    relative = build_model("ssdlite_mbv2_tf", 2, image_size=600)
    # first box of the first map: 0.1 of 300 px = 30 px either way with the reference, 60 px without
    torch.testing.assert_close(big.priors[0, 2:] * 600, torch.tensor([30.0, 30.0]))
    torch.testing.assert_close(relative.priors[0, 2:] * 600, torch.tensor([60.0, 60.0]))
    torch.testing.assert_close(big.priors[:, :2], relative.priors[:, :2])  # same centres
    assert size_option("640x384", 300) == {"image_size": (640, 384), "anchor_reference": 300}
    assert size_option(None) == {}
