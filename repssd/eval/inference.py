"""Batched inference over a dataset, detections in each image's own pixels (eval.py, training)."""
from __future__ import annotations

import bisect
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data import collate
from ..detector import Detector
from ..inputs import InputError
from ..postprocess import candidate_options, detect

__all__ = ["predict_dataset", "predict_with_candidates", "predict_sliced", "candidate_options", "ranked", "ground_truth_of", "scored_images",
           "image_ids", "load_image"]

class _NoSubstitutes(Dataset):
    """Index ``i`` of a dataset (or a concatenation) as ``(i, sample)``, or ``(i, error message)``
    when its image cannot be read: never another image in its place (training's fallback)."""

    def __init__(self, dataset: Dataset, raw: bool = False) -> None:
        self.raw = raw  # untransformed images (sliced inference resizes tiles itself)
        self.parts = list(getattr(dataset, "datasets", [dataset]))
        self.starts = [0]
        for part in self.parts:
            self.starts.append(self.starts[-1] + len(part))

    def __len__(self) -> int:
        return self.starts[-1]

    def part_of(self, index: int) -> tuple:
        """(the part holding ``index``, the index within it)."""
        k = bisect.bisect_right(self.starts, index) - 1
        return self.parts[k], index - self.starts[k]

    def __getitem__(self, index: int):
        part, local = self.part_of(index)
        try:
            image, target = part.load(local)
        except InputError as err:
            return index, str(err)
        return index, part.transform(image, target) if part.transform and not self.raw else (image, target)


def _collate_readable(items: list) -> tuple[list[int], list[int], list[str], dict | None]:
    """(indices of readable images, indices of unreadable ones, their errors, batch or None)."""
    good = [(i, sample) for i, sample in items if not isinstance(sample, str)]
    bad = [(i, error) for i, error in items if isinstance(error, str)]
    return ([i for i, _ in good], [i for i, _ in bad], [e for _, e in bad],
            collate([sample for _, sample in good]) if good else None)


def ranked(detect_options: dict) -> dict:
    """``detect_options`` with float64 scores (unless they name a ``score_dtype``): scores that are
    ranked must stay distinct where float32 would round them to 1.0 (:func:`detect`)."""
    return {"score_dtype": torch.float64, **detect_options}


def predict_dataset(model: nn.Module, dataset: Dataset, batch_size: int = 16, workers: int = 0,
                    device: torch.device | str | None = None, progress: bool = True,
                    **detect_options) -> list[dict | None]:
    """Run ``model`` over ``dataset`` (whose transform resizes to the model input, e.g.
    ``SSDTestTransform``) -> per image ``{"boxes": [N, 4] pixel xyxy, "scores", "labels"}``, in the
    dataset's order; None for an image that cannot be read (with a warning naming it). The
    evaluator leaves such images out of both detections and ground truth."""
    return _predict(model, dataset, batch_size, workers, device, progress, [detect_options])[0]


@torch.no_grad()
def _predict(model: nn.Module, dataset: Dataset, batch_size: int, workers: int, device, progress: bool,
             options: list[dict]) -> list[list[dict | None]]:
    """One forward pass per batch, post-processed once per entry of ``options``: per entry, the
    detections of every image (pixel boxes) in the dataset's order, None where unreadable."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval().to(device)
    loader = DataLoader(_NoSubstitutes(dataset), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate_readable)
    results: list[list[dict | None]] = [[None] * len(loader.dataset) for _ in options]
    for indices, _, errors, batch in tqdm(loader, desc="inference", unit="batch", disable=not progress, leave=False):
        for error in errors:
            warnings.warn(f"{error}; left out of the evaluation (detections and ground truth)", stacklevel=3)
        if batch is None:
            continue
        loc, conf = model(model.preprocess(batch["images"].to(device, non_blocking=True)))
        sizes = batch["sizes"].to(device)
        for out, post in zip(results, options):
            for index, det, (height, width) in zip(indices, detect(loc, conf, model.priors, **ranked(post)), sizes):
                scale = torch.stack([width, height, width, height]).to(det.boxes.dtype)
                out[index] = {"boxes": (det.boxes * scale).cpu(), "scores": det.scores.cpu(),
                              "labels": det.labels.cpu()}
    model.train(was_training)
    return results


@torch.no_grad()
def predict_sliced(model: nn.Module, dataset: Dataset, slicing, batch_size: int = 16, workers: int = 0,
                   device: torch.device | str | None = None, progress: bool = True, with_candidates: bool = False,
                   images_per_step: int = 4, **detect_options):
    """:func:`predict_dataset` with sliced inference (``slicing``: a :class:`repssd.slicing.Slicing`):
    each image's tiles at the model input, ``batch_size`` tiles per forward pass, the tiles of
    ``images_per_step`` images merged together. The dataset's own transform is not used (tiles
    are cut from the original image). With ``with_candidates`` -> (detections, candidates) as
    :func:`predict_with_candidates`, the candidates linked to the detections they ended in."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    detector = Detector(model, device=device, batch_size=batch_size, slicing=slicing, **ranked(detect_options))
    loader = DataLoader(_NoSubstitutes(dataset, raw=True), batch_size=images_per_step, shuffle=False,
                        num_workers=workers, collate_fn=list)
    kept: list[dict | None] = [None] * len(loader.dataset)
    candidates: list[dict | None] = [None] * len(loader.dataset)
    for items in tqdm(loader, desc="sliced inference", unit="step", disable=not progress, leave=False):
        good = [(i, sample[0]) for i, sample in items if not isinstance(sample, str)]
        for error in (sample for _, sample in items if isinstance(sample, str)):
            warnings.warn(f"{error}; left out of the evaluation (detections and ground truth)", stacklevel=2)
        if not good:
            continue
        out = detector.predict_sliced([image for _, image in good], with_candidates=with_candidates)
        dets, cands = out if with_candidates else (out, [None] * len(good))
        for (index, _), det, cand in zip(good, dets, cands):
            kept[index] = {"boxes": det.boxes, "scores": det.scores, "labels": det.labels}
            candidates[index] = cand
    return (kept, candidates) if with_candidates else kept


def predict_with_candidates(model: nn.Module, dataset: Dataset, batch_size: int = 16, workers: int = 0,
                            device: torch.device | str | None = None, progress: bool = True,
                            **detect_options) -> tuple[list[dict | None], list[dict | None]]:
    """:func:`predict_dataset` and, from the same network outputs (one forward pass per batch),
    the candidates (:func:`candidate_options`) -> (kept, candidates), both per image in the
    dataset's order, None for an unreadable image. Every kept detection is a candidate (box,
    score and label identical)."""
    kept, candidates = _predict(model, dataset, batch_size, workers, device, progress,
                                [detect_options, candidate_options(detect_options)])
    return kept, [c if k is None else _with_kept(k, c) for k, c in zip(kept, candidates)]


def _with_kept(kept: dict, candidates: dict) -> dict:
    """``candidates`` plus any kept detection they lack, best first. Only equal scores at the
    per-class ``candidates`` cap cause one: torch.topk's choice among ties depends on its k, which
    differs between the two post-processings."""
    same = (kept["boxes"][:, None] == candidates["boxes"][None]).all(-1)  # [K,C]
    same &= (kept["scores"][:, None] == candidates["scores"]) & (kept["labels"][:, None] == candidates["labels"])
    lacking = ~same.any(1)
    if not lacking.any():
        return candidates
    joined = {key: torch.cat([candidates[key], kept[key][lacking]]) for key in candidates}
    order = joined["scores"].argsort(descending=True, stable=True)
    return {key: value[order] for key, value in joined.items()}


def scored_images(detections: Sequence, ground_truth: Sequence) -> tuple[list, list, list[int]]:
    """Drop the images :func:`predict_dataset` could not read (None) from detections and ground
    truth alike -> (detections, ground truth, indices left out)."""
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection entries for {len(ground_truth)} images")
    missing = [i for i, d in enumerate(detections) if d is None]
    if not missing:
        return list(detections), list(ground_truth), []
    keep = [i for i, d in enumerate(detections) if d is not None]
    return [detections[i] for i in keep], [ground_truth[i] for i in keep], missing


def image_ids(dataset: Dataset) -> list[str]:
    """The image ids of a dataset or a concatenation, in order."""
    return [record.id for part in getattr(dataset, "datasets", [dataset]) for record in part.records]


def load_image(dataset: Dataset, index: int):
    """Image ``index`` of a dataset or a concatenation, untransformed (HxWx3 uint8 RGB)."""
    part, local = _NoSubstitutes(dataset).part_of(index)
    return part.load(local)[0]


def ground_truth_of(dataset: Dataset) -> list[dict]:
    """Per image GT in original pixels (``boxes``, ``labels``, ``difficult``, ``ignore``), read from
    the annotations (no image is decoded); works on concatenations."""
    parts = getattr(dataset, "datasets", [dataset])
    return [record.target() for part in parts for record in part.records]
