"""VOC evaluation speed: repssd.eval.voc vs the devkit's per-detection loop, VOC2007-test scale.

    python benchmarks/bench_eval.py [--images 4952] [--dets-per-image 100] [--full-scale]

Synthetic ground truth like VOC2007 test (4952 images, 20 classes, ~3 objects per image, ~20%
difficult) and noisy detections around it plus clutter. Both paths score the same detections;
the script checks every class AP is identical, then prints the times and the ratio. With
``--full-scale`` it also times repssd alone at 200 detections per class per image (19.8 M
detections), which the reference loop would need hours for.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from repssd.eval.voc import average_precision, evaluate  # noqa: E402


def make_scene(images: int, dets_per_image: int, classes: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(images):
        n = rng.integers(1, 6)
        xy = rng.uniform(0, 400, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(20, 200, (n, 2))], 1)
        labels = rng.integers(1, classes + 1, n)
        gts.append({"boxes": boxes, "labels": labels, "difficult": rng.random(n) < 0.2})
        pick = rng.integers(0, n, dets_per_image)
        noisy = boxes[pick] + rng.normal(0, 15, (dets_per_image, 4))
        noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2] + 2)
        det_labels = np.where(rng.random(dets_per_image) < 0.5, labels[pick], rng.integers(1, classes + 1, dets_per_image))
        dets.append({"boxes": noisy, "scores": rng.random(dets_per_image), "labels": det_labels})
    return dets, gts


def devkit_eval(dets, gts, classes: int = 20):
    """py-faster-rcnn voc_eval per class: a Python loop over the detections (11-point AP)."""
    aps = {}
    for label in range(1, classes + 1):
        records, npos = [], 0
        for gt in gts:
            mine = gt["labels"] == label
            records.append({"bbox": gt["boxes"][mine], "difficult": gt["difficult"][mine], "det": [False] * int(mine.sum())})
            npos += int((~gt["difficult"][mine]).sum())
        image_ids, confidence, bbs = [], [], []
        for i, d in enumerate(dets):
            mine = d["labels"] == label
            image_ids += [i] * int(mine.sum())
            confidence.append(d["scores"][mine])
            bbs.append(d["boxes"][mine])
        confidence, bbs = np.concatenate(confidence), np.concatenate(bbs)
        order = np.argsort(-confidence, kind="stable")
        tp, fp = np.zeros(len(order)), np.zeros(len(order))
        for d, k in enumerate(order):
            r, bb = records[image_ids[k]], bbs[k]
            ovmax, bbgt = -np.inf, r["bbox"]
            if bbgt.size > 0:
                iw = np.maximum(np.minimum(bbgt[:, 2], bb[2]) - np.maximum(bbgt[:, 0], bb[0]) + 1.0, 0.0)
                ih = np.maximum(np.minimum(bbgt[:, 3], bb[3]) - np.maximum(bbgt[:, 1], bb[1]) + 1.0, 0.0)
                inters = iw * ih
                uni = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                       + (bbgt[:, 2] - bbgt[:, 0] + 1.0) * (bbgt[:, 3] - bbgt[:, 1] + 1.0) - inters)
                overlaps = inters / uni
                ovmax, jmax = np.max(overlaps), np.argmax(overlaps)
            if ovmax > 0.5:
                if not r["difficult"][jmax]:
                    if not r["det"][jmax]:
                        tp[d], r["det"][jmax] = 1.0, True
                    else:
                        fp[d] = 1.0
            else:
                fp[d] = 1.0
        fp, tp = np.cumsum(fp), np.cumsum(tp)
        if npos:
            aps[label] = average_precision(tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps), True)
    return aps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4952)
    parser.add_argument("--dets-per-image", type=int, default=100)
    parser.add_argument("--full-scale", action="store_true")
    opts = parser.parse_args()
    dets, gts = make_scene(opts.images, opts.dets_per_image)
    start = time.perf_counter()
    ours = evaluate(dets, gts, use_07_metric=True)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    reference = devkit_eval(dets, gts)
    t_ref = time.perf_counter() - start
    assert ours["ap"] == reference, "class APs differ"
    print(f"{opts.images} images, {opts.images * opts.dets_per_image:,} detections, "
          f"{sum(len(g['labels']) for g in gts):,} GT; all 20 class APs identical (mAP {ours['map']:.4f})\n")
    print(f"{'path':28s} {'seconds':>9s} {'vs repssd':>10s}")
    print(f"{'repssd.eval.voc':28s} {t_ours:9.2f} {1.0:9.1f}x")
    print(f"{'devkit per-detection loop':28s} {t_ref:9.2f} {t_ref / t_ours:9.1f}x")
    if opts.full_scale:
        dets, gts = make_scene(opts.images, 200 * 20)
        start = time.perf_counter()
        evaluate(dets, gts, use_07_metric=True)
        print(f"\nrepssd at 200 detections per class per image ({opts.images * 4000:,} detections): "
              f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
