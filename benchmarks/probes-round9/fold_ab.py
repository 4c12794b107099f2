# ruff: noqa
"""Whole-model A/B of two versions of `fcn_keras/fold.py` (git revisions, or "work" for the
working tree; `REV+valid-padding`: REV's with the depthwise batch norms padded "VALID") on the book's model, tuned setup (mixed bfloat16, `Predictor(fold_bn=True)`,
labels out): both folded copies are built in one process and timed alternately, 15 rounds of
two batches each; the median of the paired ratios says which is faster on this machine in
spite of its drift. Also: whether both give the same labels.

    python benchmarks/probes-round9/fold_ab.py OLD NEW [--height 192 --width 256 --batch 4]
"""
import argparse, statistics, subprocess, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import keras, numpy as np

p = argparse.ArgumentParser()
p.add_argument("old")
p.add_argument("new")
p.add_argument("--height", type=int, default=192)
p.add_argument("--width", type=int, default=256)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--rounds", type=int, default=15)
p.add_argument("--policy", default="mixed_bfloat16")
a = p.parse_args()
keras.mixed_precision.set_global_policy(a.policy)
import fcn_keras.fold as fold
from fcn_keras.models import build_model
from fcn_keras.predict import Predictor

model, _ = build_model("fcn", 4, n=6, layers_=3, head_filters=256, pyramid_filters=512)
x = np.random.default_rng(0).random((a.batch, a.height, a.width, 3), np.float32)


def source(rev):
    if rev == "work":
        return (ROOT / "fcn_keras/fold.py").read_text()
    if rev.endswith("+valid-padding"):
        text = source(rev[:-len("+valid-padding")])
        assert text.count('[1, 1, 1, 1], "SAME"),') == 1
        return text.replace('[1, 1, 1, 1], "SAME"),', '[1, 1, 1, 1], "VALID"),')
    return subprocess.run(["git", "show", f"{rev}:fcn_keras/fold.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def predictor(rev):
    """A Predictor folding with `rev`'s fold.py (run into the module, replacing its names)."""
    exec(compile(source(rev), f"fold.py@{rev}", "exec"), fold.__dict__)
    made = Predictor(model, fold_bn=True)
    made.labels(x)          # traces now, with this version's classes
    return made


old, new = predictor(a.old), predictor(a.new)
same = float((new.labels(x) == old.labels(x)).mean())
times = {"old": [], "new": []}
for _ in range(2):
    old.labels(x); new.labels(x)
for i in range(a.rounds):
    for name, pred in (("old", old), ("new", new)) if i % 2 else (("new", new), ("old", old)):
        t = time.perf_counter(); pred.labels(x); pred.labels(x)
        times[name].append((time.perf_counter() - t) / 2)
ratios = [n / o for n, o in zip(times["new"], times["old"])]
print(f"{a.policy} {a.height}x{a.width} batch {a.batch}: {a.old} {statistics.median(times['old'])*1e3:.1f} ms, "
      f"{a.new} {statistics.median(times['new'])*1e3:.1f} ms per batch (medians); paired ratio "
      f"new/old median {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}), "
      f"new faster in {sum(r < 1 for r in ratios)}/{len(ratios)}; same labels: {same:.4f}")
