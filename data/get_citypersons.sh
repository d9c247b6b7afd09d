#!/usr/bin/env bash
# CityPersons = Cityscapes images (an account at https://www.cityscapes-dataset.com/ is needed) +
# the public CityPersons annotations (https://github.com/cvgroup-njust/CityPersons).
#   CITYSCAPES_USER=... CITYSCAPES_PASSWORD=... bash data/get_citypersons.sh [DIR]   (default: ~/data)
# Layout afterwards (DIR/cityscapes = --data-root):
#   leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png   (2975 / 500 / 1525 images)
#   annotations/anno_train.mat, annotations/anno_val.mat                           (CityPersons boxes)
#   evaluation/val_gt.json                                                         (the official val GT)
# Then: python train.py --dataset citypersons --data-root DIR/cityscapes --train-split train --test-split val ...
#       python eval.py --weights ... --metric citypersons --split val
# Licence: Cityscapes' terms (non-commercial research; no redistribution of the images).
set -euo pipefail
dir=${1:-$HOME/data}/cityscapes
mkdir -p "$dir" && cd "$dir"
if [ ! -d leftImg8bit/train ]; then
  if [ ! -f leftImg8bit_trainvaltest.zip ]; then
    : "${CITYSCAPES_USER:?set CITYSCAPES_USER and CITYSCAPES_PASSWORD (your Cityscapes account), or put leftImg8bit_trainvaltest.zip in $dir}"
    wget -q --keep-session-cookies --save-cookies=cookies.txt \
         --post-data "username=$CITYSCAPES_USER&password=$CITYSCAPES_PASSWORD&submit=Login" \
         https://www.cityscapes-dataset.com/login/ -O /dev/null
    # packageID 3: leftImg8bit_trainvaltest.zip (11 GB)
    wget --load-cookies cookies.txt --content-disposition "https://www.cityscapes-dataset.com/file-handling/?packageID=3"
    rm -f cookies.txt
  fi
  unzip -qn leftImg8bit_trainvaltest.zip
fi
if [ ! -f annotations/anno_train.mat ]; then
  git clone --depth 1 https://github.com/cvgroup-njust/CityPersons.git CityPersons.git
  mkdir -p annotations evaluation
  cp CityPersons.git/annotations/anno_{train,val}.mat annotations/
  cp CityPersons.git/evaluation/val_gt.json evaluation/
  rm -rf CityPersons.git
fi
echo "CityPersons ready: $dir (leftImg8bit/, annotations/anno_{train,val}.mat)"
