"""Sliced inference: tile geometry (SAHI's), batched runs over the tiles of many images, and the
merges (nms, greedy-nmm, crowd). ``Detector(model, slicing=Slicing(...))`` is the entry point."""
from .geometry import MERGE_METRICS, MERGES, Slicing, auto_tile_size, parse_tile_size, tile_boxes, tile_starts
from .merge import MergeResult, Sources, merge, pair_metric
from .run import TileDetections, image_tiles, sliced_predict, smallest_anchor

__all__ = ["Slicing", "MERGES", "MERGE_METRICS", "auto_tile_size", "parse_tile_size", "tile_boxes", "tile_starts",
           "MergeResult", "Sources", "merge", "pair_metric", "TileDetections", "image_tiles", "sliced_predict",
           "smallest_anchor"]
