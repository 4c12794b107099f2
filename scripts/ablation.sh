#!/usr/bin/env bash
# Ablation rows at a short fixed budget: each row is the preset with one change, trained for
# MINUTES (default 15) with the cosine schedule fitted into them (--time-limit), val scored on
# whole images after every epoch; the best weights are then scored on test (val when the
# folder has no test split; with the preset's --tta). One line per row goes to
# OUT/ablation.jsonl (row, flags, best val mIoU, its epoch, epochs run, minutes of training and
# validation, the scored split and its mIoU, and with --recalibrate-bn val before and after);
# weights, history and report stay in OUT/ROW/. EXTRA="flags" go to every row (before the
# row's own). PRESET=quick runs the main job's recipe (rows about class weights do not apply).
#
#   scripts/ablation.sh DATA OUT [ROW ...]       # default: every row below
#   PRESET=camvid MINUTES=15 scripts/ablation.sh /path/to/camvid runs/ablation preset no-aspp
#
# Rows (flags added after the preset; the later flag wins):
#   preset         the preset as it is
#   no-aspp        --context none
#   no-blocks      --pyramid-blocks 0
#   fcn8s          --arch fcn8s (no stride-4 skip)
#   full-weights   --class-weights median-freq (not square-rooted)
#   no-jitter      --color-jitter 0
#   first-recipe   --preset camvid-fcn8s (the first CamVid recipe, all of its options)
#   lr3e-3         --lr 3e-3 (Adam's rate x3; on the drinks sample it was the largest step)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: scripts/ablation.sh DATA OUT [ROW ...]}
OUT=${2:?usage: scripts/ablation.sh DATA OUT [ROW ...]}
shift 2
PRESET=${PRESET:-camvid}
MINUTES=${MINUTES:-15}
declare -A FLAGS=(
    [preset]="" [no-aspp]="--context none" [no-blocks]="--pyramid-blocks 0"
    [fcn8s]="--arch fcn8s" [full-weights]="--class-weights median-freq"
    [no-jitter]="--color-jitter 0" [first-recipe]="--preset camvid-fcn8s"
    [lr3e-3]="--lr 3e-3"
)
ROWS=("$@")
[ ${#ROWS[@]} -gt 0 ] || ROWS=(preset no-aspp no-blocks fcn8s full-weights no-jitter first-recipe)
mkdir -p "$OUT"
for row in "${ROWS[@]}"; do
    [ -n "${FLAGS[$row]+set}" ] || { echo "error: unknown row '$row'" >&2; exit 2; }
    read -r -a extra <<< "${FLAGS[$row]}"
    python fcn.py --train --preset "$PRESET" --data-path "$DATA" --save-dir "$OUT/$row" \
        --epochs 1000 --time-limit "$MINUTES" --verbose 2 ${EXTRA:-} "${extra[@]}"
    weights=$(ls -t "$OUT/$row"/*-best-iou.weights.h5 | head -n 1)
    python fcn.py --evaluate --preset "$PRESET" --data-path "$DATA" --restore-weights "$weights" \
        --report "$OUT/$row/report.json" --output-dir "$OUT/$row" --verbose 0 ${EXTRA:-} \
        "${extra[@]}" > /dev/null
    python - "$OUT/$row" "$row" "${FLAGS[$row]}" >> "$OUT/ablation.jsonl" <<'EOF'
import json, sys
from pathlib import Path
folder, row, flags = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
history = json.loads(next(folder.glob("*-best-iou-history.json")).read_text())
report = json.loads((folder / "report.json").read_text())
best = max(history, key=lambda r: r["val_mean_iou"])
recalibrated = {}   # --recalibrate-bn (the camvid preset): val before and after
for record in folder.glob("*-recalibrate-bn.json"):
    r = json.loads(record.read_text())
    recalibrated = {"recalibrated_val": [r["val_mean_iou_before"], r["val_mean_iou_after"]],
                    "recalibration_kept": r["kept"]}
print(json.dumps({"row": row, "flags": flags, "best_val_miou": round(best["val_mean_iou"], 4),
                  "best_epoch": best["epoch"], "epochs": len(history),
                  "minutes": round(sum(r["epoch_seconds"] + r.get("val_seconds", 0)
                                       for r in history) / 60, 2),
                  "scored_split": report["split"], "scored_miou": round(report["mean_iou"], 4),
                  **recalibrated}))
EOF
    tail -n 1 "$OUT/ablation.jsonl"
done
