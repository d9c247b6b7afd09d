"""Crowd copy-paste: people cut out with their instance masks are pasted next to the people of a
training image, so that they occlude each other at a controlled density.

    train = open_dataset("pennfudan", root, "train", masks=True)
    bank = PersonBank.from_dataset(train)                  # the training split's people, only
    train.transform = copy_paste_then(CrowdCopyPaste(bank, per_image=(2, 6)), SSDTrainTransform(300))

*Placement.* Each of the k ~ U{per_image} people stands next to an anchor drawn from the image's
people (annotated, or pasted before it): height = anchor height x U(scale), the cut-out's aspect
ratio, feet (box bottom) within ``feet`` anchor heights of the anchor's, and a horizontal offset
solved so that the IoU of the two full boxes is u ~ U(overlap). ``trials`` candidates are drawn at
once; the first that lies inside the image, has its IoU with the anchor in ``overlap`` and with
every other person at most ``overlap[1]`` (no near-duplicates), and is covered by ignore regions
at most ``max_ignore`` wins; if none does, that person is left out (k is an upper bound). In an
image without people the first stands anywhere, at the cut-out's own height x U(scale). Cut-outs
are mirrored with probability 1/2 (``flip``); ``feather`` > 0 blurs the alpha edge (Gaussian sigma).

*Distant groups* (``height=A-B`` pixels): the people of an image are pasted as a group of their
own instead of next to its people: the first stands anywhere at U(A, B) px tall, each next one
next to a member of the group by the rule above, never overlapping anyone by more than
``overlap[1]``. A sample of large people (PennFudanPed's are 100-380 px) so also shows a crowd
at the pixel heights of the far people in sliced video frames (MOT17 tiles: 30-120 px).

*Pair statistics* (CrowdHuman paper, Table 4: same-class pairs per image with IoU > 0.3 / 0.5):
each pasted person adds one pair with its anchor whose IoU lies in ``overlap``, so pairs > 0.3
grow by about E[k] = mean(per_image) when ``overlap[0] >= 0.3`` (by E[k] P(u > 0.3) otherwise),
pairs > 0.5 by about E[k] P(u > 0.5) (e.g. 1/2 for overlap 0.3-0.7), plus the pairs a pasted person
happens to form with the others; persons per image grow by E[k]. ``python -m repssd.data.stats
KIND ROOT --copy-paste OPTIONS`` measures what a setting gives; on PennFudanPed train (2.46 persons,
0.02 / 0.00 pairs per image) ``per_image=2-6`` gives 6.2 persons and 6.2 / 2.7 pairs,
``per_image=1,overlap=0.3-0.6`` 1.1 / 0.33 (CityPersons: 0.96 / 0.32) and
``per_image=4-8,overlap=0.3-0.58`` 8.9 / 2.5 (CrowdHuman: 9.02 / 2.40).

*Depth.* Lower feet are nearer (a ground plane seen from above), so layers are composed back to
front by box bottom. With ``target["masks"]`` (each object's visible pixels) the annotated objects
are layers too: one in front of a pasted person is redrawn over it from the original pixels.
Without masks the annotated people are background: a pasted person is only placed where its feet
are at or below those of every annotated object its box overlaps, so it is rightly drawn on top.

*Targets.* ``boxes`` are full boxes (pasted ones: the placed rectangle, label ``label``, neither
difficult nor ignore; a cut-out is cropped to its mask, so its visible box equals its full box up
to the resampled edge pixels when nothing hides it). Every object gets ``visible`` (the box of its
pixels left visible) and ``visibility`` (visible mask area / mask area, times any earlier
visibility): exact for pasted people and, with masks, annotated objects; without masks an
annotated object's visible box (else its box) stands in for its silhouette. An object hidden below
``min_visibility`` by pasting becomes an ignore region (a positive no detector could see). Ignore
regions keep their entries and masks. ``target["masks"]``, when given, comes back aligned with the new boxes, each the
object's *visible* pixels; :func:`copy_paste_then` drops it before the SSD transform.

Randomness: one draw from torch's generator seeds a NumPy generator per image (as in
SSDTrainTransform), so ``torch.manual_seed`` and the trainer's per-sample seeds reproduce runs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..options import finite_float, given_twice
from .person_bank import Cutout, PersonBank, mask_box

__all__ = ["Cutout", "PersonBank", "Placement", "CrowdCopyPaste", "PasteOptions", "paste_people", "Compose",
           "DropKeys", "copy_paste_then", "parse_copy_paste"]


def _iou(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(IoU, intersection), both [N, M], of xyxy boxes ``a`` [N, 4] and ``b`` [M, 4]."""
    iw = (np.minimum(a[:, None, 2], b[:, 2]) - np.maximum(a[:, None, 0], b[:, 0])).clip(0)  # [N,M]
    ih = (np.minimum(a[:, None, 3], b[:, 3]) - np.maximum(a[:, None, 1], b[:, 1])).clip(0)  # [N,M]
    inter = iw * ih
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b) - inter, 1e-9), inter


@dataclass(frozen=True)
class PasteOptions:
    """The knobs of :class:`CrowdCopyPaste` (see the module docstring), checked."""

    per_image: tuple[int, int] = (2, 6)
    overlap: tuple[float, float] = (0.3, 0.7)
    scale: tuple[float, float] = (0.8, 1.2)
    p: float = 1.0
    feet: float = 0.1  # feet within this many anchor heights of the anchor's
    flip: bool = True  # mirror each cut-out with probability 1/2
    feather: float = 0.0  # Gaussian sigma (px) softening the alpha edge; 0: the resampled mask
    max_ignore: float = 0.5
    min_visibility: float = 0.05
    min_height: int = 8
    trials: int = 32
    height: tuple[float, float] | None = None  # a distant group: the first at U(height) px, anywhere

    def __post_init__(self) -> None:
        (k0, k1), (o0, o1), (s0, s1) = self.per_image, self.overlap, self.scale
        problems = [(not 0 <= k0 <= k1, f"per_image={k0}-{k1}: needs 0 <= A <= B"),
                    (not 0 <= o0 <= o1 < 1, f"overlap={o0}-{o1}: needs 0 <= A <= B < 1"),
                    (not 0 < s0 <= s1, f"scale={s0}-{s1}: needs 0 < A <= B"),
                    (not 0 <= self.p <= 1, f"p={self.p}: needs 0 <= p <= 1"),
                    (self.feet < 0 or self.feather < 0, "feet and feather must be >= 0"),
                    (not 0 <= self.max_ignore <= 1, f"max_ignore={self.max_ignore}: needs 0..1"),
                    (not 0 <= self.min_visibility <= 1, f"min_visibility={self.min_visibility}: needs 0..1"),
                    (self.min_height < 1 or self.trials < 1, "min_height and trials must be >= 1"),
                    (self.height is not None and not 0 < self.height[0] <= self.height[1],
                     f"height={self.height}: needs 0 < A <= B pixels")]
        for bad, message in problems:
            if bad:
                raise ValueError(message)


@dataclass(frozen=True)
class Placement:
    """Where one cut-out goes: ``box`` pixel xyxy (integers, inside the image), mirrored or not."""

    cutout: Cutout
    box: tuple[int, int, int, int]
    flip: bool = False


class CrowdCopyPaste:
    """``transform(image HxWx3 uint8, pixel target) -> (image, target)``: pastes people of
    ``bank`` (see the module docstring; ``label``: the person label of the targets)."""

    def __init__(self, bank: PersonBank, label: int = 1, **options) -> None:
        if not len(bank):
            raise ValueError("the person bank is empty: no person passed its filters")
        self.bank, self.label, self.options = bank, label, PasteOptions(**options)

    def __call__(self, image: np.ndarray, target: dict) -> tuple[np.ndarray, dict]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        o = self.options
        placements = self.place(target, image.shape[:2], rng) if rng.random() < o.p else []
        return paste_people(image, target, placements, self.label, o.feather, o.min_visibility)

    def place(self, target: dict, shape: tuple[int, int], rng: np.random.Generator) -> list[Placement]:
        """The people to paste into an image of ``shape`` (H, W) with ``target``."""
        boxes = target["boxes"].numpy().astype(np.float64).reshape(-1, 4)
        ignore, labels = target["ignore"].numpy(), target["labels"].numpy()
        masked = (target["masks"].numpy().any((1, 2)) if "masks" in target else np.zeros(len(boxes), bool))
        people, regions, behind = boxes[(labels == self.label) & ~ignore], boxes[ignore], boxes[~ignore & ~masked]
        placements = []
        group = self.options.height is not None  # a distant group: anchored on its own members only
        anchors = np.zeros((0, 4)) if group else people
        for _ in range(rng.integers(self.options.per_image[0], self.options.per_image[1] + 1)):
            cutout = self.bank[int(rng.integers(len(self.bank)))]
            box = self._place_one(cutout.mask.shape, anchors, people, regions, behind, shape, rng)
            if box is not None:
                placements.append(Placement(cutout, box, bool(self.options.flip and rng.random() < 0.5)))
                people = np.vstack([people, box])
                anchors = np.vstack([anchors, box]) if group else people
        return placements

    def _place_one(self, cut_hw: tuple[int, int], anchors: np.ndarray, people: np.ndarray, regions: np.ndarray,
                   behind: np.ndarray, shape: tuple[int, int],
                   rng: np.random.Generator) -> tuple[int, int, int, int] | None:
        """The first of ``trials`` candidate boxes (drawn at once) that passes, or None: next to one
        of ``anchors``, overlapping no one of ``people`` by more than ``overlap[1]``."""
        o, t, (height, width) = self.options, self.options.trials, shape
        if len(anchors):
            pick = rng.integers(len(anchors), size=t)
            anchor = anchors[pick]  # [T,4]
            wa, ha = anchor[:, 2] - anchor[:, 0], anchor[:, 3] - anchor[:, 1]
            h = np.round(ha * rng.uniform(*o.scale, t))
            w = np.maximum(np.round(h * cut_hw[1] / cut_hw[0]), 1)
            bottom = np.round(anchor[:, 3] + ha * rng.uniform(-o.feet, o.feet, t))
            iy = np.minimum(anchor[:, 3], bottom) - np.maximum(anchor[:, 1], bottom - h)
            u = rng.uniform(*o.overlap, t)  # IoU = I / (Aa + A - I)  =>  I = u (Aa + A) / (1 + u)
            ix = u * (wa * ha + w * h) / (1 + u) / np.maximum(iy, 1e-9)  # intersection width needed
            shift = np.where(rng.random(t) < 0.5, -1.0, 1.0) * ((wa + w) / 2 - ix)  # centre offset
            left = np.round((anchor[:, 0] + anchor[:, 2]) / 2 + shift - w / 2)
        else:  # nobody to stand next to: U(height) px or the cut-out's own height x scale, anywhere
            own = rng.uniform(*o.height, t) if o.height is not None else cut_hw[0] * rng.uniform(*o.scale, t)
            h = np.round(np.minimum(own, 0.9 * height))
            w = np.maximum(np.round(h * cut_hw[1] / cut_hw[0]), 1)
            left = np.round(rng.uniform(0, 1, t) * (width - w))
            bottom = np.round(h + rng.uniform(0, 1, t) * (height - h))
        box = np.stack([left, bottom - h, left + w, bottom], axis=1)  # [T,4]
        ok = (box[:, 0] >= 0) & (box[:, 1] >= 0) & (box[:, 2] <= width) & (box[:, 3] <= height) & (h >= o.min_height)
        if len(anchors):
            with_anchor = _iou(box, anchors)[0][np.arange(t), pick]
            ok &= (with_anchor >= o.overlap[0]) & (with_anchor <= o.overlap[1])
        if len(people):
            ok &= _iou(box, people)[0].max(1) <= o.overlap[1]
        if len(regions):
            covered = _iou(box, regions)[1].sum(1) / (w * h)  # an upper bound where regions overlap
            ok &= covered <= o.max_ignore
        if len(behind):  # annotated objects without masks stay background: stand in front of them
            ok &= ~((_iou(box, behind)[1] > 0) & (box[:, 3:4] < behind[:, 3])).any(1)
        if not ok.any():
            return None
        return tuple(int(v) for v in box[int(np.argmax(ok))])


def _sprite(placement: Placement, feather: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels uint8 [h, w, 3], alpha float32 [h, w], mask bool [h, w]) at the placed size."""
    x1, y1, x2, y2 = placement.box
    pixels, mask = placement.cutout.pixels, placement.cutout.mask.astype(np.float32)
    if placement.flip:
        pixels, mask = pixels[:, ::-1], mask[:, ::-1]
    interpolation = cv2.INTER_AREA if y2 - y1 < mask.shape[0] else cv2.INTER_LINEAR
    pixels = cv2.resize(np.ascontiguousarray(pixels), (x2 - x1, y2 - y1), interpolation=interpolation)
    alpha = cv2.resize(np.ascontiguousarray(mask), (x2 - x1, y2 - y1), interpolation=interpolation)
    solid = alpha >= 0.5
    if feather > 0:
        alpha = cv2.GaussianBlur(solid.astype(np.float32), (0, 0), feather)
    return pixels, alpha, solid


def paste_people(image: np.ndarray, target: dict, placements: Sequence[Placement], label: int = 1,
                 feather: float = 0.0, min_visibility: float = 0.0) -> tuple[np.ndarray, dict]:
    """Compose ``placements`` into ``image`` back to front and update ``target`` (module docstring)."""
    count, n = len(target["boxes"]), len(placements)
    sprites = [_sprite(p, feather) for p in placements]
    layers = _layers(target, placements, sprites)
    out, rank = _compose(image, layers, placements, sprites)
    pasted_rank = np.array([j >= 0 for *_, j in layers] + [False])  # rank -> a pasted layer? (-1: none)
    ignore = np.concatenate([target["ignore"].numpy(), np.zeros(n, bool)])
    visibility = np.concatenate([target["visibility"].numpy() if "visibility" in target else np.ones(count),
                                 np.ones(n)]).astype(np.float32)
    boxes = np.concatenate([target["boxes"].numpy().reshape(-1, 4), np.array([p.box for p in placements],
                                                                              np.float32).reshape(-1, 4)])
    visible = np.concatenate([target["visible"].numpy().reshape(-1, 4) if "visible" in target else boxes[:count],
                              boxes[count:]]).astype(np.float64)
    masks = target.get("masks")
    new_masks = np.zeros((count + n, *image.shape[:2]), bool) if masks is not None else None
    ranks = {j: r for r, (*_, j) in enumerate(layers)}
    for i in range(count + n):
        key = i - count if i >= count else -1 - i  # a pasted index, or -1 - annotated index
        if ignore[i]:
            if new_masks is not None:
                new_masks[i] = masks[i].numpy()
            continue
        if key in ranks:  # a layer: hidden where a nearer layer owns the pixel
            _, region, mask, _ = layers[ranks[key]]
            seen = mask & (rank[region] <= ranks[key])
        else:  # no mask: its visible box (or box) stands in, hidden only by pasted people
            x1, y1, x2, y2 = _pixel_box(visible[i], *image.shape[1::-1])
            region, mask = np.s_[y1:y2, x1:x2], np.ones((y2 - y1, x2 - x1), bool)
            seen = ~pasted_rank[rank[region]]
        hidden = bool((mask & ~seen).any())
        if key in ranks or hidden:
            visibility[i], visible[i] = _visibility(seen, mask, region, visibility[i])
            ignore[i] = hidden and visibility[i] < min_visibility
        if new_masks is not None and key in ranks:
            new_masks[i][region] = seen
    result = dict(target)
    result.update(boxes=torch.from_numpy(boxes.astype(np.float32)), ignore=torch.from_numpy(ignore),
                  labels=torch.cat([target["labels"], torch.full((n,), label, dtype=torch.int64)]),
                  difficult=torch.cat([target["difficult"], torch.zeros(n, dtype=torch.bool)]),
                  visibility=torch.from_numpy(visibility), visible=torch.from_numpy(visible.astype(np.float32)))
    if new_masks is not None:
        result["masks"] = torch.from_numpy(new_masks)
    return out, result


def _layers(target: dict, placements: Sequence[Placement], sprites: list) -> list[tuple]:
    """``(feet, region slices, bool mask over the region, key)`` back to front; key: the pasted
    index, or -1 - i for annotated object i (non-ignore, with a non-empty mask)."""
    layers = []
    if "masks" in target:
        masks, boxes, ignore = target["masks"].numpy(), target["boxes"].numpy().reshape(-1, 4), target["ignore"]
        for i in np.flatnonzero(~ignore.numpy()):
            found = mask_box(masks[i])
            if found is not None:
                region = np.s_[found[1]:found[3], found[0]:found[2]]
                layers.append((float(boxes[i, 3]), region, masks[i][region], -1 - int(i)))
    for j, (p, (_, _, solid)) in enumerate(zip(placements, sprites)):
        layers.append((float(p.box[3]), np.s_[p.box[1]:p.box[3], p.box[0]:p.box[2]], solid, j))
    layers.sort(key=lambda layer: layer[0])  # stable: equal feet keep annotated first, then pasting order
    return layers


def _compose(image: np.ndarray, layers: list[tuple], placements: Sequence[Placement],
             sprites: list) -> tuple[np.ndarray, np.ndarray]:
    """(composed image, int16 [H, W] rank of the layer owning each pixel, -1 for none)."""
    out, rank, painted = image.copy(), np.full(image.shape[:2], -1, np.int16), []
    for r, (_, region, mask, key) in enumerate(layers):
        if key >= 0:
            pixels, alpha, _ = sprites[key]
            out[region] = cv2.blendLinear(pixels, np.ascontiguousarray(out[region]), alpha, 1 - alpha)
            painted.append(placements[key].box)
        elif painted and (_iou(np.array([_region_box(region)]), np.array(painted))[1] > 0).any():
            np.copyto(out[region], image[region], where=mask[..., None])  # annotated, in front: on top
        np.copyto(rank[region], r, where=mask)
    return out, rank


def _region_box(region: tuple[slice, slice]) -> tuple[int, int, int, int]:
    return region[1].start, region[0].start, region[1].stop, region[0].stop


def _pixel_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """The pixels a float xyxy box touches, clipped to the image."""
    x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    return x1, y1, max(min(int(np.ceil(box[2])), width), x1), max(min(int(np.ceil(box[3])), height), y1)


def _visibility(seen: np.ndarray, mask: np.ndarray, region: tuple[slice, slice],
                before: float) -> tuple[float, list[float]]:
    """(visible fraction x ``before``, box of the visible pixels in image coordinates)."""
    found = mask_box(seen)
    x0, y0 = region[1].start, region[0].start
    if found is None:
        return 0.0, [x0, y0, x0, y0]
    fraction = float(seen.sum()) / max(float(mask.sum()), 1.0)
    return before * fraction, [found[0] + x0, found[1] + y0, found[2] + x0, found[3] + y0]


class Compose:
    """``transform(image, target)`` through each of ``transforms`` in turn."""

    def __init__(self, *transforms: Callable) -> None:
        self.transforms = transforms

    def __call__(self, image, target: dict):
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target


class DropKeys:
    """Removes ``keys`` from the target (e.g. ``"masks"``, which the SSD transforms do not move)."""

    def __init__(self, *keys: str) -> None:
        self.keys = keys

    def __call__(self, image, target: dict):
        return image, {k: v for k, v in target.items() if k not in self.keys}


def copy_paste_then(paste: CrowdCopyPaste, transform: Callable) -> Compose:
    """``paste``, then ``transform`` (e.g. SSDTrainTransform) on the target without its masks."""
    return Compose(paste, DropKeys("masks"), transform)


def _range(cast: Callable) -> Callable[[str], tuple]:
    """A parser of ``"A-B"`` (or ``"A"``, meaning A-A) into ``(cast(A), cast(B))``."""
    def parse(value: str) -> tuple:
        parts = value.split("-")
        if len(parts) > 2:
            raise ValueError
        return cast(parts[0]), cast(parts[-1])
    return parse


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError
    return value.lower() in ("true", "1")


_RANGES = {"per_image": _range(int), "overlap": _range(finite_float), "scale": _range(finite_float),
           "height": _range(finite_float)}
_PARSERS = {**_RANGES, "p": finite_float, "feet": finite_float, "flip": _bool, "feather": finite_float,
            "max_ignore": finite_float, "min_visibility": finite_float, "min_height": int, "trials": int}


def parse_copy_paste(text: str) -> dict:
    """``"per_image=2-6,overlap=0.3-0.7,p=1.0"`` -> :class:`CrowdCopyPaste` keyword arguments
    (ranges ``A-B`` or one value ``A``); ValueError (one line) on a bad key or value."""
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"{item!r} is not key=value")
        if key not in _PARSERS:
            raise ValueError(f"unknown option {key!r}; known: {', '.join(_PARSERS)}")
        if key in options:
            raise ValueError(given_twice(key))
        try:
            options[key] = _PARSERS[key](value.strip())
        except ValueError:
            kind = "range A-B" if key in _RANGES else "value"
            raise ValueError(f"{key}={value.strip()}: not a valid {kind}") from None
    PasteOptions(**options)  # checks the values
    return options
