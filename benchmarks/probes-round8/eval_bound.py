# ruff: noqa
"""An upper bound on the book model's evaluation rate on this machine (tuned setup: mixed
bfloat16, batch norms folded), two ways:

1. every multiply-add of the model at the convolution roof (the best inference conv rate of the
   run, or the GEMM roof with --at-gemm-roof), plus the batch norms folding cannot remove (the
   ResNet v2 pre-activations, BN + ReLU at inference) at the rate they run alone;
2. with --convs-alone, each convolution layer of the folded model timed alone at its input
   shape, as TensorFlow runs it (its fused bias and ReLU, the phases form's interleave
   included), plus the same batch norms.

Each is timed as the mean of CHAIN runs inside one function (a chain of batch norms; a
while loop for a convolution) with one element returned, so no call or copy overhead counts.
Nothing else is counted (residual adds, concatenation, resizes, pads, softmax, argmax), so the
true pass is slower still.

    python benchmarks/probes-round8/eval_bound.py --results benchmarks/results-round7.json [--convs-alone]
"""
import argparse, collections, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import keras, numpy as np, tensorflow as tf
from fcn_keras.fold import fold_batch_norm
from fcn_keras.layers import all_layers
from fcn_keras.models import build_model

p = argparse.ArgumentParser()
p.add_argument("--results", default="benchmarks/results-round7.json")
p.add_argument("--height", type=int, default=192)
p.add_argument("--width", type=int, default=256)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--at-gemm-roof", action="store_true")
p.add_argument("--convs-alone", action="store_true")
a = p.parse_args()
keras.mixed_precision.set_global_policy("mixed_bfloat16")
model, _ = build_model("fcn", 4, n=6, layers_=3, head_filters=256, pyramid_filters=512)
folded = fold_batch_norm(model)
bns = [l for l in all_layers(folded) if isinstance(l, keras.layers.BatchNormalization)]
convs = [l for l in all_layers(folded) if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
probe, conv_inputs = {}, {}
for layer in convs:
    original = layer.call
    def conv_spy(inputs, *args, _layer=layer, _original=original, **kwargs):
        conv_inputs[_layer.name] = tuple(inputs.shape[1:])
        return _original(inputs, *args, **kwargs)
    layer.call = conv_spy
for layer in bns:
    original = layer.call
    def spy(inputs, *args, _layer=layer, _original=original, **kwargs):
        probe[_layer.name] = tuple(inputs.shape[1:])
        return _original(inputs, *args, **kwargs)
    layer.call = spy
folded(np.zeros((1, a.height, a.width, 3), np.float32), training=False)
shapes = collections.Counter(probe.values())
CHAIN = 10


def bn_relu_seconds(shape):
    x = tf.cast(tf.random.normal((a.batch, *shape)), tf.bfloat16)
    c = shape[-1]
    scale, offset = tf.random.uniform((c,), 0.5, 1.5), tf.random.normal((c,))
    mean, var = tf.random.normal((c,)), tf.random.uniform((c,), 0.5, 1.5)

    @tf.function
    def infer(x):   # CHAIN passes in one call, one element out: no call or copy overhead
        for _ in range(CHAIN):
            x, *_ = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, mean, var,
                                                     is_training=False)
            x = tf.nn.relu(x)
        return x[0, 0, 0, 0]
    infer(x)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter(); infer(x).numpy(); best = min(best, time.perf_counter() - t)
    best /= CHAIN
    return best


def conv_seconds(layer, shape):
    x = tf.cast(tf.random.normal((a.batch, *shape)), tf.bfloat16)

    @tf.function
    def loop(x):   # x a loop variable, so the convolution is not hoisted out of the loop
        def body(i, x, acc):
            y = layer(x, training=False)
            return i + 1, x, acc + tf.cast(y[0, 0, 0, 0], tf.float32)
        return tf.while_loop(lambda i, x, acc: i < CHAIN, body, (0, x, 0.0),
                             parallel_iterations=1)[2]   # one at a time
    loop(x)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter(); loop(x).numpy(); best = min(best, time.perf_counter() - t)
    return best / CHAIN


bn_s = 0.0
for shape, count in sorted(shapes.items()):
    s = bn_relu_seconds(shape)
    bn_s += count * s
    print(f"batch norm + ReLU {str(shape):18s} x{count:2d}: {s * 1e3:6.2f} ms each")
results = json.loads(Path(a.results).read_text())
key = f"{a.height}x{a.width}"
gflop = a.batch * results[f"forward_gflop_{key}"]
gemm = max(results["gemm_gflops_now"]["bfloat16"], results.get("gemm_gflops_end", {}).get("bfloat16", 0))
convs = [v for part in ("conv_gflops_now", "conv_gflops_end") for k, v in results.get(part, {}).items()
         if k.startswith("bfloat16_")]
roof = gemm if a.at_gemm_roof else max(convs)
if a.convs_alone:
    conv_s = 0.0
    for layer in (l for l in all_layers(folded) if l.name in conv_inputs):
        s = conv_seconds(layer, conv_inputs[layer.name])
        conv_s += s
        print(f"{type(layer).__name__:22s} {layer.name:28s} {str(conv_inputs[layer.name]):18s} {s * 1e3:6.2f} ms")
    how = f"{len(conv_inputs)} convolution layers timed alone"
else:
    conv_s = gflop / roof
    how = f"{'the GEMM roof' if a.at_gemm_roof else 'the best inference conv rate'} ({roof:.0f} GFLOP/s)"
bound = gflop / (conv_s + bn_s)
print(f"{len(probe)} batch norms left after folding; batch of {a.batch}: {gflop:.1f} GFLOP, "
      f"{how}: {conv_s * 1e3:.0f} ms + batch norms and ReLUs {bn_s * 1e3:.0f} ms")
print(f"bound: {bound:.0f} GFLOP/s = {bound / gemm:.3f} of the GEMM roof ({gemm:.0f}, {a.results}); "
      f"measured evaluation: {results.get(f'eval_gflops_{key}', float('nan')):.0f} GFLOP/s")
