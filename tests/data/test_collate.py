import pytest
import torch

from repssd.data import collate


def sample(n, ignore=()):
    target = {"boxes": torch.rand(n, 2).repeat(1, 2) * 0.5 + torch.tensor([0, 0, 0.4, 0.4]),
              "labels": torch.arange(1, n + 1), "difficult": torch.zeros(n, dtype=torch.bool),
              "ignore": torch.tensor([i in ignore for i in range(n)], dtype=torch.bool), "size": torch.tensor([40, 60])}
    return torch.zeros(3, 8, 8, dtype=torch.uint8), target


def test_padding_and_validity():
    batch = collate([sample(2), sample(0), sample(3, ignore={1})])
    assert batch["gt_boxes"].shape == (3, 3, 4) and batch["images"].shape == (3, 3, 8, 8)
    assert batch["gt_valid"].tolist() == [[True, True, False], [False, False, False], [True, False, True]]
    assert batch["gt_ignore"][2].tolist() == [False, True, False]
    assert batch["gt_labels"][0].tolist() == [1, 2, 0] and batch["sizes"].tolist() == [[40, 60]] * 3


def test_all_empty_batch_keeps_one_padded_slot():
    batch = collate([sample(0), sample(0)])
    assert batch["gt_boxes"].shape == (2, 1, 4) and not batch["gt_valid"].any()


def test_untransformed_samples_are_refused_clearly():
    import numpy as np
    with pytest.raises(ValueError, match="need a transform"):
        collate([(np.zeros((4, 4, 3)), sample(1)[1])])
