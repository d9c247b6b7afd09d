"""Batched match + encode: repssd vs ssd.pytorch's per-image loop vs torchvision's SSDMatcher.

    python benchmarks/bench_matcher.py [--batch 32] [--repeats 15] [--spec ssd300_voc]
                                       [--max-gt 40] [--sweep-chunk]

B images with 1..max-gt GT each (padded to max-gt), P priors. All three paths produce the
labels and the encoded targets of the positive priors; the script checks they agree, then
prints the median wall time of each and the ratios, and the number of operators each path
dispatches at B=2 and B=32 (on a GPU each is a kernel launch).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torchvision.models.detection._utils import BoxCoder, SSDMatcher
from torchvision.ops import box_iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import OpCounter, median_times, ssd_pytorch_match  # noqa: E402
import repssd.matcher as repssd_matcher  # noqa: E402
from repssd.boxes import cxcywh_to_xyxy  # noqa: E402
from repssd.priors import generate_priors  # noqa: E402


def make_batch(batch: int, max_gt: int, seed: int = 0):
    """Padded crowd-like batch: image b holds 1..max_gt boxes (normalised xyxy), then padding."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, max_gt + 1, (batch,), generator=g)
    wh = 0.03 + 0.5 * torch.rand(batch, max_gt, 2, generator=g) ** 2
    xy = (1 - wh) * torch.rand(batch, max_gt, 2, generator=g)
    boxes = torch.cat((xy, xy + wh), -1)
    labels = torch.randint(1, 21, (batch, max_gt), generator=g)
    valid = torch.arange(max_gt) < counts[:, None]
    return boxes, labels, valid


# --- (a) ssd.pytorch's algorithm, one image at a time (common.ssd_pytorch_match) ---
def loop_ssd_pytorch(priors, boxes, labels, valid):
    conf_t = torch.zeros(boxes.shape[0], priors.shape[0], dtype=torch.int64)
    loc_t = torch.zeros(boxes.shape[0], priors.shape[0], 4)
    for b in range(boxes.shape[0]):
        n = int(valid[b].sum())  # the DataLoader hands ssd.pytorch unpadded per-image targets
        conf_t[b], loc_t[b] = ssd_pytorch_match(0.5, boxes[b, :n], priors, labels[b, :n])
    return conf_t, loc_t


# --- (b) torchvision SSD's compute_loss path: per-image box_iou + SSDMatcher + BoxCoder ---
TV_MATCHER = SSDMatcher(0.5)
TV_CODER = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))


def loop_torchvision(priors, boxes, labels, valid):
    anchors = cxcywh_to_xyxy(priors)
    conf_t = torch.zeros(boxes.shape[0], priors.shape[0], dtype=torch.int64)
    loc_t = torch.zeros(boxes.shape[0], priors.shape[0], 4)
    for b in range(boxes.shape[0]):
        n = int(valid[b].sum())
        gt = boxes[b, :n]
        matched = TV_MATCHER(box_iou(gt, anchors))
        fg = matched >= 0
        conf_t[b] = torch.where(fg, labels[b, :n][matched.clamp(min=0)], 0)
        loc_t[b] = TV_CODER.encode_single(gt[matched.clamp(min=0)], anchors)
    return conf_t, loc_t


def batched_repssd(priors, boxes, labels, valid):
    m = repssd_matcher.match(priors, boxes, labels, valid)
    return m.labels, m.loc_targets(boxes, priors)


def count_ops(fn, priors, batch, max_gt, device="cpu"):
    args = [t.to(device) for t in make_batch(batch, max_gt)]
    with OpCounter() as counter:
        fn(priors.to(device), *args)
    return counter.count


def check_agreement(results):
    (ref_conf, ref_loc), *others = results.values()
    pos = ref_conf > 0
    for name, (conf, loc) in results.items():
        assert torch.equal(conf, ref_conf), f"{name}: labels differ"
        torch.testing.assert_close(loc[pos], ref_loc[pos], rtol=1e-4, atol=1e-4, msg=f"{name}: targets differ")
    return int(pos.sum())


def sweep_chunk(priors, args, repeats):
    print("\nCPU chunk size sweep (elements of one [chunk, G, P] tensor):")
    default = repssd_matcher.CPU_CHUNK_ELEMENTS
    for exponent in (14, 15, 16, 17, 18, 20, 22, 60):
        repssd_matcher.CPU_CHUNK_ELEMENTS = 2**exponent
        t = median_times({"": batched_repssd}, (priors, *args), repeats)[""]
        label = "whole batch" if exponent == 60 else f"2**{exponent}"
        print(f"  {label:12s} {t * 1e3:8.1f} ms{'   (default)' if 2**exponent == default else ''}")
    repssd_matcher.CPU_CHUNK_ELEMENTS = default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-gt", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--spec", default="ssd300_voc")
    parser.add_argument("--sweep-chunk", action="store_true", help="also time CPU chunk sizes")
    opts = parser.parse_args()

    priors = generate_priors(opts.spec)
    args = make_batch(opts.batch, opts.max_gt)
    paths = {"repssd (batched)": batched_repssd, "ssd.pytorch loop": loop_ssd_pytorch,
             "torchvision SSDMatcher": loop_torchvision}
    positives = check_agreement({name: fn(priors, *args) for name, fn in paths.items()})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; B={opts.batch}, "
          f"P={priors.shape[0]}, G=1..{opts.max_gt} per image ({int(args[2].sum())} GT, "
          f"{positives} positives); outputs identical across the three paths")
    times = median_times(paths, (priors, *args), opts.repeats)
    ours = times["repssd (batched)"]
    print(f"\n{'path':26s} {'median ms':>10s} {'vs repssd':>10s}   ops B=2   ops B=32")
    for name, fn in paths.items():
        ops = [count_ops(fn, priors, b, opts.max_gt) for b in (2, 32)]
        print(f"{name:26s} {times[name] * 1e3:10.1f} {times[name] / ours:9.2f}x {ops[0]:9d} {ops[1]:10d}")
    meta_ops = [count_ops(batched_repssd, priors, b, opts.max_gt, device="meta") for b in (2, 32)]
    print(f"{'repssd on meta (GPU path)':26s} {'':10s} {'':10s} {meta_ops[0]:9d} {meta_ops[1]:10d}")
    if opts.sweep_chunk:
        sweep_chunk(priors, args, opts.repeats)


if __name__ == "__main__":
    main()
