# ruff: noqa -- kept exactly as it was run (see README.md here); not part of the package
"""memprobe4 with MODE (argv[3]): static (as memprobe4), dynamic (the step traced for unknown
batch/height/width), iterator (the step takes the batch from a tf.data iterator inside the
function, as Keras fit does), fit (model.fit for 3 steps), fit-lazy (the
same without building the optimizer first); env STEPS (fit steps, timed when > 3),
ARENA_MAX (glibc malloc arenas)."""
import sys, gc, os, time, ctypes
if os.environ.get("ARENA_MAX"):   # glibc M_ARENA_MAX before TensorFlow loads
    print("mallopt arena_max", ctypes.CDLL("libc.so.6").mallopt(-8, int(os.environ["ARENA_MAX"])))
sys.path.insert(0, "/work/main/benchmarks")
def mem(tag, tf=None):
    d = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            k, v = line.split(":"); d[k] = int(v.split()[0]) // 1024
    info = ""
    if tf is not None:
        m = tf.config.experimental.get_memory_info("CPU:0")
        info = f" tf current {m['current'] >> 20} peak {m['peak'] >> 20}"
    print(f"MEM {tag:20s} rss {d['VmRSS']:6d} hwm {d['VmHWM']:6d}{info}", flush=True)
remat = sys.argv[2] == "remat"
mode = sys.argv[3]
import keras, tensorflow as tf
from run import Task
import worker
setup = worker.SETUPS["tuned"]; worker.apply_setup(setup)
task = Task(kind="train", data=sys.argv[1], options={"remat": remat})
model = worker.build(task, setup)
from fcn_keras.losses import SegmentationLoss
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SegmentationLoss(4))
x = tf.random.uniform((4, 192, 256, 3)); y = tf.zeros((4, 192, 256, 1), tf.int32)
feed = tf.data.Dataset.from_tensors((x, y)).repeat()
mem("compiled", tf)
if mode != "fit-lazy":   # fit-lazy: fit builds the optimizer itself, in its first step
    model.optimizer.build(model.trainable_variables)
    mem("optimizer built", tf)
if mode.startswith("fit"):
    steps = int(os.environ.get("STEPS", 3))
    ends = []
    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())
    model.fit(feed, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Clock()])
    mem(f"fit {steps} steps", tf)
    if steps > 3:
        gaps = sorted(b - a for a, b in zip(ends[1:], ends[2:]))
        print(f"step median {gaps[len(gaps) // 2]:.3f} s", flush=True)
    sys.exit()
if mode == "iterator":
    iterator = iter(feed)
    f = tf.function(lambda it: model.train_step(next(it)))
    run = lambda: f(iterator)
elif mode == "dynamic":
    spec = (tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None, None, None, 1), tf.int32))
    f = tf.function(model.train_step, input_signature=[spec])
    run = lambda: f((x, y))
else:
    f = tf.function(model.train_step)
    run = lambda: f((x, y))
for i in range(3):
    run()
    mem(f"{mode} ran {i}", tf)
