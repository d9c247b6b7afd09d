#!/usr/bin/env bash
# Unpack CrowdHuman into DIR/CrowdHuman. Its site (https://www.crowdhuman.org/) asks you to accept
# its terms before downloading, so fetch these files by hand into DIR/CrowdHuman first:
#   CrowdHuman_train01.zip CrowdHuman_train02.zip CrowdHuman_train03.zip CrowdHuman_val.zip
#   annotation_train.odgt annotation_val.odgt
#   bash data/get_crowdhuman.sh [DIR]  (default: ~/data)
# Layout: DIR/CrowdHuman/Images/*.jpg and the two .odgt files.
set -euo pipefail
dir=${1:-$HOME/data}/CrowdHuman
cd "$dir" 2>/dev/null || { echo "missing $dir: download the CrowdHuman files there first (see this script)"; exit 2; }
missing=0
for f in CrowdHuman_train01.zip CrowdHuman_train02.zip CrowdHuman_train03.zip CrowdHuman_val.zip \
         annotation_train.odgt annotation_val.odgt; do
  [ -f "$f" ] || { echo "missing $dir/$f"; missing=1; }
done
[ "$missing" = 0 ] || exit 2
for f in CrowdHuman_*.zip; do unzip -qn "$f"; done
echo "CrowdHuman ready: $dir/Images, $dir/annotation_{train,val}.odgt"
