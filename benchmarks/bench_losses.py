"""Training loss step (matching + loss, forward + backward): repssd vs torchvision SSD vs ssd.pytorch.

    python benchmarks/bench_losses.py [--batch 32] [--max-gt 40] [--repeats 9] [--device cpu|cuda]

B images with 1..max-gt GT each, P = 8732 priors, C = 21. Paths:

- repssd ``multibox``, ``multibox+repgt``, ``multibox+repgt+repbox`` (``build_criterion``), and
  the first and last again with ignore regions (about 15% of the GT slots, enlarged, passed as
  ``gt_ignore``: priors inside them are neither positive nor negative);
- torchvision SSD: per image ``box_iou`` + ``proposal_matcher``, then ``SSD.compute_loss``;
- ssd.pytorch: per image ``match`` + ``encode`` transcribed here, then its ``MultiBoxLoss``
  (mining-mask order fixed).

The three multibox losses are checked equal, then timed; the operator counts at B=2 and
B=32 are printed (repssd counted on the ``meta`` device, which is what a GPU would launch).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.models.detection import ssd300_vgg16
from torchvision.ops import box_iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import OpCounter, median_times, ssd_pytorch_match  # noqa: E402
from repssd.boxes import cxcywh_to_xyxy  # noqa: E402
from repssd.losses import build_criterion  # noqa: E402
from repssd.priors import generate_priors  # noqa: E402

NUM_CLASSES = 21


def make_batch(batch: int, max_gt: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, max_gt + 1, (batch,), generator=g)
    wh = 0.03 + 0.5 * torch.rand(batch, max_gt, 2, generator=g) ** 2
    xy = (1 - wh) * torch.rand(batch, max_gt, 2, generator=g)
    boxes = torch.cat((xy, xy + wh), -1)
    labels = torch.randint(1, NUM_CLASSES, (batch, max_gt), generator=g)
    valid = torch.arange(max_gt) < counts[:, None]
    # ignore regions (CrowdHuman "mask" boxes): about 15% of the slots, twice as large
    ignore = valid & (torch.rand(batch, max_gt, generator=g) < 0.15)
    grown = torch.cat((xy - wh / 2, xy + 1.5 * wh), -1).clamp(0, 1)
    boxes = torch.where(ignore[..., None], grown, boxes)
    loc = 0.3 * torch.randn(batch, 8732, 4, generator=g)
    conf = torch.randn(batch, 8732, NUM_CLASSES, generator=g)
    return [t.to(device) for t in (loc, conf, boxes, labels, valid, ignore)]


def repssd_step(spec, with_ignore=False):
    criterion = build_criterion(spec)

    def step(loc, conf, priors, boxes, labels, valid, ignore):
        loc, conf = loc.detach().requires_grad_(), conf.detach().requires_grad_()
        out = criterion(loc, conf, priors, boxes, labels, valid, ignore if with_ignore else None)
        out["loss"].backward()
        return out["loc"] + out["conf"]
    return step


TV = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)


def torchvision_step(loc, conf, priors, boxes, labels, valid, ignore):
    loc, conf = loc.detach().requires_grad_(), conf.detach().requires_grad_()
    anchors = cxcywh_to_xyxy(priors)
    targets, matched = [], []
    for b in range(len(boxes)):
        n = int(valid[b].sum())
        targets.append({"boxes": boxes[b, :n], "labels": labels[b, :n]})
        matched.append(TV.proposal_matcher(box_iou(targets[-1]["boxes"], anchors)))
    losses = TV.compute_loss(targets, {"bbox_regression": loc, "cls_logits": conf}, [anchors] * len(boxes), matched)
    total = losses["bbox_regression"] + losses["classification"]
    total.backward()
    return total


def ssd_pytorch_step(loc, conf, priors, boxes, labels, valid, ignore):
    loc, conf = loc.detach().requires_grad_(), conf.detach().requires_grad_()
    num, num_priors = loc.shape[:2]
    loc_t = torch.zeros(num, num_priors, 4, device=loc.device)
    conf_t = torch.zeros(num, num_priors, dtype=torch.long, device=loc.device)
    for b in range(num):
        n = int(valid[b].sum())
        conf_t[b], loc_t[b] = ssd_pytorch_match(0.5, boxes[b, :n], priors, labels[b, :n])
    pos = conf_t > 0
    loss_l = F.smooth_l1_loss(loc[pos], loc_t[pos], reduction="sum")
    batch_conf = conf.view(-1, NUM_CLASSES)
    x_max = batch_conf.data.max()
    lse = torch.log(torch.sum(torch.exp(batch_conf - x_max), 1, keepdim=True)) + x_max
    loss_c = (lse - batch_conf.gather(1, conf_t.view(-1, 1))).view(num, -1)
    loss_c[pos] = 0
    _, loss_idx = loss_c.sort(1, descending=True)
    _, idx_rank = loss_idx.sort(1)
    num_pos = pos.long().sum(1, keepdim=True)
    neg = idx_rank < torch.clamp(3 * num_pos, max=num_priors - 1)
    selected = (pos | neg)
    loss_c = F.cross_entropy(conf[selected], conf_t[selected], reduction="sum")
    n = num_pos.sum().clamp(min=1)
    total = loss_l / n + loss_c / n
    total.backward()
    return total


def count_ops(fn, batch, max_gt, device):
    loc, conf, boxes, labels, valid, ignore = make_batch(batch, max_gt, device)
    priors = generate_priors("ssd300_voc", device=device)
    with OpCounter() as counter:
        fn(loc, conf, priors, boxes, labels, valid, ignore)
    return counter.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-gt", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    opts = parser.parse_args()
    device = opts.device
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    TV.to(device)
    priors = generate_priors("ssd300_voc", device=device)
    loc, conf, boxes, labels, valid, ignore = make_batch(opts.batch, opts.max_gt, device)
    args = (loc, conf, priors, boxes, labels, valid, ignore)
    multibox = {"repssd multibox": repssd_step("multibox"), "torchvision SSD": torchvision_step,
                "ssd.pytorch MultiBoxLoss": ssd_pytorch_step}
    values = {name: fn(*args) for name, fn in multibox.items()}
    for name, value in values.items():
        torch.testing.assert_close(value, values["repssd multibox"], rtol=1e-4, atol=1e-4, msg=name)
    paths = {**multibox, "repssd multibox+repgt": repssd_step("multibox+repgt"),
             "repssd multibox+repgt+repbox": repssd_step("multibox+repgt+repbox"),
             "repssd multibox, ignore": repssd_step("multibox", True),
             "repssd multibox+repgt+repbox, ignore": repssd_step("multibox+repgt+repbox", True)}
    times = median_times(paths, args, opts.repeats, sync)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads; B={opts.batch}, P=8732, "
          f"C={NUM_CLASSES}, G=1..{opts.max_gt} ({int(valid.sum())} GT, {int(ignore.sum())} of them ignore regions "
          f"in the ', ignore' paths); multibox losses equal "
          f"({values['repssd multibox'].item():.4f})")
    tv = times["torchvision SSD"]
    print(f"\n{'path':38s} {'median ms':>10s} {'torchvision / it':>17s}   ops B=2   ops B=32")
    for name, fn in paths.items():
        on = "meta" if name.startswith("repssd") else device
        ops = [count_ops(fn, b, opts.max_gt, on) for b in (2, 32)]
        print(f"{name:38s} {times[name] * 1e3:10.1f} {tv / times[name]:16.2f}x {ops[0]:9d} {ops[1]:10d}")


if __name__ == "__main__":
    main()
