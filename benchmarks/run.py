#!/usr/bin/env python
"""Speed and memory of fcn-keras against the book's own code, on this machine.

    python benchmarks/run.py --out benchmarks/results.json     # full run, ~15-25 min on 2 cores
    python benchmarks/run.py --quick --out /tmp/quick.json     # smoke run (a minute, tiny model)

Measures, for the book's model (ResNet56v2, `--layers 3`, 4 classes) at 192x256 batch 4 and
352x480 batch 2: training images/s and achieved GFLOP/s after warm-up, evaluation images/s,
single-image latency at 480x640, peak RSS of a training process, the VIA converter's time and
mask bytes per 480x640 image, how epoch time and memory grow with the dataset (N and 4N images)
and with the image size; each for the tuned configuration and, in the same run, a plain one
(float32, Keras' own layers, Python-fed batches like the book's `keras.utils.Sequence`).

Every measurement runs in a fresh process (this script's `--worker` mode), so peak RSS is that
measurement's alone and nothing is warm from an earlier one. `--quick` instead runs all tasks of
a configuration in one process, the configurations' processes side by side, with a tiny model
and a step or two: it checks the plumbing and the JSON keys, its numbers are not measurements. FLOPs are counted analytically (multiply-adds of
every convolution x 2; a training step counts 3x the forward pass).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The book's code on this machine class (DESIGN.md, "Benchmarks").
BOOK = {"train_img_s_192x256": 1.09, "train_img_s_352x480": 0.29,
        "eval_img_s_192x256": 1 / 0.27, "eval_img_s_352x480": 1 / 0.66,
        "peak_rss_mb_train_192x256": 4.6 * 1024, "peak_rss_mb_train_352x480": 7.3 * 1024,
        "converter_ms_per_img": 10.0, "mask_bytes_per_img": 1.17 * 2 ** 20}
# ours / book wanted: at least (speeds) or at most (memory, time, bytes)
TARGETS = {"train_img_s_192x256": (">=", 3.0), "train_img_s_352x480": (">=", 3.0),
           "eval_img_s_192x256": (">=", 2.5), "eval_img_s_352x480": (">=", 2.5),
           "peak_rss_mb_train_192x256": ("<=", 0.5), "peak_rss_mb_train_352x480": ("<=", 0.5),
           "converter_ms_per_img": ("<=", 0.5), "mask_bytes_per_img": ("<=", 1 / 50)}
PEAK_GFLOPS = {"float32": 450.0, "mixed_bfloat16": 770.0}   # this CPU's matrix-work peaks
BOOK_MODEL = {"n": 6, "layers_": 3, "head_filters": 256, "pyramid_filters": 512}
QUICK_MODEL = {"n": 1, "layers_": 2, "head_filters": 8, "pyramid_filters": 16}
N_CLASSES = 4
RESULT_TAG = "BENCH_RESULT "


@dataclass
class Setup:
    """One way of running the model: precision, layers, input feed, XLA, threads."""

    policy: str = "mixed_bfloat16"
    fast_layers: bool = True
    feed: str = "tfdata"            # "tfdata" (DataGenerator) or "python" (a keras PyDataset)
    jit: bool = False
    threads: tuple[int, int] = (0, 0)   # intra-op, inter-op; 0 = TensorFlow's choice


SETUPS = {
    "tuned": Setup(),
    "float32": Setup(policy="float32"),
    "plain": Setup(policy="float32", fast_layers=False, feed="python"),
    "xla": Setup(policy="float32", jit=True),
}


@dataclass
class Task:
    """One measurement for a worker process."""

    kind: str                       # train, eval, latency, converter, flops, gemm
    setup: str = "tuned"
    height: int = 192
    width: int = 256
    batch: int = 4
    warmup: int = 2
    steps: int = 6
    data: str = ""
    limit: int = 0                  # train: use only the first `limit` training images
    epochs: int = 0                 # train: time whole epochs instead of steps (scaling)
    model: dict = field(default_factory=lambda: dict(BOOK_MODEL))
    key: str = ""


# -------------------------------------------------------------------------------------------
# Worker side: one process, one (or, with --quick, several) measurements.

def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def apply_setup(setup: Setup) -> None:
    """Process-wide settings; must run before any model is built."""
    import keras
    from fcn_keras.runtime import configure_threads
    configure_threads(*setup.threads)
    keras.mixed_precision.set_global_policy(setup.policy)


def build(task: Task, setup: Setup):
    from fcn_keras.models import build_model
    model, _ = build_model("fcn", N_CLASSES, fast_layers=setup.fast_layers, **task.model)
    return model


def train_samples(task: Task):
    from fcn_keras.datasets import load_dataset
    samples = load_dataset(task.data).split("train")
    return samples[:task.limit] if task.limit else samples


class PythonBatches:
    """The book's feed: a `keras.utils.Sequence` decoding, cropping and batching in Python."""

    def __new__(cls, *args, **kwargs):
        import keras

        class _Batches(keras.utils.PyDataset):
            def __init__(self, samples, height, width, batch, n_batches, training=True):
                super().__init__()
                self.samples, self.size, self.batch = samples, (height, width), batch
                self.n_batches, self.training = n_batches, training

            def __len__(self):
                return self.n_batches

            def __getitem__(self, index):
                import numpy as np
                picks = [self.samples[(index * self.batch + i) % len(self.samples)]
                         for i in range(self.batch)]
                pairs = [read_crop(s, *self.size, seed=index * self.batch + i)
                         for i, s in enumerate(picks)]
                return (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))

        return _Batches(*args, **kwargs)


def read_pair(sample):
    """Decode an image ([0, 1] float32) and its index mask with PIL, as the book's code did."""
    import numpy as np
    from PIL import Image
    from fcn_keras.io_utils import read_index_mask
    with Image.open(sample.image) as image:
        rgb = np.asarray(image.convert("RGB"), np.float32) / 255.0
    return rgb, read_index_mask(sample.mask)


def read_crop(sample, height, width, seed):
    """`read_pair`, then the same random window (padded if needed) from image and mask."""
    import numpy as np
    from fcn_keras.classes import IGNORE_INDEX
    rgb, mask = read_pair(sample)
    rng = np.random.default_rng(seed)
    top = int(rng.integers(0, max(1, rgb.shape[0] - height + 1)))
    left = int(rng.integers(0, max(1, rgb.shape[1] - width + 1)))
    rgb, mask = rgb[top:top + height, left:left + width], mask[top:top + height, left:left + width]
    pad = [(0, height - rgb.shape[0]), (0, width - rgb.shape[1])]
    mask = np.pad(mask, pad, constant_values=IGNORE_INDEX)
    return np.pad(rgb, pad + [(0, 0)]), mask[..., None]


def training_feed(task: Task, setup: Setup, samples, n_batches: int):
    if setup.feed == "python":
        return PythonBatches(samples, task.height, task.width, task.batch, n_batches)
    from fcn_keras.pipeline import DataGenerator, PipelineOptions
    options = PipelineOptions(height=task.height, width=task.width, batch_size=task.batch,
                              n_classes=N_CLASSES, seed=0)
    return DataGenerator(samples, options, training=True).dataset(repeat=True)


class StepClock:
    """A Keras callback noting when each training batch and epoch ends."""

    def __new__(cls):
        import keras

        class _Clock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.batch_ends, self.epoch_times, self._epoch_start = [], [], 0.0

            def on_epoch_begin(self, epoch, logs=None):
                self._epoch_start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.batch_ends.append(time.perf_counter())

            def on_epoch_end(self, epoch, logs=None):
                self.epoch_times.append(time.perf_counter() - self._epoch_start)

        return _Clock()


def run_train(task: Task, setup: Setup) -> dict:
    """Images/s over `steps` steps after `warmup` (or seconds per epoch when `epochs`)."""
    import keras
    from fcn_keras.losses import SegmentationLoss
    model = build(task, setup)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SegmentationLoss(N_CLASSES),
                  jit_compile=setup.jit)
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
    seconds = clock.batch_ends[-1] - clock.batch_ends[task.warmup - 1]
    return {"img_s": task.steps * task.batch / seconds, "peak_rss_mb": peak_rss_mb()}


def run_pipeline(task: Task, setup: Setup) -> dict:
    """Images/s the training input feed (decode, scale, crop, flip, batch) delivers alone,
    with the whole machine to itself: how much of the CPU feeding the model costs."""
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
    from fcn_keras.datasets import load_dataset
    return load_dataset(task.data).split("test")


def run_eval(task: Task, setup: Setup) -> dict:
    """Images/s of a whole-split evaluation (predictions and the confusion matrix)."""
    model = build(task, setup)
    samples = eval_samples(task)
    evaluate = evaluate_plain(model, task) if setup.feed == "python" else \
        evaluate_tuned(model, task)
    evaluate(samples[:task.batch])          # warm-up: traces the model once
    start = time.perf_counter()
    evaluate(samples)
    seconds = time.perf_counter() - start
    return {"img_s": len(samples) / seconds, "peak_rss_mb": peak_rss_mb()}


def evaluate_tuned(model, task: Task):
    """`fcn.py --evaluate`'s way: one `Predictor` (its traced function is reused, as the app's
    is for a whole split, so the warm-up call pays for the trace), batches from `tf.data`."""
    from fcn_keras.evaluate import score_split
    from fcn_keras.pipeline import DataGenerator, PipelineOptions
    from fcn_keras.predict import Predictor
    predictor = Predictor(model)
    options = PipelineOptions(height=task.height, width=task.width, batch_size=task.batch,
                              n_classes=N_CLASSES)

    def evaluate(samples) -> None:
        score_split(predictor, DataGenerator(samples, options, training=False).dataset(),
                    N_CLASSES, 255)
    return evaluate


def evaluate_plain(model, task: Task):
    """The book's way: read images in Python, `model.predict` each batch, argmax, count."""
    import numpy as np
    from fcn_keras.metrics import ConfusionMatrix

    def evaluate(samples) -> None:
        matrix = ConfusionMatrix(N_CLASSES)
        for first in range(0, len(samples), task.batch):
            pairs = [read_pair(s) for s in samples[first:first + task.batch]]  # one size per set
            predictions = model.predict(np.stack([p[0] for p in pairs]), verbose=0).argmax(-1)
            matrix.update(np.stack([p[1] for p in pairs]), predictions)
    return evaluate


def run_latency(task: Task, setup: Setup) -> dict:
    """Median milliseconds to segment one image (labels out), after two warm-up calls."""
    import numpy as np
    from fcn_keras.predict import Predictor
    model = build(task, setup)
    image = np.random.default_rng(0).random((1, task.height, task.width, 3), np.float32)
    if setup.feed == "python":
        predict = lambda: model.predict(image, verbose=0).argmax(-1)  # noqa: E731
    else:
        predictor = Predictor(model)
        predict = lambda: predictor.labels(image)  # noqa: E731
    times = []
    for _ in range(task.warmup + task.steps):
        start = time.perf_counter()
        predict()
        times.append(time.perf_counter() - start)
    return {"ms": 1000 * statistics.median(times[task.warmup:]), "peak_rss_mb": peak_rss_mb()}


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


def run_flops(task: Task, setup: Setup) -> dict:
    """Forward GFLOP per image of the model at task.height x task.width, and the share of the
    two transposed-conv heads."""
    from fcn_keras.backbones import build_backbone
    from fcn_keras.models import build_fcn
    shape = (task.height, task.width, 3)
    model = dict(task.model)
    backbone = build_backbone("resnet", shape, n_layers=model["layers_"], n=model["n"],
                              pyramid_filters=model["pyramid_filters"])
    core = build_fcn(shape, backbone.model, N_CLASSES, head_filters=model["head_filters"])
    total, heads = conv_flops(core)
    return {"gflop": total / 1e9, "tconv_share": heads / total}


def conv_flops(model) -> tuple[float, float]:
    """2 x multiply-adds of every Conv2D / Conv2DTranspose (nested models included), and of the
    two stride-2 transposed convs alone."""
    import keras
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


def run_gemm(task: Task, setup: Setup) -> dict:
    """GFLOP/s of a 2048^3 matrix product in float32 and bfloat16: what the CPU delivers to
    this process right now (other jobs on the machine lower it)."""
    import tensorflow as tf
    result = {}
    for dtype in ("float32", "bfloat16"):
        a = tf.cast(tf.random.normal((2048, 2048)), dtype)
        matmul = tf.function(lambda x: tf.matmul(x, x))
        matmul(a).numpy()
        best = float("inf")
        for _ in range(task.steps):
            start = time.perf_counter()
            matmul(a).numpy()
            best = min(best, time.perf_counter() - start)
        result[dtype] = 2 * 2048 ** 3 / best / 1e9
    return result


RUNNERS = {"train": run_train, "pipeline": run_pipeline, "eval": run_eval, "latency": run_latency,
           "converter": run_converter, "flops": run_flops, "gemm": run_gemm}


def worker(tasks: list[Task]) -> None:
    """Run tasks (all of one setup) in this process; one result line per task on stdout."""
    setup = SETUPS[tasks[0].setup]
    if any(t.kind in ("train", "pipeline", "eval", "latency") for t in tasks):
        apply_setup(setup)
    for task in tasks:
        start = time.perf_counter()
        result = RUNNERS[task.kind](task, setup)
        result["task_s"] = time.perf_counter() - start
        print(RESULT_TAG + json.dumps({"key": task.key, **result}), flush=True)


# -------------------------------------------------------------------------------------------
# Orchestrator side: data, one subprocess per measurement, the table and the JSON.

def spawn(tasks: list[Task], threads: str, log) -> dict:
    """Run `tasks` in a fresh Python process; their results by key."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(Path(__file__).resolve()), "--threads", threads, "--worker",
               json.dumps([asdict(t) for t in tasks])]
    start = time.time()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
            results[result.pop("key")] = result
    log(f"  {', '.join(t.key for t in tasks)}: {time.time() - start:.0f} s")
    if proc.returncode != 0 or len(results) != len(tasks):
        raise RuntimeError(f"worker for {[t.key for t in tasks]} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return results


def make_data(root: Path, quick: bool, log) -> dict[str, Path]:
    """Synthetic VIA datasets: 480x640 for training and the converter, and small test sets at
    the evaluated sizes."""
    sys.path.insert(0, str(ROOT / "utils"))
    from make_sample_dataset import generate_dataset
    n_big = 10 if quick else 108   # >= 4N training images after the 10% val hold-out
    sets = {"big": (n_big, 2, 640, 480), "eval_192x256": (2, 2 if quick else 16, 256, 192),
            "eval_352x480": (2, 2 if quick else 8, 480, 352)}
    paths = {}
    for name, (n_train, n_test, width, height) in sets.items():
        start = time.time()
        paths[name] = root / name
        generate_dataset(paths[name], n_train, n_test, width, height, seed=1)
        log(f"  drew {name}: {n_train + n_test} images in {time.time() - start:.0f} s")
    return paths


def plan(quick: bool, data: dict[str, Path], model: dict, only: str = "") -> list[list[Task]]:
    """The measurements, grouped by process (one per group; all of a setup with --quick)."""
    big = str(data["big"])
    steps = {"warmup": 1, "steps": 1} if quick else {"warmup": 3, "steps": 8}
    few = {"warmup": 1, "steps": 1} if quick else {"warmup": 2, "steps": 4}
    n = 2 if quick else 24
    tasks = [Task("gemm", key="gemm", steps=3), Task("converter", data=big, key="converter")]
    tasks += [Task("flops", height=h, width=w, model=dict(model), key=f"flops_{h}x{w}")
              for h, w in ((192, 256), (352, 480), (480, 640))]
    for setup in ("tuned", "plain") if quick else ("tuned", "float32", "plain", "xla"):
        for (h, w, b) in ((192, 256, 4), (352, 480, 2)):
            if setup == "xla" and h != 192:
                continue
            counts = few if setup in ("plain", "xla") else steps
            tasks.append(Task("train", setup, h, w, b, data=big, model=model,
                              key=f"{setup}_train_{h}x{w}", **counts))
    if not quick:
        tasks.append(Task("train", "tuned", 480, 640, 1, data=big, model=model,
                          key="tuned_train_480x640", **steps))
    for setup in ("tuned", "plain"):
        tasks.append(Task("pipeline", setup, 192, 256, 4, data=big, warmup=2,
                          steps=4 if quick else 20, key=f"{setup}_pipeline_192x256"))
    for setup in ("tuned", "plain") if quick else ("tuned", "float32", "plain"):
        for (h, w, b) in ((192, 256, 4), (352, 480, 2)):
            tasks.append(Task("eval", setup, h, w, b, data=str(data[f"eval_{h}x{w}"]),
                              model=model, key=f"{setup}_eval_{h}x{w}"))
        tasks.append(Task("latency", setup, 480, 640, 1, model=model, warmup=2,
                          steps=3 if quick else 7, key=f"{setup}_latency_480x640"))
    for label, limit in (("N", n), ("4N", 4 * n)):
        tasks.append(Task("train", "tuned", 192, 256, 4, data=big, model=model, limit=limit,
                          epochs=1, warmup=2, key=f"scaling_{label}"))
    tasks = [t for t in tasks if not only or any(k in t.key for k in only.split(","))]
    if not quick:
        return [[t] for t in tasks]
    groups: dict[str, list[Task]] = {}
    for t in tasks:
        group = "misc" if t.kind not in ("train", "pipeline", "eval", "latency") else \
            t.setup + ("-feed" if t.epochs or t.kind == "pipeline" else "")
        groups.setdefault(group, []).append(t)
    return list(groups.values())


def summarize(raw: dict, model: dict, quick: bool) -> dict:
    """The flat JSON: required keys, GFLOP/s, ratios against the book and the plain setup
    (keys whose measurement was not run, see --only, are left out)."""
    out = {"quick": quick, "model": model, "machine": machine(),
           "gemm_gflops_now": raw.get("gemm"), "setups": {k: asdict(v) for k, v in SETUPS.items()}}
    for size in ("192x256", "352x480", "480x640"):
        if f"flops_{size}" in raw:
            out[f"forward_gflop_{size}"] = raw[f"flops_{size}"]["gflop"]
            out["tconv_flop_share"] = raw[f"flops_{size}"]["tconv_share"]
    for setup in ("tuned", "float32", "plain", "xla"):
        prefix = "" if setup == "tuned" else f"{setup}_"
        for size in ("192x256", "352x480", "480x640"):
            result = raw.get(f"{setup}_train_{size}")
            if result is None or f"forward_gflop_{size}" not in out:
                continue
            gflops = 3 * out[f"forward_gflop_{size}"] * result["img_s"]
            out[f"{prefix}train_img_s_{size}"] = result["img_s"]
            out[f"{prefix}train_gflops_{size}"] = gflops
            out[f"{prefix}peak_rss_mb_train_{size}"] = result["peak_rss_mb"]
            peak = PEAK_GFLOPS[SETUPS[setup].policy]
            out[f"{prefix}train_peak_fraction_{size}"] = gflops / peak
    for setup in ("tuned", "float32", "plain"):
        prefix = "" if setup == "tuned" else f"{setup}_"
        for size in ("192x256", "352x480"):
            result = raw.get(f"{setup}_eval_{size}")
            if result:
                out[f"{prefix}eval_img_s_{size}"] = result["img_s"]
                if f"forward_gflop_{size}" in out:
                    out[f"{prefix}eval_gflops_{size}"] = \
                        out[f"forward_gflop_{size}"] * result["img_s"]
        if f"{setup}_latency_480x640" in raw:
            out[f"{prefix}latency_ms_480x640"] = raw[f"{setup}_latency_480x640"]["ms"]
    for setup in ("tuned", "plain"):
        if f"{setup}_pipeline_192x256" in raw:
            prefix = "" if setup == "tuned" else "plain_"
            feed = raw[f"{setup}_pipeline_192x256"]["img_s"]
            out[f"{prefix}pipeline_img_s_192x256"] = feed
            trained = out.get(f"{prefix}train_img_s_192x256")
            if trained:   # share of the machine's time the input feed needs while training
                out[f"{prefix}pipeline_load_192x256"] = trained / feed
    if "converter" in raw:
        converter = raw["converter"]
        out.update(converter_ms_per_img=converter["ms_per_img"],
                   converter_img_s=1000 / converter["ms_per_img"],
                   mask_bytes_per_img=converter["mask_bytes"],
                   book_npy_bytes_per_img=converter["book_npy_bytes"],
                   peak_rss_mb_converter=converter["peak_rss_mb"])
    add_scaling(out, raw)
    add_ratios(out)
    return out


def add_scaling(out: dict, raw: dict) -> None:
    for size in ("192x256", "352x480", "480x640"):
        if f"train_img_s_{size}" in out:
            height, width = map(int, size.split("x"))
            out[f"train_mpixel_s_{size}"] = out[f"train_img_s_{size}"] * height * width / 1e6
    if "scaling_N" not in raw or "scaling_4N" not in raw:
        return
    small, large = raw["scaling_N"], raw["scaling_4N"]
    out.update(scaling_images_N=small["images"], scaling_images_4N=large["images"],
               epoch_s_N=small["epoch_s"], epoch_s_4N=large["epoch_s"],
               epoch_time_ratio_4N_over_N=large["epoch_s"] / small["epoch_s"],
               peak_rss_mb_N=small["peak_rss_mb"], peak_rss_mb_4N=large["peak_rss_mb"],
               peak_rss_ratio_4N_over_N=large["peak_rss_mb"] / small["peak_rss_mb"])


def add_ratios(out: dict) -> None:
    for key, book in BOOK.items():
        if key not in out:
            continue
        out[f"{key}_vs_book"] = out[key] / book
        plain = out.get(f"plain_{key}")
        if plain:
            out[f"{key}_vs_plain"] = out[key] / plain
    if "latency_ms_480x640" in out and "plain_latency_ms_480x640" in out:
        out["latency_480x640_speedup_vs_plain"] = \
            out["plain_latency_ms_480x640"] / out["latency_ms_480x640"]
    if "mask_bytes_per_img" in out:
        out["mask_bytes_vs_book_npy"] = out["mask_bytes_per_img"] / out["book_npy_bytes_per_img"]


def machine() -> dict:
    import platform
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "load_average_at_end": os.getloadavg()}


def format_table(out: dict) -> str:
    rows = [("metric", "ours", "plain (same run)", "ours/plain", "book", "ours/book", "target")]
    for key in ("train_img_s_192x256", "train_img_s_352x480", "eval_img_s_192x256",
                "eval_img_s_352x480", "peak_rss_mb_train_192x256", "peak_rss_mb_train_352x480",
                "latency_ms_480x640", "converter_ms_per_img", "mask_bytes_per_img"):
        if key not in out:
            continue
        plain, book = out.get(f"plain_{key}"), BOOK.get(key)
        target = TARGETS.get(key)
        rows.append((key, f"{out[key]:.3g}", f"{plain:.3g}" if plain else "-",
                     f"{out[key] / plain:.2f}" if plain else "-",
                     f"{book:.3g}" if book else "-", f"{out[key] / book:.3g}" if book else "-",
                     f"{target[0]} {target[1]:.3g}" if target else "-"))
    for key in ("train_gflops_192x256", "train_gflops_352x480", "train_peak_fraction_192x256",
                "float32_train_img_s_192x256", "float32_train_img_s_352x480",
                "xla_train_img_s_192x256", "float32_eval_img_s_192x256",
                "float32_eval_img_s_352x480", "float32_latency_ms_480x640",
                "train_mpixel_s_192x256", "train_mpixel_s_352x480", "train_mpixel_s_480x640",
                "pipeline_img_s_192x256", "pipeline_load_192x256", "plain_pipeline_load_192x256",
                "epoch_s_N", "epoch_s_4N", "epoch_time_ratio_4N_over_N", "peak_rss_mb_N",
                "peak_rss_mb_4N", "peak_rss_ratio_4N_over_N"):
        if key in out:
            rows.append((key, f"{out[key]:.3g}", "-", "-", "-", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the results as JSON to this file")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny model, a step or two, tasks grouped per process")
    p.add_argument("--workdir", help="folder for the generated data (default: a temp folder)")
    p.add_argument("--only", default="",
                   help="run only the tasks whose key contains one of these comma-separated "
                   "strings (e.g. tuned_train,plain_train); keys left out are missing")
    p.add_argument("--threads", default="0,0",
                   help="INTRA,INTER op threads for the tuned and float32 setups (0: TF's choice)")
    for flag, key in (("--n", "n"), ("--layers", "layers_"), ("--head-filters", "head_filters"),
                      ("--pyramid-filters", "pyramid_filters")):
        p.add_argument(flag, type=int, dest=key,
                       help=f"model override (book: {BOOK_MODEL[key]}; --quick: {QUICK_MODEL[key]})")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    threads = tuple(int(v) for v in args.threads.split(","))
    for name in ("tuned", "float32"):
        SETUPS[name].threads = threads
    if args.worker:
        worker([Task(**t) for t in json.loads(args.worker)])
        return 0
    model = dict(QUICK_MODEL if args.quick else BOOK_MODEL)
    model.update({k: getattr(args, k) for k in BOOK_MODEL if getattr(args, k) is not None})
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="fcn-bench-") as tmp:
        root = Path(args.workdir or tmp)
        log(f"data in {root}")
        data = make_data(root, args.quick, log)
        raw = {}
        groups = plan(args.quick, data, model, args.only)
        if args.quick:   # a smoke run: the setups' processes side by side, timings meaningless
            with ThreadPoolExecutor(len(groups)) as pool:
                for result in pool.map(lambda g: spawn(g, args.threads, log), groups):
                    raw.update(result)
        else:
            for group in groups:
                raw.update(spawn(group, args.threads, log))
    out = summarize(raw, model, args.quick)
    print(format_table(out))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
        log(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
