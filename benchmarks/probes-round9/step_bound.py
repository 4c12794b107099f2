# ruff: noqa
"""An upper bound on the book model's training rate on this machine: its convolutions at the
conv training roof plus its batch norms + ReLUs (forward and both gradients) at the rate they
run alone, each distinct shape timed once, nothing else counted (adds, biases, concatenation,
resizes, loss, Adam are left out, so the true step is slower still).

Round 8: each batch norm is timed as the mean of CHAIN forward + backward passes run one at a
time in a while loop inside one function, with one element of each gradient returned; round 7
copied the gradients out of every call, which counted a copy of the input gradient per batch
norm and overstated their time.

    python benchmarks/probes-round9/step_bound.py --results benchmarks/results-round9.json

(Round 8's script unchanged but for the results file it reads the roofs from, rerun in round 9
on that run's machine: the training code did not change.)
"""
import argparse, collections, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import keras, numpy as np, tensorflow as tf
from fcn_keras.layers import all_layers
from fcn_keras.models import build_model

p = argparse.ArgumentParser()
p.add_argument("--results", default="benchmarks/results-round9.json")
p.add_argument("--height", type=int, default=192)
p.add_argument("--width", type=int, default=256)
p.add_argument("--batch", type=int, default=4)
a = p.parse_args()
keras.mixed_precision.set_global_policy("mixed_bfloat16")
model, _ = build_model("fcn", 4, n=6, layers_=3, head_filters=256, pyramid_filters=512)
bns = [l for l in all_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
# every batch norm's output shape at this size, from one forward pass of probes
probe = {}
for layer in bns:
    original = layer.call
    def spy(inputs, *args, _layer=layer, _original=original, **kwargs):
        probe[_layer.name] = tuple(inputs.shape[1:])
        return _original(inputs, *args, **kwargs)
    layer.call = spy
model(np.zeros((1, a.height, a.width, 3), np.float32), training=False)
shapes = collections.Counter(probe.values())
CHAIN = 5


def bn_relu_seconds(shape):
    x = tf.cast(tf.random.normal((a.batch, *shape)), tf.bfloat16)
    g = tf.cast(tf.random.normal((a.batch, *shape)), tf.bfloat16)
    gamma, beta = tf.ones(shape[-1]), tf.zeros(shape[-1])

    def step(x, g):
        with tf.GradientTape() as tape:
            tape.watch([x, gamma, beta])
            y = tf.nn.relu(tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, is_training=True)[0])
        return tape.gradient(y, [x, gamma, beta], output_gradients=g)

    @tf.function
    def loop(x, g):   # x, g loop variables: nothing hoisted; one pass at a time
        def body(i, x, g, acc):
            dx, dgamma, dbeta = step(x, g)
            return i + 1, x, g, acc + tf.cast(dx[0, 0, 0, 0], tf.float32) + dgamma[0] + dbeta[0]
        return tf.while_loop(lambda i, *_: i < CHAIN, body, (0, x, g, 0.0),
                             parallel_iterations=1)[3]
    loop(x, g)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter(); loop(x, g).numpy(); best = min(best, time.perf_counter() - t)
    return best / CHAIN


bn_s = 0.0
for shape, count in sorted(shapes.items()):
    s = bn_relu_seconds(shape)
    bn_s += count * s
    print(f"batch norm + ReLU {str(shape):18s} x{count:2d}: {s * 1e3:6.2f} ms each")
results = json.loads(Path(a.results).read_text())
key = f"{a.height}x{a.width}"
gflop = 3 * a.batch * results[f"forward_gflop_{key}"]
conv_roof = max(results["conv_gflops_now"]["train_gflops_bfloat16"],
                results.get("conv_gflops_end", {}).get("train_gflops_bfloat16", 0))
gemm = max(results["gemm_gflops_now"]["bfloat16"], results.get("gemm_gflops_end", {}).get("bfloat16", 0))
conv_s = gflop / conv_roof
bound = gflop / (conv_s + bn_s)
print(f"{len(probe)} batch norms; step {gflop:.1f} GFLOP: convolutions at the conv training roof "
      f"({conv_roof:.0f} GFLOP/s) {conv_s * 1e3:.0f} ms + batch norms and ReLUs {bn_s * 1e3:.0f} ms")
print(f"bound: {bound:.0f} GFLOP/s = {bound / gemm:.2f} of the GEMM roof ({gemm:.0f}, {a.results}); "
      f"measured training: {results.get(f'train_gflops_{key}', float('nan')):.0f} GFLOP/s")
