# ruff: noqa
"""The book head's folded transposed-conv blocks alone (3x3 stride-2 conv transpose + bias +
ReLU, output not classified), bfloat16, forward only: TensorFlow's conv2d_transpose with
BiasAdd and Relu; "rows-pad" (round 7's rows form with the zero row and column as explicit
padding: two convolutions, one stack); "phases-pad" (four convolutions with exactly the nine
taps, explicit padding, the four phases interleaved by three stacks).

    python benchmarks/probes-round8/tconv_block_forms.py [--height 192 --width 256 --batch 4]
"""
import argparse, time
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


def rows_pad(x, k, b):
    kt = tf.transpose(k, (0, 1, 3, 2))
    z = tf.zeros_like(kt[0, 0])
    def wrow(i):
        return tf.stack([tf.concat([kt[i, 2], z], -1), tf.concat([kt[i, 0], kt[i, 1]], -1)])
    b2 = tf.concat([b, b], 0)
    even = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, tf.stack([wrow(2), wrow(0)]), 1,
                                                  [[0, 0], [1, 0], [1, 0], [0, 0]]), b2))
    odd = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, wrow(1)[None], 1,
                                                 [[0, 0], [0, 0], [1, 0], [0, 0]]), b2))
    s = tf.shape(x)
    return tf.reshape(tf.stack([even, odd], axis=2), [s[0], 2 * s[1], 2 * s[2], k.shape[2]])


def phases_pad(x, k, b):
    kt = tf.transpose(k, (0, 1, 3, 2))
    def conv(kernel, top, left):
        return tf.nn.relu(tf.nn.bias_add(
            tf.nn.conv2d(x, kernel, 1, [[0, 0], [top, 0], [left, 0], [0, 0]]), b))
    ee = conv(tf.stack([tf.stack([kt[2, 2], kt[2, 0]]), tf.stack([kt[0, 2], kt[0, 0]])]), 1, 1)
    eo = conv(tf.stack([kt[2, 1], kt[0, 1]])[:, None], 1, 0)
    oe = conv(tf.stack([kt[1, 2], kt[1, 0]])[None], 0, 1)
    oo = conv(kt[1, 1][None, None], 0, 0)
    s, f = tf.shape(x), k.shape[2]
    even = tf.reshape(tf.stack([ee, eo], axis=3), [s[0], s[1], 2 * s[2], f])
    odd = tf.reshape(tf.stack([oe, oo], axis=3), [s[0], s[1], 2 * s[2], f])
    return tf.reshape(tf.stack([even, odd], axis=2), [s[0], 2 * s[1], 2 * s[2], f])


h, w, bsz = args.height // 4, args.width // 4, args.batch
rng = np.random.default_rng(0)
print(f"{args.height}x{args.width} batch {bsz}, bfloat16 forward, best/median of {args.repeats}")
for name, shape in [("up_x2", (bsz, h, w, 1024)), ("up_x4", (bsz, 2 * h, 2 * w, 256))]:
    x32 = tf.constant(rng.standard_normal(shape, np.float32))
    k32 = tf.constant(rng.standard_normal((3, 3, 256, shape[-1]), np.float32) * 0.05)
    b32 = tf.constant(rng.standard_normal(256, np.float32))
    ref = native(x32, k32, b32).numpy()
    gflop = 2 * 9 * np.prod(shape) * 256 / 1e9
    for form, fn in (("native", native), ("rows-pad", rows_pad), ("phases-pad", phases_pad)):
        err = np.abs(fn(x32, k32, b32).numpy() - ref).max() / np.abs(ref).max()
        ins = [tf.cast(t, tf.bfloat16) for t in (x32, k32, b32)]
        f = tf.function(fn)
        f(*ins)
        times = []
        for _ in range(args.repeats):   # one element back: no copy of the output timed
            t = time.perf_counter(); f(*ins)[0, 0, 0, 0].numpy(); times.append(time.perf_counter() - t)
        print(f"{name} {str(shape):20s} {form:10s} {min(times)*1e3:7.1f} ms best "
              f"{np.median(times)*1e3:7.1f} median {gflop/min(times):6.0f} GFLOP/s  max rel err f32 {err:.1e}")
