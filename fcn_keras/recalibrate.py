"""Batch-norm statistics recomputed over the training images as evaluation feeds them.

Why: a batch-norm layer normalises at inference with moving averages of what training showed
it: rescaled, colour-jittered crops (the CamVid preset: 288x384 crops of 0.75-1.25x images),
weighted towards the last few batches (momentum 0.9 forgets within about ten steps).
Evaluation feeds whole, plain images. Recomputing each layer's mean and variance over the
training split's whole images with the weights fixed ("precise BN": Wu & Johnson 2021,
*Rethinking "Batch" in BatchNorm*) closes that gap without a step of training and without
looking at val. On the shipped CamVid model it lifts val mIoU from 0.686 to 0.703; the same
recomputation over augmented crops leaves it at 0.686, over plain crops 0.695 (README,
"CamVid", and `weights/*-recalibrate-bn.json`).

The statistics are population moments, not an average of per-batch variances: every batch's
mean and mean square are weighted by its pixel count. Images go through the network in
batches of one size (no padding enters the statistics); inside a batch the forward pass
normalises with that batch's statistics, as training does, so later layers see what they saw
in training.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from fcn_keras.evaluate import score_split
from fcn_keras.export import save_weights_only
from fcn_keras.io_utils import atomic_path, atomic_write_text, read_image_size
from fcn_keras.pipeline import normalize, read_rgb
from fcn_keras.predict import Predictor
from fcn_keras.sidecar import beside


def batch_norm_layers(model: keras.Model) -> list:
    """The batch norms whose statistics training updates (a frozen layer keeps its own)."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def same_size_batches(image_paths, batch_size: int) -> list[list[str]]:
    """The images in batches of at most `batch_size`, each of one size (read from headers)."""
    by_size = defaultdict(list)
    for path in image_paths:
        by_size[read_image_size(path)].append(str(path))
    return [paths[i:i + batch_size] for _, paths in sorted(by_size.items())
            for i in range(0, len(paths), batch_size)]


def _read_batch(paths: list[str], channels: int) -> tf.Tensor:
    """The images as the evaluation pipeline feeds them (float32 in [0, 1]); an unreadable
    file stops with a DataError naming it (`read_rgb`)."""
    return normalize(tf.constant(np.stack([read_rgb(p, channels) for p in paths])))


class _Moments:
    """Pixel-weighted running sums of each layer's batch mean and mean square."""

    def __init__(self, layers):
        self.layers = layers
        self.pixels = 0.0
        self.sums = [np.zeros(layer.moving_mean.shape, np.float64) for layer in layers]
        self.squares = [np.zeros(layer.moving_mean.shape, np.float64) for layer in layers]

    def add(self, weight: float) -> None:
        """Add the statistics the last forward pass left in the layers (momentum 0)."""
        self.pixels += weight
        for i, layer in enumerate(self.layers):
            mean = np.asarray(layer.moving_mean.numpy(), np.float64)
            variance = np.asarray(layer.moving_variance.numpy(), np.float64)
            self.sums[i] += weight * mean
            self.squares[i] += weight * (variance + mean ** 2)

    def assign(self) -> None:
        for layer, total, square in zip(self.layers, self.sums, self.squares):
            mean = total / self.pixels
            variance = np.maximum(square / self.pixels - mean ** 2, 0.0)
            layer.moving_mean.assign(mean.astype(np.float32))
            layer.moving_variance.assign(variance.astype(np.float32))


def _snapshot(layers) -> list:
    return [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]


def _restore(layers, snapshot) -> None:
    for layer, (mean, variance) in zip(layers, snapshot):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)


def recalibrate_batch_norm(model: keras.Model, image_paths, batch_size: int = 8,
                           channels: int = 3, progress=None) -> dict:
    """Set every trainable batch norm's moving mean and variance of `model` to the population
    statistics of `image_paths` (whole images, as evaluation feeds them). Nothing else
    changes. `progress(done, total)` is called after each batch. Returns what was done:
    images, batches, layers, seconds."""
    layers = batch_norm_layers(model)
    batches = same_size_batches(image_paths, batch_size)
    start = time.monotonic()
    if not layers or not batches:
        return {"images": 0, "batches": 0, "layers": len(layers), "seconds": 0.0}
    momenta, originals = [layer.momentum for layer in layers], _snapshot(layers)
    forward = tf.function(lambda images: model(images, training=True), reduce_retracing=True)
    moments = _Moments(layers)
    try:
        for layer in layers:
            layer.momentum = 0.0   # each forward pass leaves its batch's statistics
        for done, paths in enumerate(batches, 1):
            images = _read_batch(paths, channels)
            forward(images)
            moments.add(float(np.prod(images.shape[:3])))
            if progress is not None:
                progress(done, len(batches))
    except BaseException:
        _restore(layers, originals)
        raise
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    moments.assign()
    return {"images": sum(len(b) for b in batches), "batches": len(batches),
            "layers": len(layers), "seconds": round(time.monotonic() - start, 1)}


def training_images(dataset) -> list[Path]:
    """The training split's image files (the images the statistics are recomputed over)."""
    return [sample.image for sample in dataset.split("train")]


def recalibrate_if_better(model: keras.Model, image_paths, score, batch_size: int = 8,
                          channels: int = 3, progress=None) -> dict:
    """`recalibrate_batch_norm`, kept only if `score()` (val mIoU) does not fall: the model
    is left with the better statistics. Returns the record of `recalibrate_batch_norm` with
    `val_mean_iou_before`, `val_mean_iou_after` and `kept`."""
    layers = batch_norm_layers(model)
    saved = _snapshot(layers)
    before = float(score())
    record = recalibrate_batch_norm(model, image_paths, batch_size, channels, progress)
    after = float(score())
    kept = after >= before
    if not kept:
        _restore(layers, saved)
    return {**record, "val_mean_iou_before": round(before, 4),
            "val_mean_iou_after": round(after, 4), "kept": kept}


def recalibrate_and_save(model: keras.Model, out: Path, train_images, val_batches, classes,
                         batch_size: int = 8, channels: int = 3, note: dict | None = None,
                         show_progress: bool = False) -> dict:
    """`recalibrate_if_better`, val scored on `val_batches` (a dataset of padded (images,
    masks) batches); the weights written to `out` (atomically) if kept, and the record, with
    `note` added, to `record_path(out)`. `show_progress`: a progress bar over the batches (a
    heavy model takes minutes). Returns the record."""
    predictor = Predictor(model)

    def score():
        return score_split(predictor, val_batches, classes.n_classes,
                           classes.ignore_index)["mean_iou"]

    with tqdm(desc="recalibrating batch norm", unit="batch", disable=not show_progress,
              leave=False) as bar:
        def progress(done, total):
            bar.total = total
            bar.update(1)

        record = {**recalibrate_if_better(model, train_images, score, batch_size, channels,
                                          progress), **(note or {})}
    if record["kept"]:
        with atomic_path(out, suffix=".weights.h5") as tmp:
            save_weights_only(model, tmp)
    atomic_write_text(record_path(out), json.dumps(record, indent=1) + "\n")
    return record


def record_path(weights: Path) -> Path:
    """Where the record of a recalibration is kept: `<stem>-recalibrate-bn.json`."""
    return beside(weights, "-recalibrate-bn.json")


def describe(record: dict) -> str:
    """One line for the log."""
    verdict = "kept" if record["kept"] else "not kept (val fell)"
    return (f"Batch-norm statistics recomputed over {record['images']} training images "
            f"({record['layers']} layers, {record['seconds']:g} s): val mIoU "
            f"{record['val_mean_iou_before']:.4f} -> {record['val_mean_iou_after']:.4f}, "
            f"{verdict}")
