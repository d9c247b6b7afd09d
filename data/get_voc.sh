#!/usr/bin/env bash
# Download PASCAL VOC 2007 (trainval + test) and VOC 2012 (trainval) into DIR/VOCdevkit.
#   bash data/get_voc.sh [DIR]        (default: ~/data)
# Then: python train.py --dataset voc --data-root DIR/VOCdevkit ...
set -euo pipefail
dir=${1:-$HOME/data}
mkdir -p "$dir" && cd "$dir"
base=http://host.robots.ox.ac.uk/pascal/VOC
for url in "$base/voc2007/VOCtrainval_06-Nov-2007.tar" "$base/voc2007/VOCtest_06-Nov-2007.tar" \
           "$base/voc2012/VOCtrainval_11-May-2012.tar"; do
  file=$(basename "$url")
  [ -f "$file" ] || curl -fL --retry 3 -o "$file" "$url"
  tar xf "$file"
done
echo "VOC ready: $dir/VOCdevkit/VOC2007, $dir/VOCdevkit/VOC2012"
