#!/usr/bin/env bash
# Download COCO 2017 (train, val, annotations) into DIR/coco.
#   bash data/get_coco.sh [DIR]       (default: ~/data)
# Layout: DIR/coco/{train2017,val2017}/*.jpg, DIR/coco/annotations/instances_{train,val}2017.json
set -euo pipefail
dir=${1:-$HOME/data}/coco
mkdir -p "$dir" && cd "$dir"
for url in http://images.cocodataset.org/zips/train2017.zip http://images.cocodataset.org/zips/val2017.zip \
           http://images.cocodataset.org/annotations/annotations_trainval2017.zip; do
  file=$(basename "$url")
  [ -f "$file" ] || curl -fL --retry 3 -o "$file" "$url"
  unzip -qn "$file"
done
echo "COCO ready: $dir"
