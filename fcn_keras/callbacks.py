"""Training callbacks: the book's `AccuracyCallback` (validation mIoU, best weights, history),
the learning-rate schedules, and the resumable training state.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fcn_keras.io_utils import atomic_path, atomic_write_text


def book_lr(epoch: int, base_lr: float = 1e-3) -> float:
    """The book's `lr_scheduler`: x0.5 after epoch 40, x0.1 after 60, x0.05 after 80."""
    if epoch > 80:
        return base_lr * 5e-2
    if epoch > 60:
        return base_lr * 1e-1
    if epoch > 40:
        return base_lr * 5e-1
    return base_lr


def make_schedule(kind: str, base_lr: float, epochs: int, warmup_epochs: int = 0):
    """epoch -> learning rate for `book`, `poly` (power 0.9), `cosine` or `constant`."""
    def schedule(epoch: int) -> float:
        if warmup_epochs and epoch < warmup_epochs:
            return base_lr * (epoch + 1) / (warmup_epochs + 1)
        if kind == "book":
            return book_lr(epoch, base_lr)
        progress = (epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
        if kind == "poly":
            return base_lr * (1 - progress) ** 0.9
        if kind == "cosine":
            return base_lr * 0.5 * (1 + math.cos(math.pi * progress))
        return base_lr
    return schedule


class History:
    """Per-epoch records saved as JSON and CSV (atomic rewrites), reloaded on `--resume`."""

    def __init__(self, save_dir: Path, stem: str):
        self.json_path = Path(save_dir) / f"{stem}-history.json"
        self.csv_path = Path(save_dir) / f"{stem}-history.csv"
        self.records: list[dict] = []

    def load(self, up_to_epoch: int | None = None) -> "History":
        if self.json_path.exists():
            records = json.loads(self.json_path.read_text())
            self.records = [r for r in records
                            if up_to_epoch is None or r["epoch"] < up_to_epoch]
        return self

    def append(self, record: dict) -> None:
        self.records = [r for r in self.records if r["epoch"] != record["epoch"]] + [record]
        atomic_write_text(self.json_path, json.dumps(self.records, indent=1) + "\n")
        columns = list(dict.fromkeys(k for r in self.records for k in r
                                     if not isinstance(r[k], (list, dict))))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.records)
        atomic_write_text(self.csv_path, buffer.getvalue())

    @property
    def best_miou(self) -> float:
        return max((r.get("val_mean_iou", -1.0) for r in self.records), default=-1.0)


class AccuracyCallback(keras.callbacks.Callback):
    """The book's callback: after each epoch evaluate `val` with the dataset-wide confusion matrix,
    log the metrics, save the weights when mIoU improves (atomic) and append to the history.
    """

    def __init__(self, evaluate_fn, weights_path: Path, history: History, verbose: int = 1,
                 state=None):
        super().__init__()
        self.evaluate_fn = evaluate_fn
        self.weights_path = Path(weights_path)
        self.history_log = history
        self.best = history.best_miou
        self.verbose = verbose
        self.state = state
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train_time = time.time() - (self._start or time.time())
        metrics = self.evaluate_fn()
        record = {"epoch": epoch, "loss": float(logs.get("loss", float("nan"))),
                  "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                  "epoch_seconds": round(train_time, 2)}
        record.update({f"val_{k}": v for k, v in metrics.items()})
        improved = metrics["mean_iou"] > self.best
        if improved:
            self.best = metrics["mean_iou"]
            with atomic_path(self.weights_path, suffix=".weights.h5") as tmp:
                self.model.save_weights(str(tmp))
        self.history_log.append(record)
        if self.state is not None:
            self.state.save(epoch + 1, self.best)
        logs.update({"val_mean_iou": metrics["mean_iou"],
                     "val_pixel_accuracy": metrics["pixel_accuracy"]})
        if self.verbose:
            note = f"new best, saved {self.weights_path}" if improved else \
                f"best {self.best:.4f}"
            print(f"\nepoch {epoch + 1}: loss {record['loss']:.4f}  val mIoU "
                  f"{metrics['mean_iou']:.4f}  pixel acc {metrics['pixel_accuracy']:.4f}  "
                  f"book mIoU {metrics['book_miou']:.4f}  ({note})", flush=True)


class NanGuard(keras.callbacks.Callback):
    """Stop at the first NaN/inf loss, keeping the best weights already on disk."""

    def __init__(self):
        super().__init__()
        self.stopped_at = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.stopped_at = batch
            self.model.stop_training = True


class TrainingState:
    """The resumable state: model weights, optimizer slots, next epoch and best mIoU.

    Written with `tf.train.CheckpointManager`, which writes the new checkpoint's files before it
    updates the index: a run killed mid-write resumes from the previous complete epoch.
    """

    def __init__(self, directory: Path, model, optimizer):
        self.directory = Path(directory)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                              epoch=self.epoch, best=self.best)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory),
                                                  max_to_keep=2)

    def save(self, next_epoch: int, best: float) -> None:
        self.epoch.assign(next_epoch)
        self.best.assign(best)
        self.manager.save(checkpoint_number=next_epoch)

    def restore(self) -> int | None:
        """Restore the latest complete checkpoint; returns the epoch to continue from."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            return None
        self.checkpoint.restore(latest).expect_partial()
        return int(self.epoch.numpy())
