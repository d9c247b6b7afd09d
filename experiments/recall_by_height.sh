#!/usr/bin/env bash
# Issue 34: each imported detector's recall against a person's height in its input (experiments/recall_by_height.py),
# on validation images only: MOT17-mini's validation frames (tiles 128-800 px and the whole frame) and PennFudanPed
# val (the whole image: people 200-300 px tall in the input).
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=experiments/results/slicing_scene
VAL=MOT17-02-FRCNN,MOT17-09-FRCNN,MOT17-13-FRCNN
for W in oidv4_ssd_mbv2_person ssdlite_mbv2_person; do
  $PY -m experiments.recall_by_height --weights weights/$W.pth --dataset mot --data-root data/MOT17-mini --split $VAL \
    --out $OUT/$W/recall_by_height_mot17_val.json
  $PY -m experiments.recall_by_height --weights weights/$W.pth --dataset pennfudan --data-root data/PennFudanPed \
    --split val --sizes 0 --out $OUT/$W/recall_by_height_pennfudan_val.json
done
