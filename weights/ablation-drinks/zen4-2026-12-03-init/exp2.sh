#!/usr/bin/env bash
# runs/exp.sh NAME MINUTES [extra fcn.py flags...]: train on drinks with the quick preset, score test.
set -euo pipefail
cd /work/main
NAME=$1; MIN=$2; shift 2
OUT=runs/exp/$NAME
mkdir -p "$OUT"
exec 9>/tmp/cpu.lock
# flock 9  (helpers run niced under the lock; the experiment takes the CPU first)
start=$(date +%s)
python fcn.py --train --preset quick --data-path data/drinks --dataset drinks --epochs 1000 \
   --time-limit "$MIN" --save-dir "$OUT" --verbose 2 "$@" > "$OUT/train.log" 2>&1
W=$(ls "$OUT"/*-best-iou.weights.h5)
python fcn.py --evaluate --preset quick --data-path data/drinks --dataset drinks --restore-weights "$W" \
   --report "$OUT/report-test.json" "$@" --tta none > "$OUT/eval.log" 2>&1
python fcn.py --evaluate --preset quick --data-path data/drinks --dataset drinks --restore-weights "$W" \
   --report "$OUT/report-test-msflip.json" "$@" >> "$OUT/eval.log" 2>&1
end=$(date +%s)
python - "$OUT" "$NAME" $((end-start)) "$*" <<'PY'
import json,sys
out,name,secs,args=sys.argv[1:]
r=json.load(open(out+'/report-test.json'))
import glob
h=json.load(open(glob.glob(out+'/*-history.json')[0]))
line=dict(name=name,args=args,seconds=int(secs),epochs=len(h),best_val=max(e['val_mean_iou'] for e in h),
          test=round(r['mean_iou'],4),test_msflip=round(json.load(open(out+'/report-test-msflip.json'))['mean_iou'],4),per_class=[round(x,3) for x in r['per_class_iou']])
print(json.dumps(line))
open('runs/exp/results2.jsonl','a').write(json.dumps(line)+'\n')
PY
