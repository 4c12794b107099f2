# ruff: noqa
"""Per-step wall and CPU time of the book model's training (tuned setup) over many steps: are
there two modes, and does the slow one leave a core idle?

    python benchmarks/probes-2026-12-04/slow_mode.py --steps 60
"""
import argparse, os, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import keras, numpy as np, tensorflow as tf
from fcn_keras.losses import SegmentationLoss
from fcn_keras.models import build_model

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=60)
p.add_argument("--height", type=int, default=192)
p.add_argument("--width", type=int, default=256)
p.add_argument("--batch", type=int, default=4)
a = p.parse_args()
keras.mixed_precision.set_global_policy("mixed_bfloat16")
model, _ = build_model("fcn", 4, n=6, layers_=3, head_filters=256, pyramid_filters=512)
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SegmentationLoss(4))
model.optimizer.build(model.trainable_variables)
rng = np.random.default_rng(0)
x = rng.random((a.batch, a.height, a.width, 3), np.float32) * 255
y = rng.integers(0, 4, (a.batch, a.height, a.width, 1)).astype("int32")
data = tf.data.Dataset.from_tensors((x, y)).repeat()


class Steps(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.t, self.c = time.perf_counter(), sum(os.times()[:2])

    def on_train_batch_end(self, batch, logs=None):
        wall, cpu = time.perf_counter() - self.t, sum(os.times()[:2]) - self.c
        print(f"step {batch:3d} wall {wall:.3f} s cpu {cpu:.2f} s cores {cpu / wall:.2f}", flush=True)


model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
print("second fit", flush=True)
t0 = time.perf_counter()
model.fit(data, steps_per_epoch=a.steps, epochs=1, verbose=0, callbacks=[Steps()])
print(f"fit {time.perf_counter() - t0:.2f} s")
