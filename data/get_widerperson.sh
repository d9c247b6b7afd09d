#!/usr/bin/env bash
# WiderPerson (http://www.cbsr.ia.ac.cn/users/sfzhang/WiderPerson/): 13,382 images, ~400k annotated
# people in dense scenes. The archive is on Google Drive / Baidu Pan (links on that page), so fetch
# WiderPerson.zip by hand into DIR first, then:
#   bash data/get_widerperson.sh [DIR]        (default: ~/data)
# Layout afterwards (--data-root DIR/WiderPerson):
#   Images/<id>.jpg, Annotations/<id>.jpg.txt (count line, then "class x1 y1 x2 y2"),
#   train.txt (8000 ids), val.txt (1000), test.txt (4382, no annotations)
# Then: python train.py --dataset widerperson --data-root DIR/WiderPerson --train-split train --test-split val ...
# Licence: for non-commercial research only.
set -euo pipefail
dir=${1:-$HOME/data}
cd "$dir" 2>/dev/null || { echo "missing $dir"; exit 2; }
[ -f WiderPerson.zip ] || { echo "missing $dir/WiderPerson.zip: download it from the WiderPerson page (see this script)"; exit 2; }
unzip -qn WiderPerson.zip
[ -d WiderPerson/Images ] || { mkdir -p WiderPerson && mv Images Annotations train.txt val.txt test.txt WiderPerson/ 2>/dev/null || true; }
echo "WiderPerson ready: $dir/WiderPerson"
