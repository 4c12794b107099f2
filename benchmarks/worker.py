#!/usr/bin/env python
"""One benchmark process: runs the measurements `run.py` hands it and prints one result line
each (`BENCH_RESULT {json}`). `run.py` starts a fresh one per measurement, so peak RSS is that
measurement's alone and nothing is warm from an earlier one:

    python benchmarks/worker.py --threads 0,0 '[{"kind": "gemm", "key": "gemm"}]'
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from run import RESULT_TAG, SETUPS, Setup, Task  # noqa: E402

from fcn_keras.classes import IGNORE_INDEX  # noqa: E402

N_CLASSES = 4


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def apply_setup(setup: Setup) -> None:
    """Process-wide settings; must run before any model is built."""
    from fcn_keras.runtime import configure_threads
    configure_threads(*setup.threads)
    keras.mixed_precision.set_global_policy(setup.policy)


def build(task: Task, setup: Setup):
    from fcn_keras.models import build_model
    model, _ = build_model(task.model.get("arch", "fcn"), N_CLASSES,
                           fast_layers=setup.fast_layers,
                           **{k: v for k, v in task.model.items() if k != "arch"})
    if task.options.get("remat"):
        from fcn_keras.remat import enable_remat
        enable_remat(model)
    return model


def train_samples(task: Task):
    from fcn_keras.datasets import load_dataset
    samples = load_dataset(task.data).split("train")
    return samples[:task.limit] if task.limit else samples


def read_pair(sample):
    """Decode an image ([0, 1] float32) and its index mask with PIL, as the book's code did."""
    from PIL import Image

    from fcn_keras.io_utils import read_index_mask
    with Image.open(sample.image) as image:
        rgb = np.asarray(image.convert("RGB"), np.float32) / 255.0
    return rgb, read_index_mask(sample.mask)


def read_crop(sample, height, width, seed):
    """`read_pair`, then the same random window (padded if needed) from image and mask."""
    rgb, mask = read_pair(sample)
    rng = np.random.default_rng(seed)
    top = int(rng.integers(0, max(1, rgb.shape[0] - height + 1)))
    left = int(rng.integers(0, max(1, rgb.shape[1] - width + 1)))
    rgb, mask = rgb[top:top + height, left:left + width], mask[top:top + height, left:left + width]
    pad = [(0, height - rgb.shape[0]), (0, width - rgb.shape[1])]
    mask = np.pad(mask, pad, constant_values=IGNORE_INDEX)
    return np.pad(rgb, pad + [(0, 0)]), mask[..., None]


class PythonBatches(keras.utils.PyDataset):
    """The book's feed: a `keras.utils.Sequence` decoding, cropping and batching in Python."""

    def __init__(self, samples, height, width, batch, n_batches):
        super().__init__()
        self.samples, self.size, self.batch, self.n_batches = samples, (height, width), batch, \
            n_batches

    def __len__(self):
        return self.n_batches

    def __getitem__(self, index):
        picks = [self.samples[(index * self.batch + i) % len(self.samples)]
                 for i in range(self.batch)]
        pairs = [read_crop(s, *self.size, seed=index * self.batch + i)
                 for i, s in enumerate(picks)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def training_feed(task: Task, setup: Setup, samples, n_batches: int):
    if setup.feed == "python":
        return PythonBatches(samples, task.height, task.width, task.batch, n_batches)
    from fcn_keras.pipeline import DataGenerator, PipelineOptions
    options = PipelineOptions(height=task.height, width=task.width, batch_size=task.batch,
                              n_classes=N_CLASSES, seed=0)
    return DataGenerator(samples, options, training=True).dataset(repeat=True)


class StepClock(keras.callbacks.Callback):
    """Notes when each training batch and epoch ends."""

    def __init__(self):
        super().__init__()
        self.batch_ends, self.epoch_times, self._epoch_start = [], [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.batch_ends.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_times.append(time.perf_counter() - self._epoch_start)


def run_train(task: Task, setup: Setup) -> dict:
    """Images/s over `steps` steps after `warmup` (or seconds per epoch when `epochs`)."""
    from fcn_keras.losses import SegmentationLoss
    model = build(task, setup)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SegmentationLoss(N_CLASSES),
                  jit_compile=setup.jit)
    # As `fcn.py --train` does (training.compile_model): the optimizer's slots are made before
    # `fit`. Left to `fit`, the peak RSS with --remat at 192x256 was 200-230 MB higher
    # (benchmarks/probes-2026-12-03/memprobe6.py, fit against fit-lazy).
    model.optimizer.build(model.trainable_variables)
    samples = train_samples(task)
    clock = StepClock()
    if task.epochs:   # warm up on a few steps, then time whole epochs
        steps_per_epoch = max(1, len(samples) // task.batch)
        feed = training_feed(task, setup, samples, steps_per_epoch)
        model.fit(feed, epochs=1, steps_per_epoch=task.warmup, verbose=0)
        model.fit(feed, epochs=task.epochs, steps_per_epoch=steps_per_epoch, callbacks=[clock],
                  verbose=0)
        return {"epoch_s": statistics.mean(clock.epoch_times), "images": len(samples),
                "peak_rss_mb": peak_rss_mb()}
    total = task.warmup + task.steps
    model.fit(training_feed(task, setup, samples, total), epochs=1, steps_per_epoch=total,
              callbacks=[clock], verbose=0)
    ends = clock.batch_ends[task.warmup - 1:]
    step_s = [b - a for a, b in zip(ends, ends[1:])]
    return {"img_s": task.steps * task.batch / (ends[-1] - ends[0]),
            "step_s_median": statistics.median(step_s), "step_s_min": min(step_s),
            "step_s_max": max(step_s), "peak_rss_mb": peak_rss_mb()}


def run_pipeline(task: Task, setup: Setup) -> dict:
    """Images/s the training input feed (decode, scale, crop, flip, batch) delivers alone."""
    feed = training_feed(task, setup, train_samples(task), task.warmup + task.steps)
    if setup.feed == "python":
        next_batch = iter(feed[i] for i in range(len(feed))).__next__
    else:
        next_batch = iter(feed).__next__
    for _ in range(task.warmup):
        next_batch()
    start = time.perf_counter()
    for _ in range(task.steps):
        next_batch()
    seconds = time.perf_counter() - start
    return {"img_s": task.steps * task.batch / seconds, "peak_rss_mb": peak_rss_mb()}


def eval_samples(task: Task):
    """The test split, cycled to `options["images"]` images when given (a timed pass long
    enough that a hiccup does not dominate it)."""
    from fcn_keras.datasets import load_dataset
    samples = load_dataset(task.data).split("test")
    wanted = task.options.get("images", len(samples))
    return [samples[i % len(samples)] for i in range(wanted)]


def run_eval(task: Task, setup: Setup) -> dict:
    """Images/s of a whole-split evaluation (predictions and the confusion matrix): the
    median of `options["repeats"]` passes, with the slowest and fastest, and how often the
    inference function was traced (the warm-up pass traces it; the timed passes should not).
    Before each pass the GEMM roof is measured again (`gemm_gflops_each`, in the setup's
    precision): this VM's speed drifts by tens of percent within minutes, and a pass held to
    the roof of the same moment says more than one held to the run's start or end."""
    model = build(task, setup)
    samples = eval_samples(task)
    if setup.feed == "python":
        evaluate, traces = evaluate_plain(model, task), lambda: None
    else:
        evaluate, traces = evaluate_tuned(model, task)
    evaluate(samples[:task.batch])          # warm-up: traces the model once
    if task.options.get("in_memory"):
        evaluate(samples)                   # decodes the split into memory, untimed
    traced_in_warmup = traces()
    rates, roofs = [], []
    dtype = "bfloat16" if setup.policy == "mixed_bfloat16" else "float32"
    for _ in range(task.options.get("repeats", 1)):
        roofs.append(gemm_gflops(dtype, steps=3))
        start = time.perf_counter()
        evaluate(samples)
        rates.append(len(samples) / (time.perf_counter() - start))
    return {"img_s": statistics.median(rates), "img_s_each": rates, "img_s_min": min(rates),
            "img_s_max": max(rates), "gemm_gflops_each": roofs,
            "repeats": len(rates), "images": len(samples), "traces_warmup": traced_in_warmup,
            "traces_total": traces(),
            "fold_bn": setup.feed != "python" and bool(task.options.get("fold_bn", True)),
            "peak_rss_mb": peak_rss_mb()}


def evaluate_tuned(model, task: Task):
    """`fcn.py --evaluate`'s way: one `Predictor` for the split (batch norms folded unless
    `options["fold_bn"]` is false), batches from `tf.data` decoded ahead of the model
    (`options["decode_ahead"]` bytes at a time; 0 streams them)."""
    from fcn_keras.evaluate import DECODE_AHEAD_BYTES, score_split
    from fcn_keras.pipeline import DataGenerator, PipelineOptions
    from fcn_keras.predict import Predictor
    predictor = Predictor(model, fold_bn=task.options.get("fold_bn", True))
    options = PipelineOptions(height=task.height, width=task.width, batch_size=task.batch,
                              n_classes=N_CLASSES)

    in_memory, decoded = task.options.get("in_memory"), {}

    def batches(samples):
        """The split's batches from `tf.data`; with `in_memory`, decoded on the first pass over
        these samples and kept, so the timed passes run no input pipeline."""
        dataset = DataGenerator(samples, options, training=False).dataset()
        if not in_memory:
            return dataset
        if len(samples) not in decoded:
            decoded[len(samples)] = list(dataset)
        return decoded[len(samples)]

    def evaluate(samples) -> None:
        score_split(predictor, batches(samples), N_CLASSES, IGNORE_INDEX,
                    decode_ahead=task.options.get("decode_ahead", DECODE_AHEAD_BYTES))

    return evaluate, lambda: predictor.traces


def evaluate_plain(model, task: Task):
    """The book's way: read images in Python, `model.predict` each batch, argmax, count."""
    from fcn_keras.metrics import ConfusionMatrix

    def evaluate(samples) -> None:
        matrix = ConfusionMatrix(N_CLASSES)
        for first in range(0, len(samples), task.batch):
            pairs = [read_pair(s) for s in samples[first:first + task.batch]]  # one size per set
            predictions = model.predict(np.stack([p[0] for p in pairs]), verbose=0).argmax(-1)
            matrix.update(np.stack([p[1] for p in pairs]), predictions)
    return evaluate


def run_latency(task: Task, setup: Setup) -> dict:
    """Median milliseconds to segment one image (labels out), after warm-up calls."""
    from fcn_keras.predict import Predictor
    model = build(task, setup)
    image = np.random.default_rng(0).random((1, task.height, task.width, 3), np.float32)
    if setup.feed == "python":
        predict = lambda: model.predict(image, verbose=0).argmax(-1)  # noqa: E731
    else:
        predictor = Predictor(model, fold_bn=task.options.get("fold_bn", True))
        predict = lambda: predictor.labels(image)  # noqa: E731
    times = []
    for _ in range(task.warmup + task.steps):
        start = time.perf_counter()
        predict()
        times.append(time.perf_counter() - start)
    timed = times[task.warmup:]
    return {"ms": 1000 * statistics.median(timed), "ms_min": 1000 * min(timed),
            "ms_max": 1000 * max(timed), "fold_bn": bool(task.options.get("fold_bn", True)),
            "peak_rss_mb": peak_rss_mb()}


def run_converter(task: Task, setup: Setup) -> dict:
    """ms per image of the VIA converter, bytes of its masks and of the book's one-hot .npy."""
    from fcn_keras.annotations.convert import convert_via
    data = Path(task.data)
    out = Path(tempfile.mkdtemp(prefix="masks-", dir=data.parent))
    start = time.perf_counter()
    result = convert_via(["segmentation_train.json", "segmentation_test.json"], data, out)
    seconds = time.perf_counter() - start
    masks = list(result.mask_paths.values())
    mask_bytes = sum(p.stat().st_size for p in masks) / len(masks)
    book = convert_via("segmentation_test.json", data, Path(tempfile.mkdtemp(dir=data.parent)),
                       save_filename=str(out.parent / "book.npy"))
    book_bytes = (out.parent / "book.npy").stat().st_size / sum(map(len, book.stems.values()))
    return {"ms_per_img": 1000 * seconds / len(masks), "mask_bytes": mask_bytes,
            "book_npy_bytes": book_bytes, "images": len(masks), "peak_rss_mb": peak_rss_mb()}


def core_model(model: dict, height: int, width: int):
    """The network without the any-size wrapper, at a fixed input size (what FLOPs are
    counted on): the core of `build_model` for `model`'s arch, at 1/downsample of the image."""
    from fcn_keras import models
    from fcn_keras.backbones import build_backbone
    options = dict(model)
    arch, down = options.pop("arch", "fcn"), options.pop("downsample", 1)
    shape = (height // down, width // down, 3)
    backbone = build_backbone("resnet", shape, n_layers=options.get("layers_", 3),
                              n=options.get("n", 6),
                              pyramid_filters=options.get("pyramid_filters", 512),
                              pyramid_blocks=options.get("pyramid_blocks", 0))
    context = options.get("context", "none")
    if arch == "fcn":
        return models.build_fcn(shape, backbone.model, N_CLASSES,
                                head_filters=options.get("head_filters", 256))
    if arch == "fcn32s":
        return models.build_fcn32s(shape, backbone, N_CLASSES)
    builder = models.build_fcn4s if arch == "fcn4s" else models.build_fcn8s
    return builder(shape, backbone, N_CLASSES, context=context)


def run_flops(task: Task, setup: Setup) -> dict:
    """Forward GFLOP per image of the model at task.height x task.width, and the share of the
    two transposed-conv heads."""
    total, heads = conv_flops(core_model(task.model, task.height, task.width))
    return {"gflop": total / 1e9, "tconv_share": heads / total}


def conv_flops(model) -> tuple[float, float]:
    """2 x multiply-adds of every Conv2D / Conv2DTranspose (nested models included), and of the
    two stride-2 transposed convs alone."""
    total = heads = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            sub_total, sub_heads = conv_flops(layer)
            total, heads = total + sub_total, heads + sub_heads
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            kernel = layer.kernel.shape
            pixels_at = layer.input if isinstance(layer, keras.layers.Conv2DTranspose) \
                else layer.output
            pixels = pixels_at.shape[1] * pixels_at.shape[2]
            flops = 2.0 * pixels * kernel[0] * kernel[1] * kernel[2] * kernel[3]
            total += flops
            heads += flops if layer.name.startswith("tconv_") else 0.0
    return total, heads


def best_seconds(fn, arg, repeats: int) -> float:
    fn(arg).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(arg).numpy()
        best = min(best, time.perf_counter() - start)
    return best


def run_gemm(task: Task, setup: Setup) -> dict:
    """GFLOP/s of a 2048^3 matrix product in float32 and bfloat16: what the CPU delivers to
    this process right now (other jobs on the machine lower it)."""
    return {dtype: gemm_gflops(dtype, task.steps) for dtype in ("float32", "bfloat16")}


def gemm_gflops(dtype: str, steps: int) -> float:
    """The 2048^3 matrix product's GFLOP/s in `dtype`, best of `steps`."""
    a = tf.cast(tf.random.normal((2048, 2048)), dtype)
    matmul = tf.function(lambda x: tf.matmul(x, x))
    return 2 * 2048 ** 3 / best_seconds(matmul, a, steps) / 1e9


# 3x3 same-padding convolutions at the model's typical shapes (batch, height, width,
# in -> out channels): the backbone's and head's maps at 1/4 and 1/8 of a 192x256 image, and
# at 1/4 of 480x640.
CONV_SHAPES = ((8, 48, 64, 64, 64), (8, 24, 32, 128, 128), (8, 120, 160, 64, 64))


def run_conv(task: Task, setup: Setup) -> dict:
    """GFLOP/s of a forward 3x3 convolution at `CONV_SHAPES` in float32 and bfloat16 (the
    roof a conv-bound network meets, beside the GEMM's); `gflops_<dtype>` is their median.
    `train_gflops_<dtype>`: the same for a training step of each conv (`conv_training_step`)."""
    rng = np.random.default_rng(0)
    result = {}
    for dtype in ("float32", "bfloat16"):
        rates, train_rates = [], []
        for batch, height, width, c_in, c_out in CONV_SHAPES:
            x = tf.cast(rng.random((batch, height, width, c_in), np.float32), dtype)
            w = tf.cast(rng.normal(size=(3, 3, c_in, c_out)).astype(np.float32), dtype)
            conv = tf.function(lambda x, w=w: tf.nn.conv2d(x, w, 1, "SAME"))
            flop = 2.0 * batch * height * width * 9 * c_in * c_out
            rate = flop / best_seconds(conv, x, task.steps) / 1e9
            result[f"{dtype}_{batch}x{height}x{width}x{c_in}to{c_out}"] = rate
            rates.append(rate)
            train_rate = 3 * flop / best_seconds(conv_training_step(), (x, w), task.steps) / 1e9
            result[f"train_{dtype}_{batch}x{height}x{width}x{c_in}to{c_out}"] = train_rate
            train_rates.append(train_rate)
        result[f"gflops_{dtype}"] = statistics.median(rates)
        result[f"train_gflops_{dtype}"] = statistics.median(train_rates)
    return result


def conv_training_step():
    """The forward pass of a 3x3 convolution and both its gradients (input and filter), three
    convolutions' worth of FLOPs: what a training step asks of every conv layer. The input and
    the filter are arguments and the output's gradient depends on the output, so that none of
    the three can be folded into a constant when the function is traced."""
    def step(inputs):
        x, w = inputs
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = tf.nn.conv2d(x, w, 1, "SAME")
            loss = 0.5 * tf.reduce_sum(tf.square(tf.cast(y, tf.float32)))
        dx, dw = tape.gradient(loss, [x, w])
        return tf.reduce_sum(tf.cast(dx[:1, :1, :1], tf.float32)) + tf.reduce_sum(
            tf.cast(dw[:1, :1, :1], tf.float32))
    return tf.function(step)


RUNNERS = {"train": run_train, "pipeline": run_pipeline, "eval": run_eval, "latency": run_latency,
           "converter": run_converter, "flops": run_flops, "gemm": run_gemm, "conv": run_conv}
MODEL_KINDS = ("train", "pipeline", "eval", "latency")


def main(argv=None) -> int:
    """Run the tasks (all of one setup) in this process; one result line per task."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="0,0", help="INTRA,INTER op threads")
    p.add_argument("tasks", help="JSON list of run.Task fields")
    args = p.parse_args(argv)
    tasks = [Task(**t) for t in json.loads(args.tasks)]
    for name in ("tuned", "float32"):
        SETUPS[name].threads = tuple(int(v) for v in args.threads.split(","))
    setup = SETUPS[tasks[0].setup]
    if any(t.kind in MODEL_KINDS for t in tasks):
        apply_setup(setup)
    for task in tasks:
        start = time.perf_counter()
        result = RUNNERS[task.kind](task, setup)
        result["task_s"] = time.perf_counter() - start
        print(RESULT_TAG + json.dumps({"key": task.key, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
