#!/usr/bin/env bash
# MOT17-mini: the first 4-8 frames of the 7 MOT17 train sequences (39 real frames of crowded streets,
# 814 people; MOTChallenge, CC BY-NC-SA 3.0, https://motchallenge.net/data/MOT17/), as a public
# GitHub repository committed them for its tests: github.com/athrael-soju/boxmot (a fork of
# mikel-brostrom/boxmot) at commit 9ef9130bd1932577ebf8706a9dd3180f7dc0673b, assets/MOT17-mini/train.
# Its gt.txt equal the official MOT17 ground truth for those frames. The study of issue 20 scores on it
# (experiments/crowd_finetune.yaml).
#   bash data/get_mot17_mini.sh [DIR]        (default: ~/data) -> DIR/MOT17-mini/<seq>/{img1,gt,seqinfo.ini}
# seqinfo.ini's seqLength is set to the frames kept and gt.txt cut to them, so --dataset mot reads
# every frame: python -m repssd.data.stats mot DIR/MOT17-mini
set -euo pipefail
dir=${1:-$HOME/data}
commit=9ef9130bd1932577ebf8706a9dd3180f7dc0673b
mkdir -p "$dir" && cd "$dir"
[ -d boxmot.git ] || git clone --bare --filter=blob:none https://github.com/athrael-soju/boxmot.git boxmot.git
mkdir -p MOT17-mini
git -C boxmot.git archive "$commit" assets/MOT17-mini/train | tar x --strip-components=3 -C MOT17-mini
python3 - MOT17-mini <<'PY'
import re, sys
from pathlib import Path
for seq in sorted(p for p in Path(sys.argv[1]).iterdir() if (p / "seqinfo.ini").is_file()):
    frames = len(list((seq / "img1").glob("*.jpg")))
    info = seq / "seqinfo.ini"
    info.write_text(re.sub(r"seqLength=\d+", f"seqLength={frames}", info.read_text()))
    gt = seq / "gt" / "gt.txt"
    gt.write_text("".join(l for l in gt.read_text().splitlines(True) if l.strip() and int(l.split(",")[0]) <= frames))
    print(f"{seq.name}: {frames} frames")
PY
echo "MOT17-mini ready: $dir/MOT17-mini"
