# ruff: noqa
"""Bytes per second of the step's memory-bound ops (batch norm forward/gradient, ReLU gradient,
add, cast) at the backbone's largest shapes, bfloat16 against float32.

    python benchmarks/probes-2026-12-04/eltwise_rates.py
"""
import sys, time
import numpy as np
import tensorflow as tf

SHAPES = [(4, 192, 256, 16), (4, 192, 256, 64), (4, 96, 128, 128)]


def best(fn, *a, repeats=9):
    f = tf.function(fn)
    r = f(*a)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); r = f(*a); tf.nest.map_structure(lambda t: t.numpy(), r); ts.append(time.perf_counter() - t)
    return min(ts)


for shape in SHAPES:
    for dt in (tf.bfloat16, tf.float32):
        rng = np.random.default_rng(0)
        x = tf.cast(tf.constant(rng.standard_normal(shape, np.float32)), dt)
        g = tf.cast(tf.constant(rng.standard_normal(shape, np.float32)), dt)
        c = shape[-1]
        gamma, beta = tf.ones([c]), tf.zeros([c])
        n = np.prod(shape) * x.dtype.size
        def bn(x):
            return tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, is_training=True)[0]
        def bnrelu(x):
            return tf.nn.relu(bn(x))
        def bn_grad(x, g):
            with tf.GradientTape() as t:
                t.watch(x); y = bn(x)
            return t.gradient(y, x, output_gradients=g)
        def bnrelu_grad(x, g):
            with tf.GradientTape() as t:
                t.watch(x); y = bnrelu(x)
            return t.gradient(y, x, output_gradients=g)
        def relugrad(x, g):
            return tf.raw_ops.ReluGrad(gradients=g, features=x)
        def add(x, g):
            return x + g
        def cast(x):
            return tf.cast(x, tf.float32 if dt == tf.bfloat16 else tf.bfloat16)
        rows = [("copy-ish add (3 passes)", add, (x, g), 3), ("ReluGrad (3)", relugrad, (x, g), 3),
                ("BN train fwd (3)", bn, (x,), 3), ("BN+ReLU fwd (3)", bnrelu, (x,), 3),
                ("BN fwd+grad (8)", bn_grad, (x, g), 8), ("BN+ReLU fwd+grad (11)", bnrelu_grad, (x, g), 11),
                ("cast (2)", cast, (x,), 2)]
        for name, fn, a, passes in rows:
            s = best(fn, *a)
            print(f"{str(shape):20s} {dt.name:8s} {name:24s} {s*1e3:7.2f} ms  {passes*n/s/1e9:6.1f} GB/s (nominal passes)")
        sys.stdout.flush()
