"""The README's slicing example: one MOT17 frame, the imported person detector on the whole frame
(top) and on ``auto`` tiles merged by the crowd merge (bottom), boxes scoring >= 0.5, tile grid
dashed. The frame is MOTChallenge's (MOT17-04, frame 1, CC BY-NC-SA 3.0, https://motchallenge.net);
the figure is shared under the same licence.

    python -m experiments.slicing_figure [--frame data/MOT17-mini/MOT17-04-FRCNN/img1/000001.jpg]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from repssd.convert import load_model
from repssd.detector import Detector
from repssd.inputs import read_image_rgb
from repssd.postprocess import postprocess_options
from repssd.slicing import Slicing, smallest_anchor
from repssd.visualize import draw_detections


def panel(image: np.ndarray, det, title: str, tiles: np.ndarray | None = None) -> np.ndarray:
    out = draw_detections(image, det, ["person"], min_score=0.5)
    for x1, y1, x2, y2 in ([] if tiles is None else tiles[:-1].tolist()):
        for x in range(x1, x2, 24):  # dashed tile outlines
            cv2.line(out, (x, y1), (min(x + 12, x2), y1), (255, 255, 255), 2)
            cv2.line(out, (x, y2 - 1), (min(x + 12, x2), y2 - 1), (255, 255, 255), 2)
        for y in range(y1, y2, 24):
            cv2.line(out, (x1, y), (x1, min(y + 12, y2)), (255, 255, 255), 2)
            cv2.line(out, (x2 - 1, y), (x2 - 1, min(y + 12, y2)), (255, 255, 255), 2)
    count = int((det.scores >= 0.5).sum())
    cv2.rectangle(out, (0, 0), (out.shape[1], 56), (0, 0, 0), -1)
    cv2.putText(out, f"{title}: {count} people at score >= 0.5", (16, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.3,
                (255, 255, 255), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frame", type=Path, default=Path("data/MOT17-mini/MOT17-04-FRCNN/img1/000001.jpg"))
    parser.add_argument("--weights", type=Path, default=Path("weights/ssdlite_mbv2_person.pth"))
    parser.add_argument("--out", type=Path, default=Path("docs/slicing_mot17_04.jpg"))
    opts = parser.parse_args(argv)
    model, config = load_model(opts.weights)
    image = read_image_rgb(opts.frame)
    post = postprocess_options(config)
    whole = Detector(model, **post).predict([image])[0]
    slicing = Slicing()
    sliced = Detector(model, slicing=slicing, **post).predict([image])[0]
    tiles = slicing.tiles(*image.shape[:2], model.input_size, smallest_anchor(model))
    figure = np.concatenate([panel(image, whole, "whole frame at 300x300"),
                             panel(image, sliced, f"{len(tiles) - 1} tiles + whole frame, crowd merge", tiles)])
    figure = cv2.resize(figure, (960, round(960 * figure.shape[0] / figure.shape[1])), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(opts.out), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"{opts.out}: whole frame {int((whole.scores >= 0.5).sum())}, sliced {int((sliced.scores >= 0.5).sum())} "
          f"people at score >= 0.5")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
