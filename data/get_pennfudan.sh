#!/usr/bin/env bash
# Download the Penn-Fudan pedestrian database (170 images, 423 pedestrians) into DIR/PennFudanPed.
#   bash data/get_pennfudan.sh [DIR]        (default: ~/data)
# Then: python train.py --dataset pennfudan --data-root DIR/PennFudanPed --train-split train --test-split test ...
# Licence: its readme.txt says the material is for timely dissemination of scholarly work, copyright
# stays with the authors, and the images may not be reposted without their permission: use it for
# research, and never commit or redistribute its images (repssd ships only the split ids).
# Layout: DIR/PennFudanPed/{PNGImages,PedMasks,Annotation}/ and readme.txt.
set -euo pipefail
dir=${1:-$HOME/data}
mkdir -p "$dir" && cd "$dir"
url=https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip
[ -f PennFudanPed.zip ] || curl -fL --retry 3 -o PennFudanPed.zip "$url"
unzip -qn PennFudanPed.zip
echo "PennFudanPed ready: $dir/PennFudanPed"
