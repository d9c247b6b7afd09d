"""Post-processing: repssd.detect vs torchvision SSD.postprocess_detections vs ssd.pytorch's Detect.

    python benchmarks/bench_postprocess.py [--batch 8] [--repeats 9] [--scores trained|untrained]

B images, P = 8732 priors, C = 21 classes, on the same (loc, conf) tensors.
``--scores trained`` (default) imitates a trained detector: ~12 objects per image, the priors
that match them confident in the object's class, background elsewhere. ``untrained`` uses
random logits, so every (prior, class) pair passes the 0.01 threshold: the worst case.
The script checks that each peer finds the same detections as repssd, then times them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torchvision.models.detection import ssd300_vgg16

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import median_times  # noqa: E402
from repssd.boxes import cxcywh_to_xyxy  # noqa: E402
from repssd.coder import decode  # noqa: E402
from repssd.matcher import match  # noqa: E402
from repssd.postprocess import detect  # noqa: E402
from repssd.priors import generate_priors  # noqa: E402

NUM_CLASSES = 21


def make_outputs(batch: int, priors: torch.Tensor, regime: str, seed: int = 0):
    """(loc [B,P,4], conf [B,P,C]) like a trained SSD's, or random."""
    g = torch.Generator().manual_seed(seed)
    loc = 0.3 * torch.randn(batch, priors.shape[0], 4, generator=g)
    if regime == "untrained":
        return loc, torch.randn(batch, priors.shape[0], NUM_CLASSES, generator=g)
    wh = 0.05 + 0.4 * torch.rand(batch, 12, 2, generator=g)
    xy = (1 - wh) * torch.rand(batch, 12, 2, generator=g)
    labels = torch.randint(1, NUM_CLASSES, (batch, 12), generator=g)
    m = match(priors, torch.cat((xy, xy + wh), -1), labels, torch.ones(batch, 12, dtype=torch.bool))
    conf = torch.randn(batch, priors.shape[0], NUM_CLASSES, generator=g)
    conf[..., 0] += 7.0  # background wins where nothing was matched
    conf.scatter_add_(2, m.labels.unsqueeze(-1), 8.0 * m.positive.unsqueeze(-1).float())
    return loc, conf


# --- ssd.pytorch layers/functions/detection.py Detect + layers/box_utils.py nms, transcribed ---
def ssd_pytorch_nms(boxes, scores, overlap=0.45, top_k=200):
    keep = scores.new(scores.size(0)).zero_().long()
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = torch.mul(x2 - x1, y2 - y1)
    _, idx = scores.sort(0)
    idx = idx[-top_k:]
    count = 0
    while idx.numel() > 0:
        i = idx[-1]
        keep[count] = i
        count += 1
        if idx.size(0) == 1:
            break
        idx = idx[:-1]
        xx1 = torch.index_select(x1, 0, idx).clamp(min=x1[i])
        yy1 = torch.index_select(y1, 0, idx).clamp(min=y1[i])
        xx2 = torch.index_select(x2, 0, idx).clamp(max=x2[i])
        yy2 = torch.index_select(y2, 0, idx).clamp(max=y2[i])
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        union = (torch.index_select(area, 0, idx) - inter) + area[i]
        idx = idx[(inter / union).le(overlap)]
    return keep, count


def ssd_pytorch_detect(loc, conf, priors, conf_thresh=0.01, nms_thresh=0.45, top_k=200):
    output = torch.zeros(loc.shape[0], NUM_CLASSES, top_k, 5)
    conf_preds = conf.softmax(-1).transpose(2, 1)
    for i in range(loc.shape[0]):
        decoded_boxes = decode(loc[i], priors)
        conf_scores = conf_preds[i].clone()
        for cl in range(1, NUM_CLASSES):
            c_mask = conf_scores[cl].gt(conf_thresh)
            scores = conf_scores[cl][c_mask]
            if scores.size(0) == 0:
                continue
            boxes = decoded_boxes[c_mask.unsqueeze(1).expand_as(decoded_boxes)].view(-1, 4)
            ids, count = ssd_pytorch_nms(boxes, scores, nms_thresh, top_k)
            output[i, cl, :count] = torch.cat((scores[ids[:count]].unsqueeze(1), boxes[ids[:count]]), 1)
    return output


def ssd_pytorch_as_lists(output):
    found = []
    for image in output:
        rows = [(s, c) for c in range(1, NUM_CLASSES) for s in image[c, :, 0].tolist() if s > 0]
        found.append(sorted(rows, reverse=True))
    return found


def same(a: list, b: list, what: str) -> None:
    for x, y in zip(a, b):
        assert len(x) == len(y), f"{what}: {len(x)} vs {len(y)} detections"
        scores = torch.tensor([r[0] for r in x]), torch.tensor([r[0] for r in y])
        torch.testing.assert_close(*scores, rtol=0, atol=1e-5, msg=what)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--scores", choices=["trained", "untrained"], default="trained")
    parser.add_argument("--skip-ssd-pytorch", action="store_true", help="leave out the slowest peer")
    opts = parser.parse_args()

    priors = generate_priors("ssd300_torchvision")  # torchvision's anchors, so all three decode alike
    loc, conf = make_outputs(opts.batch, priors, opts.scores)
    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES).eval()
    anchors = [cxcywh_to_xyxy(priors) * 300] * opts.batch
    shapes = [(300, 300)] * opts.batch
    with torch.no_grad():
        paths = {
            "repssd detect": lambda: detect(loc, conf, priors),
            "torchvision postprocess": lambda: tv.postprocess_detections(
                {"bbox_regression": loc, "cls_logits": conf}, anchors, shapes),
        }
        if not opts.skip_ssd_pytorch:
            paths["ssd.pytorch Detect"] = lambda: ssd_pytorch_detect(loc, conf, priors)
        ours = [sorted(zip(d.scores.tolist(), d.labels.tolist()), reverse=True) for d in paths["repssd detect"]()]
        theirs = [sorted(zip(d["scores"].tolist(), d["labels"].tolist()), reverse=True)
                  for d in paths["torchvision postprocess"]()]
        same(ours, theirs, "torchvision")
        if not opts.skip_ssd_pytorch:  # no clipping, 200 candidates, no per-image cap: run repssd alike
            alike = detect(loc, conf, priors, clip=False, candidates=200, top_k=200 * NUM_CLASSES)
            same([sorted(zip(d.scores.tolist(), d.labels.tolist()), reverse=True) for d in alike],
                 ssd_pytorch_as_lists(paths["ssd.pytorch Detect"]()), "ssd.pytorch")
        times = median_times(paths, repeats=opts.repeats)
    kept = sum(len(d) for d in ours)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; B={opts.batch}, P={priors.shape[0]}, "
          f"C={NUM_CLASSES}, scores={opts.scores}; {kept} detections, the same from every path")
    print(f"\n{'path':26s} {'median ms':>10s} {'vs repssd':>10s}")
    for name, t in times.items():
        print(f"{name:26s} {t * 1e3:10.1f} {t / times['repssd detect']:9.1f}x")


if __name__ == "__main__":
    main()
