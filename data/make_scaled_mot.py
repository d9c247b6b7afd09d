"""A MOTChallenge folder downscaled by an integer factor: the same sequences, every frame resized with
OpenCV's area interpolation to (W // k, H // k) and every ground-truth box scaled with it, so that
a 1080p street frame stands for a small picture of a dense crowd (people 5-60 px tall at k = 3).

    python data/make_scaled_mot.py data/MOT17-mini 2      # -> data/MOT17-mini-s2
    python data/make_scaled_mot.py data/MOT17-mini 3      # -> data/MOT17-mini-s3

Boxes keep MOTChallenge's convention (1-based left/top, the box spans left .. left + width - 1):
the 0-based pixel box [left - 1, left - 1 + width) is divided by the exact scale of each axis and
written back as a 1-based float box. Nothing is committed: the frames stay licensed as MOT17's.
"""
from __future__ import annotations

import argparse
import configparser
import shutil
import sys
from pathlib import Path

import cv2


def scale_sequence(source: Path, target: Path, factor: int) -> int:
    """Write ``source`` (a sequence folder) downscaled by ``factor`` to ``target``; returns its frame count."""
    info = configparser.ConfigParser()
    info.optionxform = str  # keep the keys' case
    info.read(source / "seqinfo.ini")
    section = info["Sequence"]
    width, height = int(section["imWidth"]), int(section["imHeight"])
    new_w, new_h = width // factor, height // factor
    sx, sy = new_w / width, new_h / height
    (target / section.get("imDir", "img1")).mkdir(parents=True, exist_ok=True)
    frames = sorted((source / section.get("imDir", "img1")).glob(f"*{section.get('imExt', '.jpg')}"))
    for frame in frames:
        image = cv2.imread(str(frame))
        cv2.imwrite(str(target / section.get("imDir", "img1") / frame.name),
                    cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 95])
    lines = []
    for line in (source / "gt" / "gt.txt").read_text().splitlines():
        fields = line.split(",")
        if len(fields) < 6:
            continue
        left, top, w, h = (float(v) for v in fields[2:6])
        x0, y0 = (left - 1) * sx, (top - 1) * sy
        fields[2:6] = [f"{x0 + 1:.3f}", f"{y0 + 1:.3f}", f"{w * sx:.3f}", f"{h * sy:.3f}"]
        lines.append(",".join(fields))
    (target / "gt").mkdir(parents=True, exist_ok=True)
    (target / "gt" / "gt.txt").write_text("\n".join(lines) + "\n")
    section["imWidth"], section["imHeight"] = str(new_w), str(new_h)
    with (target / "seqinfo.ini").open("w") as file:
        info.write(file, space_around_delimiters=False)
    return len(frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="a MOTChallenge folder (<seq>/seqinfo.ini, img1/, gt/gt.txt)")
    parser.add_argument("factor", type=int, help="integer downscaling factor, 2 or more")
    parser.add_argument("--out", type=Path, help="default: ROOT-sFACTOR beside ROOT")
    opts = parser.parse_args(argv)
    if opts.factor < 2:
        parser.error(f"factor must be 2 or more, got {opts.factor}")
    sequences = sorted(p.parent for p in opts.root.glob("*/seqinfo.ini"))
    if not sequences:
        print(f"make_scaled_mot.py: {opts.root}: no <sequence>/seqinfo.ini in it", file=sys.stderr)
        return 2
    out = opts.out or opts.root.with_name(f"{opts.root.name}-s{opts.factor}")
    if out.exists():
        shutil.rmtree(out)
    for sequence in sequences:
        frames = scale_sequence(sequence, out / sequence.name, opts.factor)
        print(f"{sequence.name}: {frames} frames -> {out / sequence.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
