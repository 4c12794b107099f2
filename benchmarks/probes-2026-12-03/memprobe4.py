# ruff: noqa -- kept exactly as it was run (see README.md here); not part of the package
"""RSS after tracing the train step, before running it."""
import sys, gc
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
model.optimizer.build(model.trainable_variables)
mem("optimizer built", tf)
f = tf.function(model.train_step)
cf = f.get_concrete_function((x, y))
gc.collect()
mem("traced", tf)
for i in range(3):
    f((x, y))
    mem(f"ran {i}", tf)
