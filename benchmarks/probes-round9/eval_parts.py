# ruff: noqa
"""Where a whole-split evaluation pass of the book's model (tuned setup, as
`benchmarks/run.py`'s tuned_eval: 64 images cycled from a synthetic test split) spends its
time: the input pipeline (tf.data decode + padding into batches), the model (`Predictor.labels`)
and the metrics (confusion matrix + the book's per-image figures). Parts timed one after the
other on the same batches, `--passes` times; medians.

    python benchmarks/probes-round9/eval_parts.py [--height 192 --width 256 --batch 4]
"""
import argparse, statistics, sys, tempfile, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "utils"))
import keras, numpy as np

p = argparse.ArgumentParser()
p.add_argument("--height", type=int, default=192)
p.add_argument("--width", type=int, default=256)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--images", type=int, default=64)
p.add_argument("--passes", type=int, default=5)
a = p.parse_args()
keras.mixed_precision.set_global_policy("mixed_bfloat16")
from make_sample_dataset import generate_dataset
from fcn_keras.datasets import load_dataset
from fcn_keras.evaluate import decoded_ahead, score_split
from fcn_keras.metrics import BookMetrics, ConfusionMatrix
from fcn_keras.models import build_model
from fcn_keras.pipeline import DataGenerator, PipelineOptions
from fcn_keras.predict import Predictor

root = Path(tempfile.mkdtemp(prefix="fcn-parts-")) / "eval"
generate_dataset(root, 2, 16, a.width, a.height, seed=1)
samples = load_dataset(str(root)).split("test")
samples = [samples[i % len(samples)] for i in range(a.images)]
model, _ = build_model("fcn", 4, n=6, layers_=3, head_filters=256, pyramid_filters=512)
predictor = Predictor(model, fold_bn=True)
options = PipelineOptions(height=a.height, width=a.width, batch_size=a.batch, n_classes=4)
dataset = lambda: DataGenerator(samples, options, training=False).dataset()
score_split(predictor, dataset(), 4, 255)            # warm-up: traces, checks the files
parts = {"pipeline": [], "model": [], "metrics": [], "whole pass (score_split)": []}
for _ in range(a.passes):
    t = time.perf_counter(); batches = list(decoded_ahead(dataset(), 256 * 2**20))
    parts["pipeline"].append(time.perf_counter() - t)
    t = time.perf_counter(); labels = [predictor.labels(images) for images, _ in batches]
    parts["model"].append(time.perf_counter() - t)
    t = time.perf_counter()
    matrix, book = ConfusionMatrix(4, 255), BookMetrics(4, 255)
    for (_, truths), predictions in zip(batches, labels):
        matrix.update(truths, predictions)
        for truth, prediction in zip(truths, predictions):
            book.update(truth, prediction)
    parts["metrics"].append(time.perf_counter() - t)
    t = time.perf_counter(); score_split(predictor, dataset(), 4, 255)
    parts["whole pass (score_split)"].append(time.perf_counter() - t)
n_batches = -(-a.images // a.batch)
print(f"{a.height}x{a.width}, batch {a.batch}, {a.images} images, {a.passes} passes; ms per batch (median, min-max):")
for name, times in parts.items():
    ms = [t / n_batches * 1e3 for t in times]
    print(f"  {name:26s} {statistics.median(ms):7.1f}  ({min(ms):.1f}-{max(ms):.1f})")
