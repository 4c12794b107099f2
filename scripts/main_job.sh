#!/usr/bin/env bash
# The main job on the shipped sample data: VIA -> masks, train, evaluate on test, predict.
# A small configuration that finishes in about 10-15 minutes on a 2-core CPU: FCN-8s skip fusion
# on the book's ResNet v2 made shallower (ResNet20v2, --n 2) with 128-filter pyramid levels,
# batch-norm momentum 0.9, cross-entropy + Dice loss, 128x160 training crops, bfloat16.
# (The book's own head, --arch fcn, reached 0.36 test mIoU in the same time; see README.)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/drinks}
OUT=${OUT:-runs/drinks}
MODEL=(--arch fcn8s --n 2 --pyramid-filters 128 --bn-momentum 0.9)

python utils/generate_gt_segmentation.py -p "$DATA" -j segmentation_train.json segmentation_test.json
python fcn.py --train "${MODEL[@]}" --data-path "$DATA" --height 128 --width 160 --batch-size 8 \
    --epochs ${EPOCHS:-40} --schedule cosine --loss ce+dice --mixed-precision --seed 0 --save-dir "$OUT" --verbose 2
WEIGHTS="$OUT/fcn8s-ResNet20v2-3layer-drinks-best-iou.weights.h5"
python fcn.py --evaluate --restore-weights "$WEIGHTS" "${MODEL[@]}" --data-path "$DATA" \
    --report "$OUT/report-test.json" --output-dir "$OUT" --plot --worst 4
python fcn.py --evaluate --restore-weights "$WEIGHTS" "${MODEL[@]}" --data-path "$DATA" \
    --image-file "$DATA/0000181.jpg" --output-dir "$OUT/prediction"
python utils/plot_history.py "$OUT/fcn8s-ResNet20v2-3layer-drinks-best-iou-history.json" \
    --out "$OUT/history.png"
echo "Done: weights $WEIGHTS, report $OUT/report-test.json, pictures in $OUT"
