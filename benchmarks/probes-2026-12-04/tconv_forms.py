# ruff: noqa
"""Forward + backward time of the book head's two stride-2 transposed convs in several forms
(bfloat16), and each form's agreement with Keras' Conv2DTranspose.

    python benchmarks/probes-2026-12-04/tconv_forms.py [--height 192 --width 256 --batch 4]
"""
import argparse, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np
import tensorflow as tf

from fcn_keras.layers import _subpixel_tconv, interleave_phases

p = argparse.ArgumentParser()
p.add_argument("--height", type=int, default=192)
p.add_argument("--width", type=int, default=256)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--repeats", type=int, default=7)
p.add_argument("--forms", default="subpixel,native,conv2x2,phases")
p.add_argument("--dtype", default="bfloat16")
args = p.parse_args()


def native(x, k):     # k: (3, 3, F, C) as Keras' Conv2DTranspose
    s = tf.shape(x)
    return tf.nn.conv2d_transpose(x, k, [s[0], 2 * s[1], 2 * s[2], k.shape[2]], 2, "SAME")


def subpixel(x, k):
    w = tf.reshape(tf.transpose(k, (3, 0, 1, 2)), (-1, 9 * k.shape[2]))
    return _subpixel_tconv(x, w)


def phase_kernels(k):
    """(3,3,F,C) -> the four phases' conv kernels (HWIO) on the input padded top/left by one."""
    kt = tf.transpose(k, (0, 1, 3, 2))   # (3, 3, C, F)
    z = tf.zeros_like(kt[0, 0])
    # rows of the 2x2 window: input row m-1 (window row 0), m (window row 1)
    # even output rows take kernel row 2 from m-1, kernel row 0 from m; odd rows: row 1 from m
    ee = tf.stack([tf.stack([kt[2, 2], kt[2, 0]]), tf.stack([kt[0, 2], kt[0, 0]])])
    eo = tf.stack([tf.stack([z, kt[2, 1]]), tf.stack([z, kt[0, 1]])])
    oe = tf.stack([tf.stack([z, z]), tf.stack([kt[1, 2], kt[1, 0]])])
    oo = tf.stack([tf.stack([z, z]), tf.stack([z, kt[1, 1]])])
    return ee, eo, oe, oo


def conv2x2(x, k):
    ee, eo, oe, oo = phase_kernels(k)
    kk = tf.concat([ee, eo, oe, oo], axis=-1)   # (2, 2, C, 4F), depth_to_space order
    xp = tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]])
    return tf.nn.depth_to_space(tf.nn.conv2d(xp, kk, 1, "VALID"), 2)


def phases(x, k):
    ee, eo, oe, oo = phase_kernels(k)
    xp = tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]])
    p_ee = tf.nn.conv2d(xp, ee, 1, "VALID")
    p_eo = tf.nn.conv2d(xp[:, :, 1:], eo[:, 1:], 1, "VALID")
    p_oe = tf.nn.conv2d(xp[:, 1:], oe[1:], 1, "VALID")
    p_oo = tf.nn.conv2d(x, oo[1:, 1:], 1, "VALID")
    return interleave_phases(p_ee, p_eo, p_oe, p_oo)


FORMS = dict(subpixel=subpixel, native=native, conv2x2=conv2x2, phases=phases)
h, w, b = args.height // 4, args.width // 4, args.batch
layers = [("up_x2", (b, h, w, 1024)), ("up_x4", (b, 2 * h, 2 * w, 256))]
rng = np.random.default_rng(0)
print(f"{args.height}x{args.width} batch {b}, {args.dtype}; forward + both gradients, best of {args.repeats}")
for name, shape in layers:
    x32 = tf.constant(rng.standard_normal(shape, np.float32))
    k32 = tf.constant(rng.standard_normal((3, 3, 256, shape[-1]), np.float32) * 0.05)
    ref = native(x32, k32).numpy()
    x, k = tf.cast(x32, args.dtype), tf.cast(k32, args.dtype)
    gflop = 3 * 2 * 9 * shape[0] * shape[1] * shape[2] * shape[3] * 256 / 1e9
    for form in args.forms.split(","):
        fn = FORMS[form]
        err = np.abs(fn(x32, k32).numpy() - ref).max() / np.abs(ref).max()

        @tf.function
        def step(x, k, fn=fn):
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                y = fn(x, k)
                loss = tf.reduce_sum(tf.cast(y, tf.float32) * 1e-3)
            return tape.gradient(loss, [x, k])
        step(x, k)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter(); [g.numpy() for g in step(x, k)]; times.append(time.perf_counter() - t)
        best = min(times)
        print(f"{name} {str(shape):22s} {form:9s} {best*1e3:7.1f} ms  {gflop/best:6.0f} GFLOP/s (true FLOPs)  max rel err f32 {err:.1e}")
