# ruff: noqa
"""Training-step time of the book's model (tuned setup: mixed bfloat16, fast layers) with one
layer form changed, in a fresh process per variant; variants alternate over --rounds.

    python benchmarks/probes-2026-12-04/model_ab.py --variants base,native --rounds 3

subpixel: every Conv2DTranspose trains in its sub-pixel form; native: with TensorFlow's
conv2d_transpose; native256: only those with at most 256 input channels; base: the default
(`fcn_keras.layers.subpixel_training_pays`); inter1: the default with one inter-op thread.
"""
import argparse, json, subprocess, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def one(variant, height, width, batch, steps, model_kind):
    import keras, numpy as np, tensorflow as tf
    from fcn_keras import layers as L
    from fcn_keras.losses import SegmentationLoss
    from fcn_keras.models import build_model
    if variant == "inter1":    # one op at a time, each with both cores
        tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if model_kind == "camvid":
        model, _ = build_model("fcn8s", 4, n=3)
    else:
        model, _ = build_model("fcn", 4, n=6, layers_=3, head_filters=256, pyramid_filters=512)
    if variant in ("subpixel", "native"):
        L.subpixel_training_pays = lambda dtype: variant == "subpixel"
    for layer in L.all_layers(model):
        if isinstance(layer, L.Conv2DTranspose):
            if variant == "native256" and layer.input.shape[-1] <= 256:
                layer.fast = False
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SegmentationLoss(4))
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    x = rng.random((batch, height, width, 3), np.float32) * 255
    y = rng.integers(0, 4, (batch, height, width, 1)).astype("int32")
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
    times = []

    class Clock(keras.callbacks.Callback):   # fit's own return lags its last step by seconds
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())

    model.fit(data, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[Clock()])
    return (times[-1] - times[0]) / steps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--variants", default="base,native")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--model", default="book")
    p.add_argument("--one", default=None)
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.height, a.width, a.batch, a.steps, a.model)))
        return
    res = {v: [] for v in a.variants.split(",")}
    for r in range(a.rounds):
        for v in res:
            out = subprocess.run([sys.executable, __file__, "--one", v, "--height", str(a.height),
                                  "--width", str(a.width), "--batch", str(a.batch),
                                  "--steps", str(a.steps), "--model", a.model],
                                 capture_output=True, text=True, check=True).stdout
            res[v].append(round(json.loads(out.strip().splitlines()[-1]), 4))
            print(v, res[v][-1], flush=True)
    for v, s in res.items():
        s = sorted(s)
        print(f"{v:10s} step s {s}  median {s[len(s)//2]:.4f}  img/s {a.batch / s[len(s)//2]:.3f}")


if __name__ == "__main__":
    main()
