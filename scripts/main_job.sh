#!/usr/bin/env bash
# The main job on a VIA dataset in the book's layout (images + segmentation_train.json +
# segmentation_test.json; default: the shipped sample): VIA -> masks, train, evaluate on test,
# segment one test image, plot the training curves. About 10 minutes on a 2-core CPU, whatever
# the dataset: training gets TRAIN_MINUTES (default 8) and its cosine learning-rate schedule
# is fitted into them (--time-limit), the crop follows the images' size (utils/dataset_info.py).
#
#   bash scripts/main_job.sh                      # data/drinks -> runs/drinks
#   DATA=/path/to/via/folder OUT=runs/mine bash scripts/main_job.sh
#
# Model and recipe: the `quick` preset (fcn_keras/presets/quick.json): FCN-8s skip fusion plus a
# stride-4 skip (fcn4s), a light ASPP context module and residual blocks on the pyramid, on the
# book's ResNet v2 (ResNet20v2, --n 2), started from the shipped CamVid model (--init-weights:
# all but the class scores), run on 2x2-averaged images; cross-entropy + Dice, colour jitter;
# test scored with multi-scale + flip averaging (--tta ms-flip).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/drinks}
OUT=${OUT:-runs/$(basename "$DATA")}
TRAIN_MINUTES=${TRAIN_MINUTES:-8}
NAME=$(basename "$DATA")
COMMON=(--preset quick --data-path "$DATA" --dataset "$NAME")

python utils/generate_gt_segmentation.py -p "$DATA" -j segmentation_train.json segmentation_test.json
# The quick preset runs the network on 2x2-averaged images (--downsample 2): the crop is then
# the whole image, at most 512 pixels a side.
CROP=$(python utils/dataset_info.py "$DATA" --crop --downsample 2)
echo "Training crop: $CROP"
python fcn.py --train "${COMMON[@]}" --height "${CROP%x*}" --width "${CROP#*x}" \
    --epochs "${EPOCHS:-1000}" --time-limit "$TRAIN_MINUTES" --save-dir "$OUT" --verbose 2
WEIGHTS="$OUT/$(python -c 'import sys; from fcn_keras.config import parse_args
print(parse_args(sys.argv[1:]).weights_name)' --summary "${COMMON[@]}")"
python fcn.py --evaluate "${COMMON[@]}" --restore-weights "$WEIGHTS" \
    --report "$OUT/report-test.json" --output-dir "$OUT" --plot --worst 4
python fcn.py --evaluate "${COMMON[@]}" --restore-weights "$WEIGHTS" \
    --image-file "$(python utils/dataset_info.py "$DATA" --test-image)" --output-dir "$OUT/prediction"
python utils/plot_history.py "${WEIGHTS%.weights.h5}-history.json" --out "$OUT/history.png"
echo "Done: weights $WEIGHTS, report $OUT/report-test.json, pictures in $OUT"
