#!/usr/bin/env bash
# The main job on the shipped sample data: VIA -> masks, train, evaluate on test, predict.
# A small configuration that finishes in about 15 minutes on a 2-core CPU: the book's FCN with a
# shallower ResNet (ResNet20v2, --n 2), 32-filter heads, 128x160 training crops, bfloat16.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/drinks}
OUT=${OUT:-runs/drinks}
MODEL=(--n 2 --head-filters 32)

python utils/generate_gt_segmentation.py -p "$DATA" -j segmentation_train.json segmentation_test.json
python fcn.py --train "${MODEL[@]}" --data-path "$DATA" --height 128 --width 160 --batch-size 8 \
    --epochs ${EPOCHS:-30} --schedule cosine --mixed-precision --seed 0 --save-dir "$OUT" --verbose 2
WEIGHTS="$OUT/ResNet20v2-3layer-drinks-best-iou.weights.h5"
python fcn.py --evaluate --restore-weights "$WEIGHTS" "${MODEL[@]}" --data-path "$DATA" \
    --report "$OUT/report-test.json" --output-dir "$OUT" --plot --worst 4
python fcn.py --evaluate --restore-weights "$WEIGHTS" "${MODEL[@]}" --data-path "$DATA" \
    --image-file "$DATA/0000181.jpg" --output-dir "$OUT/prediction"
python utils/plot_history.py "$OUT/ResNet20v2-3layer-drinks-best-iou-history.json" \
    --out "$OUT/history.png"
echo "Done: weights $WEIGHTS, report $OUT/report-test.json, pictures in $OUT"
