#!/usr/bin/env bash
# Issue 34's selection material: the fixed square tile sweep (128-960 px, 0.2 overlap, whole image, crowd merge),
# the whole image and today's auto, for both imported person detectors, on the validation images only:
# MOT17-mini's validation frames (MOT17-02/09/13) at their size and downscaled by 2 and 3 (a 1080p frame at
# 640x360 stands for a small dense photo), and PennFudanPed val. The test frames are scored once, later,
# for the finalists. Resumable (finished settings are skipped).
#   make weights && bash data/get_mot17_mini.sh data && bash data/get_pennfudan.sh data
#   python data/make_scaled_mot.py data/MOT17-mini 2 && python data/make_scaled_mot.py data/MOT17-mini 3
#   bash experiments/slicing_scene.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=experiments/results/slicing_scene
VAL=MOT17-02-FRCNN,MOT17-09-FRCNN,MOT17-13-FRCNN
SWEEP="full auto 128 160 192 256 320 400 480 540 640 800 960"
for W in oidv4_ssd_mbv2_person ssdlite_mbv2_person; do
  run() { $PY -m experiments.slicing_study --weights weights/$W.pth "$@"; }
  for S in "" -s2 -s3; do
    run --dataset mot --data-root data/MOT17-mini$S --split $VAL --out $OUT/$W/mot17_val${S:-_s1}.jsonl --settings $SWEEP
  done
  run --dataset pennfudan --data-root data/PennFudanPed --split val --out $OUT/$W/pennfudan_val.jsonl --settings $SWEEP
done
