#!/usr/bin/env bash
# MOTChallenge pedestrian sequences (https://motchallenge.net, CC BY-NC-SA 3.0): MOT17Det (the
# detection benchmark: 7 train sequences with gt, 7 test without) or MOT20.
#   bash data/get_mot.sh [DIR] [MOT17Det|MOT17|MOT20]     (default: ~/data MOT17Det)
# Layout afterwards (--data-root DIR/<NAME>/train):
#   <seq>/img1/000001.jpg ..., <seq>/gt/gt.txt, <seq>/seqinfo.ini
# Then: python train.py --dataset mot --data-root DIR/MOT17Det/train --train-split MOT17-02,MOT17-04,... \
#                       --test-split MOT17-09,MOT17-11 --frame-stride 10 ...
# Only train sequences have gt/gt.txt; test sequences are scored by the benchmark's server.
set -euo pipefail
dir=${1:-$HOME/data}
name=${2:-MOT17Det}
mkdir -p "$dir" && cd "$dir"
[ -f "$name.zip" ] || curl -fL --retry 3 -o "$name.zip" "https://motchallenge.net/data/$name.zip"
unzip -qn "$name.zip" -d "$name"
# some archives hold a top-level folder of their own name
[ -d "$name/train" ] || { [ -d "$name/$name/train" ] && mv "$name/$name"/* "$name"/ && rmdir "$name/$name"; }
echo "$name ready: $dir/$name/train ($(ls "$dir/$name/train" | wc -l) sequences)"
