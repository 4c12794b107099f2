#!/usr/bin/env bash
# The CamVid recipe: train from scratch with the `camvid` preset (fcn_keras/presets/camvid.json),
# then score the best weights on val (whole 360x480 images, 11 classes, void ignored), plain, with
# flip and with the preset's multi-scale + flip test-time augmentation (and test, when the folder
# has test.txt, with the preset's), writing JSON reports and the confusion matrix. Training ends by
# recomputing the best weights' batch-norm statistics over the training images
# (--recalibrate-bn; the record is <weights stem>-recalibrate-bn.json).
#
#   scripts/camvid.sh /path/to/camvid [OUT]        # OUT defaults to runs/camvid
#
# Under 2 hours on a 2-core CPU (the preset's --time-limit 115 stops training early on a
# slower machine; the best weights are kept). Extra arguments after OUT go to every command
# (evaluation ignores the training-only ones and needs the model-shaping ones, e.g. --arch), e.g.
# `scripts/camvid.sh data/camvid runs/short --epochs 5` or `... runs/fcn32s --arch fcn32s`.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: scripts/camvid.sh /path/to/camvid [OUT] [flags...]}
OUT=${2:-runs/camvid}
shift $(( $# > 1 ? 2 : 1 ))
python fcn.py --train --preset camvid --data-path "$DATA" --save-dir "$OUT" --verbose 2 "$@"
# the file the training just wrote (its name depends on --arch, --n, ...)
WEIGHTS=$(ls -t "$OUT"/*-best-iou.weights.h5 | head -n 1)
EVAL_FLAGS=()   # the extra flags minus --resume, which only --train takes
for flag in "$@"; do [ "$flag" = "--resume" ] || EVAL_FLAGS+=("$flag"); done
python fcn.py --evaluate --preset camvid --data-path "$DATA" --restore-weights "$WEIGHTS" \
    --split val --tta none --report "$OUT/report-val.json" --output-dir "$OUT" "${EVAL_FLAGS[@]}"
python fcn.py --evaluate --preset camvid --data-path "$DATA" --restore-weights "$WEIGHTS" \
    --split val --tta flip --report "$OUT/report-val-flip.json" --output-dir "$OUT/flip" \
    "${EVAL_FLAGS[@]}"
python fcn.py --evaluate --preset camvid --data-path "$DATA" --restore-weights "$WEIGHTS" \
    --split val --report "$OUT/report-val-msflip.json" --output-dir "$OUT/msflip" "${EVAL_FLAGS[@]}"
if [ -f "$DATA/test.txt" ]; then   # the published CamVid figures are on test
    python fcn.py --evaluate --preset camvid --data-path "$DATA" --restore-weights "$WEIGHTS" \
        --split test --report "$OUT/report-test.json" --output-dir "$OUT/test" "${EVAL_FLAGS[@]}"
fi
python utils/plot_history.py "${WEIGHTS%.weights.h5}-history.json" --out "$OUT/history.png"
echo "Done: weights $WEIGHTS, reports $OUT/report-val.json, -flip.json and -msflip.json"
