#!/usr/bin/env bash
# The slicing study (docs/slicing.md): tile settings and merges of the imported person detector, no training.
# Selection (the auto rule, the merge defaults) on the MOT17-mini validation frames (MOT17-02/09/13) and
# PennFudanPed val; the finalists then once on all 39 MOT17-mini frames, its test frames and PennFudanPed test.
#   make weights && bash data/get_mot17_mini.sh data && bash data/get_pennfudan.sh data && bash experiments/slicing_study.sh
# Resumable: finished settings are skipped. About 40 min on 2 cores.
set -euo pipefail
PY=${PY:-.venv/bin/python}
W=weights/ssdlite_mbv2_person.pth
OUT=experiments/results/slicing
VAL=MOT17-02-FRCNN,MOT17-09-FRCNN,MOT17-13-FRCNN
TEST=MOT17-04-FRCNN,MOT17-05-FRCNN,MOT17-10-FRCNN,MOT17-11-FRCNN
run() { $PY -m experiments.slicing_study --weights $W "$@"; }
# selection: the frontier over tile size, overlap and the whole-image pass (crowd merge), and the merges
run --dataset mot --data-root data/MOT17-mini --split $VAL --out $OUT/mot17_val.jsonl --settings 650 \
  full auto 360 432 432@0.1 480 512 540 540@0.1 600 600@0.1 600-nofull 648 648-nofull 720 800x600 \
  540:nms 540:nms:iou:0.5 540:greedy-nmm:ios 540:nms:ios 540:crowd:iou:0.5 540:crowd:iou:0.7 \
  512:nms:iou:0.5 512:greedy-nmm:ios auto:nms auto:greedy-nmm:ios
run --dataset mot --data-root data/MOT17-mini --split $VAL --out $OUT/mot17_val_conf03.jsonl --conf 0.3 --settings \
  full 512:greedy-nmm:ios 512:nms 512 auto auto:greedy-nmm:ios
run --dataset pennfudan --data-root data/PennFudanPed --split val --out $OUT/pennfudan_val.jsonl --settings \
  full auto auto-nofull auto:nms auto:greedy-nmm:ios 512:nms:iou:0.5
# final, once: the finalists on the test images
FINAL="full auto auto:nms auto:greedy-nmm:ios 540 540:nms 540:greedy-nmm:ios 512:nms:iou:0.5"
run --dataset mot --data-root data/MOT17-mini --split all --out $OUT/mot17_all.jsonl --settings $FINAL
run --dataset mot --data-root data/MOT17-mini --split $TEST --out $OUT/mot17_test.jsonl --settings $FINAL
run --dataset pennfudan --data-root data/PennFudanPed --split test --out $OUT/pennfudan_test.jsonl --settings $FINAL
run --dataset mot --data-root data/MOT17-mini --split all --out $OUT/mot17_all_conf03.jsonl --conf 0.3 --settings \
  full auto 512:greedy-nmm:ios 512:nms 540:greedy-nmm:ios
# the merges on the same tiles (540 px, 0.2, whole frame), errors at score 0.3 and 0.5: at the model's score
# floor and at SAHI's default 0.3 (where SAHI keeps GREEDYNMM/IOS)
for conf in "" "--conf 0.3"; do
  run --dataset mot --data-root data/MOT17-mini --split all --out $OUT/mot17_all_merges${conf:+_conf03}.jsonl ${conf} \
    --settings full 540:crowd 540:nms 540:nms:iou:0.5 540:greedy-nmm:ios 540:nms:ios 540:greedy-nmm:iou:0.5
done
