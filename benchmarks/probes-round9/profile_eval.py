# ruff: noqa
"""Where an evaluation batch of the book's model spends its time (tuned setup: mixed bfloat16,
batch norms folded, labels out), by op type and by layer, from a tf.profiler trace.

    python benchmarks/probes-round9/profile_eval.py [--height 192 --width 256 --batch 4]
"""
import argparse, collections, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import keras, numpy as np, tensorflow as tf
from fcn_keras.models import build_model
from fcn_keras.predict import Predictor
from profile_ops import layer_of, op_events

p = argparse.ArgumentParser()
p.add_argument("--height", type=int, default=192)
p.add_argument("--width", type=int, default=256)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--calls", type=int, default=10)
p.add_argument("--no-fold", action="store_true")
p.add_argument("--no-phases", action="store_true", help="keep TensorFlow's transposed conv")
p.add_argument("--wall-only", action="store_true", help="skip the profile")
p.add_argument("--inter-op", type=int, default=0)
a = p.parse_args()
if a.inter_op:
    tf.config.threading.set_inter_op_parallelism_threads(a.inter_op)
if a.no_phases:
    import fcn_keras.fold
    fcn_keras.fold.phases_pay = lambda *args: False
keras.mixed_precision.set_global_policy("mixed_bfloat16")
model, _ = build_model("fcn", 4, n=6, layers_=3, head_filters=256, pyramid_filters=512)
pred = Predictor(model, fold_bn=not a.no_fold)
x = np.random.default_rng(0).random((a.batch, a.height, a.width, 3), np.float32)
for _ in range(3):
    pred.labels(x)
t = time.perf_counter()
for _ in range(a.calls):
    pred.labels(x)
wall = (time.perf_counter() - t) / a.calls
if a.wall_only:
    print(f"{a.height}x{a.width} wall {wall*1e3:.1f} ms per batch ({a.batch / wall:.2f} images/s), phases form {'off' if a.no_phases else 'on'}, inter-op {a.inter_op or 'default'}")
    sys.exit(0)
logdir = tempfile.mkdtemp(prefix="fcn-eprof-")
tf.profiler.experimental.start(logdir)
for _ in range(a.calls):
    pred.labels(x)
tf.profiler.experimental.stop()
by_type, by_layer = collections.Counter(), collections.Counter()
for name, ms in op_events(logdir):
    by_type[name.rsplit(":", 1)[-1]] += ms
    by_layer[layer_of(name)] += ms
total = sum(by_type.values())
print(f"{a.height}x{a.width} wall {wall*1e3:.0f} ms per batch ({a.batch / wall:.2f} images/s unprofiled); op time {total / a.calls:.0f} ms per batch")
for k, ms in by_type.most_common(15):
    print(f"{k[:40]:40s} {ms / a.calls:8.1f} ms {100 * ms / total:5.1f}%")
print("by layer:")
for k, ms in by_layer.most_common(20):
    print(f"{k[:70]:70s} {ms / a.calls:8.1f} ms {100 * ms / total:5.1f}%")
