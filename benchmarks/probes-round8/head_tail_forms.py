# ruff: noqa
"""The book head's tail at inference (folded last transposed-conv block: 3x3 stride-2 conv
transpose + bias + ReLU, then the 1x1 `pre_activation` classifier, softmax, argmax), bfloat16,
forward only, in three forms:

- rows (round 7): two convolutions (even rows 2x2 -> 2F, odd rows 1x2 -> 2F), one stack of the
  F-channel output, then the classifier;
- rows+cls: the classifier applied to each rows output before the stack (it commutes with the
  interleave), so only n_classes-channel maps are stacked;
- rows-pad, phases-pad: the same with the top row and left column of zeros given to the
  convolutions as explicit padding instead of padded and sliced copies of the input;
- phases: four convolutions, one per output phase, with exactly the nine taps (2x2, 2x1,
  1x2, 1x1), each followed by the classifier, the four small maps interleaved.

    python benchmarks/probes-round8/head_tail_forms.py [--height 192 --width 256 --batch 4]
"""
import argparse, sys, time
from pathlib import Path
import numpy as np
import tensorflow as tf

p = argparse.ArgumentParser()
p.add_argument("--height", type=int, default=192)
p.add_argument("--width", type=int, default=256)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--classes", type=int, default=4)
p.add_argument("--repeats", type=int, default=9)
args = p.parse_args()


def finish(logits):
    probs = tf.nn.softmax(tf.cast(logits, tf.float32))
    return tf.cast(tf.argmax(probs, -1), tf.uint8)


def native(x, k, b, ck, cb):
    s = tf.shape(x)
    y = tf.nn.conv2d_transpose(x, k, [s[0], 2 * s[1], 2 * s[2], k.shape[2]], 2, "SAME")
    y = tf.nn.relu(tf.nn.bias_add(y, b))
    return finish(tf.nn.bias_add(tf.nn.conv2d(y, ck, 1, "VALID"), cb))


def taps_of(k):
    return tf.transpose(k, (0, 1, 3, 2))   # (3, 3, C, F): input -> output


def row_kernels(k):
    kt = taps_of(k)
    z = tf.zeros_like(kt[0, 0])
    def wrow(i):
        return tf.stack([tf.concat([kt[i, 2], z], -1), tf.concat([kt[i, 0], kt[i, 1]], -1)])
    return tf.stack([wrow(2), wrow(0)]), wrow(1)[None]


def rows_parts(x, k, b):
    even_k, odd_k = row_kernels(k)
    b2 = tf.concat([b, b], 0)
    xp = tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]])
    even = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(xp, even_k, 1, "VALID"), b2))
    odd = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(xp[:, 1:], odd_k, 1, "VALID"), b2))
    return even, odd


def rows(x, k, b, ck, cb):
    even, odd = rows_parts(x, k, b)
    s = tf.shape(x)
    y = tf.reshape(tf.stack([even, odd], axis=2), [s[0], 2 * s[1], 2 * s[2], k.shape[2]])
    return finish(tf.nn.bias_add(tf.nn.conv2d(y, ck, 1, "VALID"), cb))


def rows_cls(x, k, b, ck, cb):
    even, odd = rows_parts(x, k, b)
    z = tf.zeros_like(ck)
    ck2 = tf.concat([tf.concat([ck, z], -1), tf.concat([z, ck], -1)], -2)   # block diagonal
    cb2 = tf.concat([cb, cb], 0)
    ce = tf.nn.bias_add(tf.nn.conv2d(even, ck2, 1, "VALID"), cb2)
    co = tf.nn.bias_add(tf.nn.conv2d(odd, ck2, 1, "VALID"), cb2)
    s = tf.shape(x)
    n = ck.shape[-1]
    return finish(tf.reshape(tf.stack([ce, co], axis=2), [s[0], 2 * s[1], 2 * s[2], n]))


def phases(x, k, b, ck, cb):
    kt = taps_of(k)
    xp = tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]])
    def conv(window, kernel):
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(window, kernel, 1, "VALID"), b))
        return tf.nn.bias_add(tf.nn.conv2d(y, ck, 1, "VALID"), cb)
    ee = conv(xp, tf.stack([tf.stack([kt[2, 2], kt[2, 0]]), tf.stack([kt[0, 2], kt[0, 0]])]))
    eo = conv(xp[:, :, 1:], tf.stack([kt[2, 1], kt[0, 1]])[:, None])
    oe = conv(xp[:, 1:], tf.stack([kt[1, 2], kt[1, 0]])[None])
    oo = conv(x, kt[1, 1][None, None])
    s = tf.shape(x)
    n = ck.shape[-1]
    even = tf.stack([ee, eo], axis=3)   # (B, H, W, 2, n)
    odd = tf.stack([oe, oo], axis=3)
    return finish(tf.reshape(tf.stack([even, odd], axis=2), [s[0], 2 * s[1], 2 * s[2], n]))


def rows_pad(x, k, b, ck, cb):
    """`rows` with the zero row and column as the convolutions' explicit padding."""
    even_k, odd_k = row_kernels(k)
    b2 = tf.concat([b, b], 0)
    even = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, even_k, 1, [[0, 0], [1, 0], [1, 0], [0, 0]]), b2))
    odd = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, odd_k, 1, [[0, 0], [0, 0], [1, 0], [0, 0]]), b2))
    s = tf.shape(x)
    y = tf.reshape(tf.stack([even, odd], axis=2), [s[0], 2 * s[1], 2 * s[2], k.shape[2]])
    return finish(tf.nn.bias_add(tf.nn.conv2d(y, ck, 1, "VALID"), cb))


def phases_pad(x, k, b, ck, cb):
    """`phases` with the top/left zero row and column as the convolutions' explicit padding
    (no padded or sliced copies of the input)."""
    kt = taps_of(k)
    def conv(kernel, top, left):
        pads = [[0, 0], [top, 0], [left, 0], [0, 0]]
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, pads), b))
        return tf.nn.bias_add(tf.nn.conv2d(y, ck, 1, "VALID"), cb)
    ee = conv(tf.stack([tf.stack([kt[2, 2], kt[2, 0]]), tf.stack([kt[0, 2], kt[0, 0]])]), 1, 1)
    eo = conv(tf.stack([kt[2, 1], kt[0, 1]])[:, None], 1, 0)
    oe = conv(tf.stack([kt[1, 2], kt[1, 0]])[None], 0, 1)
    oo = conv(kt[1, 1][None, None], 0, 0)
    s = tf.shape(x)
    n = ck.shape[-1]
    even = tf.stack([ee, eo], axis=3)
    odd = tf.stack([oe, oo], axis=3)
    return finish(tf.reshape(tf.stack([even, odd], axis=2), [s[0], 2 * s[1], 2 * s[2], n]))


h, w, bsz = args.height // 2, args.width // 2, args.batch
rng = np.random.default_rng(0)
shape = (bsz, h, w, 256)
x32 = tf.constant(rng.standard_normal(shape, np.float32))
k32 = tf.constant(rng.standard_normal((3, 3, 256, 256), np.float32) * 0.05)
b32 = tf.constant(rng.standard_normal(256, np.float32) * 0.1)
ck32 = tf.constant(rng.standard_normal((1, 1, 256, args.classes), np.float32) * 0.1)
cb32 = tf.constant(rng.standard_normal(args.classes, np.float32))
ref = native(x32, k32, b32, ck32, cb32).numpy()
gflop = 2 * 9 * np.prod(shape) * 256 / 1e9
print(f"{args.height}x{args.width} batch {bsz}, bfloat16 forward, best/median of {args.repeats}")
forms = (("native", native), ("rows", rows), ("rows+cls", rows_cls), ("phases", phases), ("rows-pad", rows_pad),
         ("phases-pad", phases_pad))
for rnd in range(2):
    for form, fn in forms:
        agree = (fn(x32, k32, b32, ck32, cb32).numpy() == ref).mean()
        ins = [tf.cast(t, tf.bfloat16) for t in (x32, k32, b32, ck32, cb32)]
        f = tf.function(fn)
        f(*ins)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter(); f(*ins).numpy(); times.append(time.perf_counter() - t)
        print(f"{form:9s} {min(times)*1e3:7.1f} ms best {np.median(times)*1e3:7.1f} median  "
              f"{gflop/min(times):6.0f} GFLOP/s  f32 labels agree {agree:.5f}")
