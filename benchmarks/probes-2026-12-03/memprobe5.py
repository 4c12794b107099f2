# ruff: noqa -- kept exactly as it was run (see README.md here); not part of the package
"""memprobe3 plus MODE arenaN: glibc M_ARENA_MAX = N (mallopt via ctypes before TF loads)."""
import ctypes, os, sys, time
mode = sys.argv[2]
if mode.startswith("mmap"):
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    thr = int(mode[4:] or 1048576)
    print("mallopt mmap", libc.mallopt(M_MMAP_THRESHOLD, thr), "trim", libc.mallopt(M_TRIM_THRESHOLD, 2 * thr))
if mode.startswith("arena"):
    libc = ctypes.CDLL("libc.so.6")
    M_ARENA_MAX = -8
    print("mallopt arena_max", libc.mallopt(M_ARENA_MAX, int(mode[5:])))
sys.path.insert(0, "/work/main/benchmarks")
def rss():
    d = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            k, v = line.split(":"); d[k] = int(v.split()[0]) // 1024
    return d
data = sys.argv[1]; remat = "remat" in sys.argv[3:]
import keras, tensorflow as tf
from run import Task
import worker
setup = worker.SETUPS["tuned"]; worker.apply_setup(setup)
task = Task(kind="train", data=data, options={"remat": remat})
model = worker.build(task, setup)
from fcn_keras.losses import SegmentationLoss
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SegmentationLoss(4))
x = tf.random.uniform((4, 192, 256, 3)); y = tf.zeros((4, 192, 256, 1), tf.int32)
feed = tf.data.Dataset.from_tensors((x, y)).repeat()
base = rss()["VmRSS"]
ends = []
class M(keras.callbacks.Callback):
    def on_train_batch_end(self, b, logs=None): ends.append(time.perf_counter())
model.fit(feed, epochs=1, steps_per_epoch=int(os.environ.get('STEPS', 10)), verbose=0, callbacks=[M()])
steps = [b - a for a, b in zip(ends[2:], ends[3:])]
steps.sort()
m = tf.config.experimental.get_memory_info("CPU:0")
print(f"RESULT mode={mode} remat={remat} built_rss={base} hwm={rss()['VmHWM']} rss_end={rss()['VmRSS']} tf_peak={m['peak']>>20} step_median={steps[len(steps)//2]:.3f}", flush=True)
