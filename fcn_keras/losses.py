"""Segmentation losses that skip ignored pixels: cross-entropy (optionally class-weighted), Dice,
the Lovász-softmax (a convex surrogate of the IoU itself), and sums of cross-entropy with either.
Labels are sparse class indices; any label >= n_classes (the ignore index, 255 or CamVid's void
11) contributes nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
from keras import ops

from fcn_keras.choices import LOSSES
from fcn_keras.errors import ConfigError


def _labels(y_true, n_classes):
    labels = ops.cast(y_true, "int32")
    if len(labels.shape) == 4:
        labels = ops.squeeze(labels, -1)
    valid = ops.cast(labels < n_classes, "float32")
    safe = ops.where(labels < n_classes, labels, 0)
    return safe, valid


@keras.saving.register_keras_serializable(package="fcn_keras")
class SegmentationLoss(keras.losses.Loss):
    """Pixel-wise loss over valid pixels, normalised by their (weighted) count in the batch.

    `call` returns per-sample values scaled so that Keras' mean over the batch equals the loss
    over all valid pixels of the batch (as PyTorch's `ignore_index` cross-entropy does); under a
    tf.distribute strategy, the cross-entropy is divided by the global batch's count
    (`global_count`), so the replicas' losses sum to the one-device loss. Dice and Lovász are
    not sums over pixels: each replica computes them over its own share of the batch.
    """

    def __init__(self, n_classes, kind="ce", class_weights=None, name="segmentation_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if kind not in LOSSES:
            raise ConfigError(f"unknown --loss {kind!r}")
        self.n_classes = int(n_classes)
        self.kind = kind
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        labels, valid = _labels(y_true, self.n_classes)
        probs = ops.cast(y_pred, "float32")
        batch_size = ops.shape(probs)[0]
        batch = ops.cast(batch_size, "float32")
        total = 0.0
        one_hot = ops.one_hot(labels, self.n_classes)   # shared by cross-entropy and Dice
        if self.kind in ("ce", "ce+dice", "ce+lovasz"):
            # A one-hot product, not a gather: the same value, but the gather's gradient is a
            # scatter (UnsortedSegmentSum), 12% of the op time in one profile of the quick
            # model's step.
            picked = ops.sum(probs * one_hot, axis=-1)
            ce = -ops.log(ops.clip(picked, 1e-7, 1.0))
            weights = valid
            if self.class_weights is not None:
                table = ops.convert_to_tensor(self.class_weights, dtype="float32")
                weights = weights * ops.take(table, labels)
            per_sample = ops.sum(ce * weights, axis=(1, 2))
            replicas, count = global_count(ops.sum(weights))
            total = per_sample * batch * replicas / ops.maximum(count, 1e-6)
        if self.kind in ("dice", "ce+dice"):
            total = total + dice_loss(one_hot, valid, probs) * ops.ones((batch_size,))
        if self.kind in ("lovasz", "ce+lovasz"):
            total = total + lovasz_softmax(labels, valid, probs, self.n_classes) * ops.ones(
                (batch_size,))
        return total

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "kind": self.kind,
                "class_weights": self.class_weights}


def global_count(count):
    """(replicas, the sum of `count` over them): under a tf.distribute strategy with several
    replicas, each replica's valid pixels are all-reduced, so that the cross-entropy is the mean
    over the GLOBAL batch's valid pixels. With each replica dividing by its own count, the sum
    of the replicas' losses (which Keras scales by 1 / replicas) was the mean of their means: a
    half batch with few valid pixels (padding, void) weighed as much as a full one. Elsewhere
    (one replica, cross-replica context, other backends): (1, count)."""
    if keras.backend.backend() != "tensorflow":
        return 1.0, count
    import tensorflow as tf
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 1.0, count
    count = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(count))
    return float(context.num_replicas_in_sync), count


def dice_loss(one_hot, valid, probs, smooth=1.0):
    """1 - mean soft Dice over the classes present in the batch's ground truth (`one_hot`: the
    labels one-hot encoded, ignored pixels included; `valid` masks them out)."""
    one_hot = one_hot * ops.expand_dims(valid, -1)
    probs = probs * ops.expand_dims(valid, -1)
    inter = ops.sum(one_hot * probs, axis=(0, 1, 2))
    sums = ops.sum(one_hot, axis=(0, 1, 2)) + ops.sum(probs, axis=(0, 1, 2))
    dice = (2.0 * inter + smooth) / (sums + smooth)
    present = ops.cast(ops.sum(one_hot, axis=(0, 1, 2)) > 0, "float32")
    return 1.0 - ops.sum(dice * present) / ops.maximum(ops.sum(present), 1.0)


def lovasz_softmax(labels, valid, probs, n_classes):
    """The Lovász-softmax loss (Berman et al., CVPR 2018) over the batch's valid pixels: for each
    class present in the ground truth, the errors |truth - p| sorted in decreasing order, dotted
    with the gradient of the Lovász extension of the Jaccard loss; then the mean over classes.

    Ignored pixels get error 0 and no truth, so they sort last and add nothing (the Jaccard
    terms of a position depend only on the positions before it).
    """
    probs = ops.reshape(probs, (-1, n_classes))
    labels = ops.reshape(labels, (-1,))
    valid = ops.reshape(valid, (-1,))
    count = ops.shape(labels)[0]
    losses, present = [], []
    for c in range(n_classes):
        truth = ops.cast(labels == c, "float32") * valid
        errors = ops.abs(truth - probs[:, c]) * valid
        errors_sorted, order = ops.top_k(errors, k=count)
        truth_sorted = ops.take(truth, order)
        total = ops.sum(truth_sorted)
        intersection = total - ops.cumsum(truth_sorted)
        union = total + ops.cumsum(1.0 - truth_sorted)
        jaccard = 1.0 - intersection / ops.maximum(union, 1e-6)
        grad = ops.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(ops.sum(errors_sorted * ops.stop_gradient(grad)))
        present.append(ops.cast(total > 0, "float32"))
    losses, present = ops.stack(losses), ops.stack(present)
    return ops.sum(losses * present) / ops.maximum(ops.sum(present), 1.0)


def median_frequency_weights(pixel_counts, image_counts=None, power=1.0) -> list[float]:
    """Median frequency balancing (Eigen & Fergus, used by SegNet on CamVid).

    freq(c) = pixels of c / total pixels of the images where c appears; weight = median / freq,
    raised to `power` (0.5: the square root, a milder balance that over-paints rare classes
    less; the full weights put a pole's pixel at ~20x a road's on CamVid).
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    totals = counts.sum() if image_counts is None else np.asarray(image_counts, np.float64)
    freq = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    median = np.median(freq[freq > 0]) if np.any(freq > 0) else 1.0
    weights = np.divide(median, freq, out=np.zeros_like(freq), where=freq > 0) ** power
    return [float(w) for w in weights]


MEDIAN_FREQ_POWERS = {"median-freq": 1.0, "median-freq-sqrt": 0.5}


def _finite_weight(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:   # an integer too large for a float
        return False


def load_class_weights(spec: str, n_classes: int, counts_fn=None) -> list[float] | None:
    """`--class-weights none|median-freq|median-freq-sqrt|FILE` -> a weight per class (or None)."""
    if spec in (None, "", "none"):
        return None
    if spec in MEDIAN_FREQ_POWERS:
        pixel_counts, image_counts = counts_fn()
        return median_frequency_weights(pixel_counts, image_counts, MEDIAN_FREQ_POWERS[spec])
    path = Path(spec)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--class-weights {spec}: file not found") from None
    except (OSError, ValueError, RecursionError) as exc:   # ValueError: bad JSON or UTF-8
        raise ConfigError(f"--class-weights {spec}: not a JSON list of numbers ({exc})") from None
    if isinstance(data, dict):
        data = data.get("weights", data)
    if not isinstance(data, list) or len(data) != n_classes or not all(
            _finite_weight(w) for w in data):
        raise ConfigError(f"--class-weights {spec}: expected a JSON list of {n_classes} "
                          "finite non-negative numbers (one per class)")
    return [float(w) for w in data]


def class_pixel_counts(samples, n_classes: int):
    """Pixels of each class over the masks of `samples`, and pixels of the images holding it."""
    from fcn_keras.io_utils import mask_histogram
    pixels = np.zeros(n_classes, np.int64)
    image_pixels = np.zeros(n_classes, np.int64)
    for sample in samples:
        counts = mask_histogram(sample.mask)[:n_classes]
        pixels += counts
        image_pixels += (counts > 0) * int(counts.sum())
    return pixels, image_pixels
