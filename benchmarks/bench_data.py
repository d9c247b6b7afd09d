"""Training-pipeline throughput: repssd's loader + SSD augmentation vs an ssd.pytorch-style one.

    python benchmarks/bench_data.py [--images 200] [--size 500] [--repeats 3]

One worker (one process, torch and OpenCV limited to one thread each, as in a DataLoader
worker) decodes and augments ``--images`` synthetic images of ``--size`` px width (VOC's images
are about 500 x 375) to 300 x 300, through:

- repssd: ``VOCDetection`` + ``SSDTrainTransform`` (torchvision.transforms.v2 on uint8 tensors);
- ssd.pytorch: ``cv2.imread`` + its ``SSDAugmentation`` (float32 NumPy/OpenCV), transcribed here
  (including its crop check that accepts any patch).

Prints images/s per worker and the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from numpy import random

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from repssd.data import SSDTrainTransform, VOCDetection, read_classes  # noqa: E402
from repssd.data.synthetic import generate  # noqa: E402


# --- ssd.pytorch utils/augmentations.py, transcribed ------------------------------------------
def intersect(box_a, box_b):
    max_xy = np.minimum(box_a[:, 2:], box_b[2:])
    min_xy = np.maximum(box_a[:, :2], box_b[:2])
    inter = np.clip((max_xy - min_xy), a_min=0, a_max=np.inf)
    return inter[:, 0] * inter[:, 1]


def jaccard_numpy(box_a, box_b):
    inter = intersect(box_a, box_b)
    area_a = ((box_a[:, 2] - box_a[:, 0]) * (box_a[:, 3] - box_a[:, 1]))
    area_b = ((box_b[2] - box_b[0]) * (box_b[3] - box_b[1]))
    return inter / (area_a + area_b - inter)


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img, boxes=None, labels=None):
        for t in self.transforms:
            img, boxes, labels = t(img, boxes, labels)
        return img, boxes, labels


def convert_from_ints(image, boxes=None, labels=None):
    return image.astype(np.float32), boxes, labels


def random_brightness(image, boxes=None, labels=None, delta=32):
    if random.randint(2):
        image += random.uniform(-delta, delta)
    return image, boxes, labels


def random_contrast(image, boxes=None, labels=None):
    if random.randint(2):
        image *= random.uniform(0.5, 1.5)
    return image, boxes, labels


def to_hsv(image, boxes=None, labels=None):
    return cv2.cvtColor(image, cv2.COLOR_BGR2HSV), boxes, labels


def to_bgr(image, boxes=None, labels=None):
    return cv2.cvtColor(image, cv2.COLOR_HSV2BGR), boxes, labels


def random_saturation(image, boxes=None, labels=None):
    if random.randint(2):
        image[:, :, 1] *= random.uniform(0.5, 1.5)
    return image, boxes, labels


def random_hue(image, boxes=None, labels=None, delta=18.0):
    if random.randint(2):
        image[:, :, 0] += random.uniform(-delta, delta)
        image[:, :, 0][image[:, :, 0] > 360.0] -= 360.0
        image[:, :, 0][image[:, :, 0] < 0.0] += 360.0
    return image, boxes, labels


PERMS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def random_lighting_noise(image, boxes=None, labels=None):
    if random.randint(2):
        image = image[:, :, PERMS[random.randint(len(PERMS))]]
    return image, boxes, labels


def photometric_distort(image, boxes, labels):
    im = image.copy()
    im, boxes, labels = random_brightness(im, boxes, labels)
    pd = [random_contrast, to_hsv, random_saturation, random_hue, to_bgr, random_contrast]
    distort = Compose(pd[:-1]) if random.randint(2) else Compose(pd[1:])
    im, boxes, labels = distort(im, boxes, labels)
    return random_lighting_noise(im, boxes, labels)


def make_expand(mean):
    def expand(image, boxes, labels):
        if random.randint(2):
            return image, boxes, labels
        height, width, depth = image.shape
        ratio = random.uniform(1, 4)
        left, top = random.uniform(0, width * ratio - width), random.uniform(0, height * ratio - height)
        expand_image = np.zeros((int(height * ratio), int(width * ratio), depth), dtype=image.dtype)
        expand_image[:, :, :] = mean
        expand_image[int(top):int(top + height), int(left):int(left + width)] = image
        boxes = boxes.copy()
        boxes[:, :2] += (int(left), int(top))
        boxes[:, 2:] += (int(left), int(top))
        return expand_image, boxes, labels
    return expand


SAMPLE_OPTIONS = (None, (0.1, None), (0.3, None), (0.7, None), (0.9, None), (None, None))


def random_sample_crop(image, boxes=None, labels=None):
    height, width, _ = image.shape
    while True:
        mode = SAMPLE_OPTIONS[random.randint(len(SAMPLE_OPTIONS))]
        if mode is None:
            return image, boxes, labels
        min_iou, max_iou = mode
        min_iou = float("-inf") if min_iou is None else min_iou
        max_iou = float("inf") if max_iou is None else max_iou
        for _ in range(50):
            current_image = image
            w, h = random.uniform(0.3 * width, width), random.uniform(0.3 * height, height)
            if h / w < 0.5 or h / w > 2:
                continue
            left, top = random.uniform(width - w), random.uniform(height - h)
            rect = np.array([int(left), int(top), int(left + w), int(top + h)])
            overlap = jaccard_numpy(boxes, rect)
            if overlap.min() < min_iou and max_iou < overlap.max():  # never true: the known bug
                continue
            current_image = current_image[rect[1]:rect[3], rect[0]:rect[2], :]
            centers = (boxes[:, :2] + boxes[:, 2:]) / 2.0
            m1 = (rect[0] < centers[:, 0]) * (rect[1] < centers[:, 1])
            m2 = (rect[2] > centers[:, 0]) * (rect[3] > centers[:, 1])
            mask = m1 * m2
            if not mask.any():
                continue
            current_boxes = boxes[mask, :].copy()
            current_labels = labels[mask]
            current_boxes[:, :2] = np.maximum(current_boxes[:, :2], rect[:2]) - rect[:2]
            current_boxes[:, 2:] = np.minimum(current_boxes[:, 2:], rect[2:]) - rect[:2]
            return current_image, current_boxes, current_labels


def random_mirror(image, boxes, classes):
    _, width, _ = image.shape
    if random.randint(2):
        image = image[:, ::-1]
        boxes = boxes.copy()
        boxes[:, 0::2] = width - boxes[:, 2::-2]
    return image, boxes, classes


def to_percent(image, boxes=None, labels=None):
    height, width, _ = image.shape
    boxes = boxes.copy()
    boxes[:, 0::2] /= width
    boxes[:, 1::2] /= height
    return image, boxes, labels


def make_ssd_augmentation(size=300, mean=(104, 117, 123)):
    mean = np.array(mean, dtype=np.float32)

    def resize(image, boxes=None, labels=None):
        return cv2.resize(image, (size, size)), boxes, labels

    def subtract_means(image, boxes=None, labels=None):
        return image.astype(np.float32) - mean, boxes, labels
    return Compose([convert_from_ints, photometric_distort, make_expand(mean), random_sample_crop,
                    random_mirror, to_percent, resize, subtract_means])


def ssd_pytorch_sample(record, augment):
    """ssd.pytorch's VOCDetection.pull_item: imread, augment, BGR -> RGB, to a CHW tensor."""
    img = cv2.imread(str(record.file))
    boxes, labels = np.array(record.boxes, dtype=np.float32), np.array(record.labels)
    img, boxes, labels = augment(img, boxes, labels)
    img = img[:, :, (2, 1, 0)]
    return torch.from_numpy(img.copy()).permute(2, 0, 1), np.hstack((boxes, labels[:, None]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, train=opts.images, test=0, seed=0, size=opts.size)
        ds = VOCDetection(tmp, "train", classes=read_classes(tmp), transform=SSDTrainTransform(300))
        augment = make_ssd_augmentation()
        random.seed(0)
        torch.manual_seed(0)
        paths = {"repssd": lambda: [ds[i] for i in range(len(ds))],
                 "ssd.pytorch": lambda: [ssd_pytorch_sample(r, augment) for r in ds.records]}
        times = {name: [] for name in paths}
        for _ in range(opts.repeats):
            for name, fn in paths.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    rate = {name: opts.images / statistics.median(t) for name, t in times.items()}
    print(f"torch {torch.__version__}, OpenCV {cv2.__version__}, 1 thread; {opts.images} synthetic images of "
          f"{opts.size} px width -> 300 x 300 with SSD augmentation\n")
    print(f"{'pipeline':14s} {'images/s per worker':>20s} {'vs ssd.pytorch':>15s}")
    for name, r in rate.items():
        print(f"{name:14s} {r:20.1f} {r / rate['ssd.pytorch']:14.2f}x")


if __name__ == "__main__":
    main()
