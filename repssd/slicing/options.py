"""The slicing flags shared by detect.py and eval.py, and their checks (one line naming the flag)."""
from __future__ import annotations

import argparse

from .geometry import MERGE_METRICS, MERGES, Slicing, parse_tile_size

__all__ = ["add_slicing_arguments", "slicing_from_args"]


def add_slicing_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sliced inference (large images: overlapping tiles at the model input, merged)")
    group.add_argument("--slice", metavar="SIZE", help="tile size in pixels of the original image: S, WxH, or auto "
                       "(tiles where a person 65 px tall is the size of the smallest anchor; smaller images are not sliced)")
    group.add_argument("--slice-overlap", type=float, default=Slicing.overlap, help="fraction of a tile shared with its "
                       "neighbour, 0 <= R < 1 (default 0.2)")
    group.add_argument("--no-full-image", action="store_true", help="skip the whole-image pass (on by default)")
    group.add_argument("--merge", choices=MERGES, default=Slicing.merge, help="how tiles' detections are merged "
                       "(default crowd: cut boxes joined across tile edges, whole boxes by NMS)")
    group.add_argument("--merge-metric", choices=MERGE_METRICS, default=Slicing.metric, help="nms / greedy-nmm: IoU or "
                       "intersection over the smaller box")
    group.add_argument("--merge-thresh", type=float, help="merge at overlap >= this (default: 0.5 for ios, "
                          "else the model's NMS threshold)")


def slicing_from_args(opts: argparse.Namespace) -> tuple[Slicing | None, str | None]:
    """(the :class:`Slicing` the flags ask for or None, the problem with them as one line or None)."""
    if opts.slice is None:
        default = Slicing()
        for flag, value, unset in (("--no-full-image", not opts.no_full_image, default.full_image),
                                   ("--merge", opts.merge, default.merge), ("--merge-metric", opts.merge_metric, default.metric),
                                   ("--merge-thresh", opts.merge_thresh, default.thresh),
                                   ("--slice-overlap", opts.slice_overlap, default.overlap)):
            if value != unset:
                return None, f"{flag} needs --slice SIZE (S, WxH or auto)"
        return None, None
    try:
        size = parse_tile_size(opts.slice)
    except ValueError as err:
        return None, f"--slice {opts.slice}: {str(err).split(': ', 1)[-1]}"
    if not 0.0 <= opts.slice_overlap < 1.0:
        return None, f"--slice-overlap must be in [0, 1), got {opts.slice_overlap}"
    if opts.merge_thresh is not None and not 0.0 < opts.merge_thresh <= 1.0:
        return None, f"--merge-thresh must be in (0, 1], got {opts.merge_thresh}"
    if opts.merge == "crowd" and opts.merge_metric != "iou":
        return None, "--merge-metric ios: the crowd merge compares boxes by IoU in the shared view; use --merge nms or greedy-nmm"
    return Slicing(size=size, overlap=opts.slice_overlap, full_image=not opts.no_full_image, merge=opts.merge,
                   metric=opts.merge_metric, thresh=opts.merge_thresh), None
