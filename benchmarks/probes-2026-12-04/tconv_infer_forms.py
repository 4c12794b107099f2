# ruff: noqa
"""Inference forms of the book head's folded transposed-conv blocks (conv transpose + bias +
ReLU), bfloat16, forward only: TensorFlow's conv2d_transpose with BiasAdd and Relu after it,
against "rows": the even output rows as one 2x2 convolution with 2F outputs and the odd rows
as one 1x2 convolution with 2F outputs (bias and ReLU fused into both by TensorFlow's
remapper), interleaved by one stack.

    python benchmarks/probes-2026-12-04/tconv_infer_forms.py [--height 192 --width 256 --batch 4]
"""
import argparse, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np
import tensorflow as tf

p = argparse.ArgumentParser()
p.add_argument("--height", type=int, default=192)
p.add_argument("--width", type=int, default=256)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--repeats", type=int, default=9)
args = p.parse_args()


def native(x, k, b):
    s = tf.shape(x)
    y = tf.nn.conv2d_transpose(x, k, [s[0], 2 * s[1], 2 * s[2], k.shape[2]], 2, "SAME")
    return tf.nn.relu(tf.nn.bias_add(y, b))


def row_kernels(k):
    kt = tf.transpose(k, (0, 1, 3, 2))   # (3, 3, C, F): kt[i, j] maps input to output
    z = tf.zeros_like(kt[0, 0])
    # even rows from input rows m-1 (window row 0: kernel row 2) and m (row 0); per column
    # window (n-1, n): [ee | eo] with ee = (w[.,2], w[.,0]), eo = (0, w[.,1])
    even = tf.stack([tf.stack([tf.concat([kt[2, 2], z], -1), tf.concat([kt[2, 0], kt[2, 1]], -1)]),
                     tf.stack([tf.concat([kt[0, 2], z], -1), tf.concat([kt[0, 0], kt[0, 1]], -1)])])
    odd = tf.stack([tf.stack([tf.concat([kt[1, 2], z], -1), tf.concat([kt[1, 0], kt[1, 1]], -1)])])
    return even, odd   # (2, 2, C, 2F), (1, 2, C, 2F)


def rows(x, k, b):
    even_k, odd_k = row_kernels(k)
    b2 = tf.concat([b, b], 0)
    xp = tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]])
    even = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(xp, even_k, 1, "VALID"), b2))
    odd = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(xp[:, 1:], odd_k, 1, "VALID"), b2))
    s = tf.shape(x)
    f = k.shape[2]
    return tf.reshape(tf.stack([even, odd], axis=2), [s[0], 2 * s[1], 2 * s[2], f])


h, w, bsz = args.height // 4, args.width // 4, args.batch
rng = np.random.default_rng(0)
print(f"{args.height}x{args.width} batch {bsz}, bfloat16 forward, best of {args.repeats}")
for name, shape in [("up_x2", (bsz, h, w, 1024)), ("up_x4", (bsz, 2 * h, 2 * w, 256))]:
    x32 = tf.constant(rng.standard_normal(shape, np.float32))
    k32 = tf.constant(rng.standard_normal((3, 3, 256, shape[-1]), np.float32) * 0.05)
    b32 = tf.constant(rng.standard_normal(256, np.float32))
    ref = native(x32, k32, b32).numpy()
    gflop = 2 * 9 * np.prod(shape) * 256 / 1e9
    for form, fn in (("native", native), ("rows", rows)):
        err = np.abs(fn(x32, k32, b32).numpy() - ref).max() / np.abs(ref).max()
        x, k, b = tf.cast(x32, tf.bfloat16), tf.cast(k32, tf.bfloat16), tf.cast(b32, tf.bfloat16)
        f = tf.function(fn)
        f(x, k, b)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter(); f(x, k, b).numpy(); times.append(time.perf_counter() - t)
        print(f"{name} {str(shape):20s} {form:7s} {min(times)*1e3:7.1f} ms  {gflop/min(times):6.0f} GFLOP/s  max rel err f32 {err:.1e}")
