"""Running a model over the tiles of many images at once: tiles streamed through the network in
batches, post-processed together, boxes shifted back into image pixels, then merged.

Only ``batch_size`` resized tiles exist at a time, so memory stays bounded on any image size;
the detections of all tiles of the images in one call are merged in one batched pass.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from ..data.transforms import resize
from ..postprocess import Detections, candidate_options, detect, rank_in_group
from .geometry import Slicing
from .merge import MergeResult, Sources, merge

__all__ = ["TileDetections", "sliced_predict", "image_tiles", "smallest_anchor"]


def smallest_anchor(model: nn.Module) -> float:
    """Height of the model's smallest prior, as a fraction of its input height."""
    return float(model.priors[:, 3].min())


@dataclass
class TileDetections:
    """Detections of every tile of a batch of images, before the merge (pixels of their image).

    Attributes:
        boxes (Tensor[N, 4]), scores (Tensor[N]), labels (Tensor[N]): the tiles' detections.
        source (Tensor[N] int64): the tile each came from (row of ``sources``).
        sources: the tiles.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    source: Tensor
    sources: Sources


def image_tiles(images: Sequence[np.ndarray], slicing: Slicing, input_size: tuple[int, int],
                anchor: float) -> tuple[list[np.ndarray], Sources]:
    """Tiles of each image (``int64 [T_i, 4]``) and all of them as :class:`Sources`."""
    tiles, image, interior, warned = [], [], [], False
    for i, img in enumerate(images):
        height, width = img.shape[:2]
        boxes = slicing.tiles(height, width, input_size, anchor)
        if not warned and slicing.size != "auto" and len(boxes) == 1:  # one tile: the tile covers the image
            tile_w, tile_h = slicing.size
            warnings.warn(f"slicing: a {tile_w}x{tile_h} tile covers the whole of an image (e.g. {width}x{height}); "
                          "such images run as one tile, without a second whole-image pass", stacklevel=3)
            warned = True
        tiles.append(boxes)
        image.append(np.full(len(boxes), i))
        interior.append(np.concatenate([boxes[:, :2] > 0, boxes[:, 2:3] < width, boxes[:, 3:4] < height], 1))
    sources = Sources(torch.from_numpy(np.concatenate(tiles)).float(), torch.from_numpy(np.concatenate(image)),
                      torch.from_numpy(np.concatenate(interior)).bool())
    return tiles, sources


def _crops(images: Sequence[np.ndarray], tiles: list[np.ndarray], size: tuple[int, int]) -> Iterator[np.ndarray]:
    for img, boxes in zip(images, tiles):
        for x0, y0, x1, y1 in boxes.tolist():
            yield resize(np.ascontiguousarray(img[y0:y1, x0:x1]), size)


@torch.no_grad()
def _run_tiles(model: nn.Module, images: Sequence[np.ndarray], tiles: list[np.ndarray], batch_size: int,
               device: torch.device, options: list[dict]) -> list[list[Detections]]:
    """Every tile through the network ``batch_size`` at a time, post-processed once per entry of
    ``options`` -> per entry, per tile, detections in the tile's normalised coordinates."""
    out: list[list[Detections]] = [[] for _ in options]
    crops = _crops(images, tiles, model.input_size)
    while batch := list(islice(crops, batch_size)):
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).to(device)
        loc, conf = model(model.preprocess(x))
        for results, post in zip(out, options):
            results += [d.to("cpu") for d in detect(loc, conf, model.priors, **post)]
    return out


def _to_pixels(per_tile: list[Detections], sources: Sources) -> TileDetections:
    """Per-tile normalised detections -> one flat list in image pixels, clipped to the tile."""
    counts = torch.tensor([len(d) for d in per_tile], dtype=torch.int64)
    source = torch.repeat_interleave(torch.arange(len(per_tile)), counts)
    boxes = torch.cat([d.boxes for d in per_tile]).float() if per_tile else torch.zeros(0, 4)
    region = sources.regions[source]  # [N,4]
    size = (region[:, 2:] - region[:, :2]).repeat(1, 2)
    boxes = boxes * size + region[:, :2].repeat(1, 2)
    boxes = torch.maximum(torch.minimum(boxes, region[:, 2:].repeat(1, 2)), region[:, :2].repeat(1, 2))
    scores = torch.cat([d.scores for d in per_tile]) if per_tile else torch.zeros(0)
    labels = torch.cat([d.labels for d in per_tile]) if per_tile else torch.zeros(0, dtype=torch.int64)
    return TileDetections(boxes, scores, labels, source, sources)


def _split_images(tiles: TileDetections, result: MergeResult, num_images: int) -> tuple[list[Detections], Tensor]:
    """Kept detections per image, best first, and each input detection's index in its image's
    list (for kept ones; -1 otherwise)."""
    image = tiles.sources.image[tiles.source]
    kept = torch.nonzero(result.keep).squeeze(1)
    order = kept[(-tiles.scores[kept]).argsort(stable=True)]
    order = order[image[order].argsort(stable=True)]  # by image, best first within each
    counts = torch.bincount(image[order], minlength=num_images)
    position = torch.full_like(tiles.source, -1)
    position[order] = rank_in_group(image[order], num_images)
    parts = zip(result.boxes[order].split(counts.tolist()), tiles.scores[order].split(counts.tolist()),
                tiles.labels[order].split(counts.tolist()))
    return [Detections(*p) for p in parts], position


def sliced_predict(model: nn.Module, images: Sequence[np.ndarray], slicing: Slicing, batch_size: int,
                   device: torch.device, with_candidates: bool = False, **detect_options):
    """Sliced detection of ``images`` (HxWx3 uint8 RGB arrays of any sizes).

    Returns:
        One :class:`Detections` per image (xyxy pixels of that image, best first); with
        ``with_candidates`` also, per image, the crowd error analysis' candidates: every tile's
        post-processed output without NMS, as ``{"boxes", "scores", "labels", "final", "merged"}``
        where ``final`` is the index of the returned detection a candidate became or was merged
        into (-1: removed by its tile's NMS) and ``merged`` whether the merge removed it.
    """
    anchor = smallest_anchor(model)
    tiles, sources = image_tiles(images, slicing, model.input_size, anchor)
    options = [detect_options, candidate_options(detect_options)] if with_candidates else [detect_options]
    outputs = _run_tiles(model, images, tiles, batch_size, device, options)
    kept = _to_pixels(outputs[0], sources)
    thresh = slicing.threshold(detect_options.get("nms_thresh", 0.45))
    result = merge(kept.boxes, kept.scores, kept.labels, kept.source, sources, slicing.merge, slicing.metric,
                   thresh, slicing.edge_margin)
    detections, position = _split_images(kept, result, len(images))
    if not with_candidates:
        return detections
    return detections, _candidates(_to_pixels(outputs[1], sources), kept, result, position, len(images))


def _candidates(raw: TileDetections, kept: TileDetections, result: MergeResult, position: Tensor,
                num_images: int) -> list[dict]:
    """Per image the raw tile candidates, each linked to the returned detection it ended in."""
    key = lambda t: torch.cat([t.source[:, None].double(), t.scores[:, None].double(), t.boxes.double()], 1)
    both = torch.cat([key(kept), key(raw)])
    _, ids = torch.unique(both, dim=0, return_inverse=True)
    kept_ids, raw_ids = ids[:kept.scores.shape[0]], ids[kept.scores.shape[0]:]
    lookup = torch.full((int(ids.max()) + 1 if ids.numel() else 1,), -1, dtype=torch.int64)
    lookup[kept_ids] = torch.arange(kept_ids.shape[0])
    tile_det = lookup[raw_ids]  # [C]: the tile detection it is, -1: removed by the tile's NMS
    survivor = torch.where(tile_det >= 0, tile_det, 0)
    owner = torch.where(result.keep[survivor], survivor, result.owner[survivor])
    final = torch.where(tile_det >= 0, position[owner], -1)
    merged = (tile_det >= 0) & ~result.keep[survivor]
    image = raw.sources.image[raw.source]
    out = []
    for i in range(num_images):
        mine = image == i
        out.append({"boxes": raw.boxes[mine], "scores": raw.scores[mine], "labels": raw.labels[mine],
                    "final": final[mine], "merged": merged[mine]})
    return out
