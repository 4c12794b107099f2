"""Training callbacks: the book's `AccuracyCallback` (validation mIoU, best weights, history),
the learning-rate schedules, and the resumable training state.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fcn_keras import fault_injection
from fcn_keras.ema import averaged_weights
from fcn_keras.errors import DataError, OutputError
from fcn_keras.export import save_weights_only
from fcn_keras.io_utils import atomic_path, atomic_write_text, write_error


def book_lr(epoch: int, base_lr: float = 1e-3) -> float:
    """The book's `lr_scheduler`: x0.5 after epoch 40, x0.1 after 60, x0.05 after 80."""
    if epoch > 80:
        return base_lr * 5e-2
    if epoch > 60:
        return base_lr * 1e-1
    if epoch > 40:
        return base_lr * 5e-1
    return base_lr


class Schedule:
    """epoch -> learning rate for `book`, `poly` (power 0.9), `cosine` or `constant`.

    `epochs` is the horizon that `poly` and `cosine` decay over. Under `--time-limit` the
    `TimeLimit` callback shortens it to the epochs that fit in the limit (a budgeted schedule,
    Li et al. 2020): a run cut short by the clock still ends at a small learning rate instead of
    stopping halfway down the curve.
    """

    def __init__(self, kind: str, base_lr: float, epochs: int, warmup_epochs: int = 0):
        self.kind, self.base_lr, self.epochs = kind, base_lr, epochs
        self.warmup_epochs = warmup_epochs

    def __call__(self, epoch: int, lr=None) -> float:
        base_lr, warmup_epochs = self.base_lr, self.warmup_epochs
        if warmup_epochs and epoch < warmup_epochs:
            return base_lr * (epoch + 1) / (warmup_epochs + 1)
        if self.kind == "book":
            return book_lr(epoch, base_lr)
        progress = min(1.0, (epoch - warmup_epochs) / max(1, self.epochs - warmup_epochs))
        if self.kind == "poly":
            return base_lr * (1 - progress) ** 0.9
        if self.kind == "cosine":
            return base_lr * 0.5 * (1 + math.cos(math.pi * progress))
        return base_lr


def make_schedule(kind: str, base_lr: float, epochs: int, warmup_epochs: int = 0) -> Schedule:
    return Schedule(kind, base_lr, epochs, warmup_epochs)


class History:
    """Per-epoch records saved as JSON and CSV (atomic rewrites), reloaded on `--resume`."""

    def __init__(self, save_dir: Path, stem: str):
        self.json_path = Path(save_dir) / f"{stem}-history.json"
        self.csv_path = Path(save_dir) / f"{stem}-history.csv"
        self.records: list[dict] = []

    def load(self, up_to_epoch: int | None = None, warn=None) -> "History":
        """Read the records (those before `up_to_epoch`). A damaged file (cut short, not JSON,
        not a list of epoch records) is moved aside to `<name>.damaged` with a warning and the
        history starts empty: the records only describe the run, which goes on without them."""
        if not self.json_path.exists():
            return self
        try:
            records = _history_records(self.json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            try:
                moved = move_aside(self.json_path)
            except OSError as error:
                raise DataError(f"{self.json_path}: damaged history ({exc}), and it cannot be "
                                f"moved aside ({error.strerror or error}); delete it") from None
            (warn or _warn)(f"warning: {self.json_path}: damaged history ({exc}); moved to "
                            f"{moved.name}, the history restarts from this run's epochs")
            return self
        self.records = [r for r in records if up_to_epoch is None or r["epoch"] < up_to_epoch]
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


def _history_records(text: str) -> list[dict]:
    """The records of a history file; ValueError unless it is a list of epoch records."""
    try:
        records = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(records, list) or not all(
            isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in records):
        raise ValueError("expected a JSON list of records with an integer 'epoch'")
    return records


def move_aside(path: Path) -> Path:
    """Rename a damaged file to `<name>.damaged` (`.damaged-2`, ... if taken), so that it is
    kept for a look but no longer read; returns the new path."""
    target = path.with_name(path.name + ".damaged")
    number = 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.damaged-{number}")
    os.replace(path, target)
    return target


def _warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class AccuracyCallback(keras.callbacks.Callback):
    """The book's callback: after each epoch evaluate `val` with the dataset-wide confusion matrix,
    log the metrics, save the weights when mIoU improves (atomic) and append to the history.

    `end_epoch(epoch, loss)` holds the per-epoch work so that a training loop other than
    `fit` (the multi-worker one) runs the same logic. In a cluster every worker calls it (saving
    may need every worker, see `fcn_keras.distributed`), but only the chief (`chief=True`)
    evaluates, reports and writes the real files: the others write their weights and state to a
    temporary folder that is deleted at once. `share(value)` must return the chief's value on
    every worker, so that all take the same save decisions (identity for a single process).
    """

    def __init__(self, evaluate_fn, weights_path: Path, history: History, verbose: int = 1,
                 state=None, chief: bool = True, share=None):
        super().__init__()
        self.evaluate_fn = evaluate_fn
        self.weights_path = Path(weights_path)
        self.history_log = history
        self.best = history.best_miou
        self.verbose = verbose
        self.state = state
        self.chief = chief
        self.share = share or (lambda value: value)
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        metrics = self.end_epoch(epoch, float(logs.get("loss", float("nan"))))
        if metrics:
            logs.update({"val_mean_iou": metrics["mean_iou"],
                         "val_pixel_accuracy": metrics["pixel_accuracy"]})

    def end_epoch(self, epoch: int, loss: float) -> dict:
        """Evaluate (chief), save the best weights, the history and the resumable state of a
        completed epoch (0-based); returns the validation metrics ({} on other workers)."""
        train_time = time.time() - (self._start or time.time())
        val_start = time.time()
        with averaged_weights(self.model):   # --ema: validate and keep the averaged weights
            metrics = self.evaluate_fn() if self.chief else {}
            val_time = time.time() - val_start
            miou = float(self.share(metrics.get("mean_iou", -1.0)))
            improved = miou > self.best
            if improved:
                self.best = miou
                self._save_weights(epoch)
        if self.chief:
            record = {"epoch": epoch, "loss": loss,
                      "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                      "epoch_seconds": round(train_time, 2), "val_seconds": round(val_time, 2)}
            record.update({f"val_{k}": v for k, v in metrics.items()})
            self.history_log.append(record)
        if self.state is not None:
            self.state.save(epoch + 1, self.best)
        fault_injection.kill_point("epoch", epoch)
        if self.verbose and self.chief:
            note = f"new best, saved {self.weights_path}" if improved else \
                f"best {self.best:.4f}"
            print(f"\nepoch {epoch + 1}: loss {loss:.4f}  val mIoU "
                  f"{metrics['mean_iou']:.4f}  pixel acc {metrics['pixel_accuracy']:.4f}  "
                  f"book mIoU {metrics['book_miou']:.4f}  ({note})", flush=True)
        return metrics

    def _save_weights(self, epoch: int) -> None:
        if not self.chief:
            try:
                with tempfile.TemporaryDirectory(prefix="fcn-worker-") as scratch:
                    self.model.save_weights(str(Path(scratch) / self.weights_path.name))
            except OSError as exc:
                raise OutputError(f"{tempfile.gettempdir()}: cannot write this worker's "
                                  f"scratch copy of the weights ({write_error(exc)})") from None
            return
        with atomic_path(self.weights_path, suffix=".weights.h5") as tmp:
            save_weights_only(self.model, tmp)
            fault_injection.kill_point("weights", epoch)


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


class TimeLimit(keras.callbacks.Callback):
    """Stop training before an epoch that would end past `minutes` of training.

    A recipe promised to finish "within 2 hours" must still do so on a slower or busier machine:
    after each epoch, if the time so far plus the mean epoch time would pass the limit, training
    stops there. The best weights and the resumable state are already saved by then, so a
    stopped run is as usable as a finished one (and `--resume` continues it).

    Given the run's `schedule`, it also sets the schedule's horizon to the last epoch that fits
    (never beyond the planned `--epochs`), so a cosine or poly decay completes within the limit.
    """

    def __init__(self, minutes: float, clock=time.monotonic, schedule: Schedule | None = None):
        super().__init__()
        self.limit_s = float(minutes) * 60.0
        self.clock = clock
        self.schedule = schedule
        self.stopped_after = None   # epochs completed in this run when the limit stopped it
        self._start = None
        self._epochs = 0

    def on_train_begin(self, logs=None):
        self._start = self.clock()
        self._epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self._epochs += 1
        elapsed = self.clock() - self._start
        mean = elapsed / self._epochs
        planned = (self.params or {}).get("epochs")
        if self.schedule is not None:
            fit = epoch + 1 + int(max(0.0, self.limit_s - elapsed) // max(mean, 1e-9))
            self.schedule.epochs = min(planned or fit, fit)
        if planned is not None and epoch + 1 >= planned:
            return   # the run ends here anyway: nothing was cut short
        if elapsed + mean > self.limit_s:
            self.stopped_after = self._epochs
            self.model.stop_training = True


class PaceReport(keras.callbacks.Callback):
    """After the first epoch of a run, say how long the rest will take at that pace, so that
    a user who started the book's 100 epochs learns within minutes whether that means an hour
    or a day. The epoch's time includes validation (place it after the validation callback)."""

    def __init__(self, epochs: int, log=print, clock=time.monotonic,
                 time_limit: float | None = None):
        super().__init__()
        self.epochs = epochs
        self.log = log
        self.clock = clock
        self.time_limit = time_limit
        self._start = None
        self.message = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._start is None:
            self._start = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        if self.message is None and self._start is not None:
            self.message = pace_message(epoch + 1, self.clock() - self._start,
                                        self.epochs - epoch - 1, self.time_limit)
            self.log(self.message)


def pace_message(epoch: int, seconds: float, left: int, time_limit: float | None = None) -> str:
    """'Epoch 1 took 42 s; the 99 epochs left take about 1 h 9 min at this pace ...'."""
    head = f"Epoch {epoch} took {human_duration(seconds)}"
    if left <= 0:
        return f"{head}; that was the last one"
    what = f"the {left} epochs left take" if left > 1 else "the epoch left takes"
    text = (f"{head}; {what} about "
            f"{human_duration(left * seconds)} at this pace (the first epoch also builds the "
            "graph, so probably a little less)")
    if time_limit is not None and left * seconds > time_limit * 60:
        text += f"; --time-limit stops the run after {human_duration(time_limit * 60)}"
    return text


def human_duration(seconds: float) -> str:
    """12 s, 4 min 05 s, 3 h 20 min, 2 d 5 h: the two largest units, rounded."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    minutes = int(round(seconds / 60))
    hours, mins = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {mins:02d} min"
    days, hours = divmod(int(round(minutes / 60)), 24)
    return f"{days} d {hours} h"


class TrainingState:
    """The resumable state: model weights, optimizer slots, next epoch and best mIoU.

    Written with `tf.train.CheckpointManager`, which writes the new checkpoint's files before it
    updates the index: a run killed mid-write resumes from the previous complete epoch. A write
    that fails (a full disk) leaves the previous checkpoint as the latest, removes the new one's
    partial files and raises `OutputError`; a checkpoint that cannot be read back (truncated,
    overwritten) is a `DataError` naming its files, never a TensorFlow traceback.
    `scratch=True` (a non-chief worker of a cluster) takes part in every save, as TF asks of
    all workers, but into a temporary folder deleted at once; it still restores from
    `directory`. `fresh=True` (a run without `--resume`) moves a damaged index aside: that run
    reads nothing back.
    """

    def __init__(self, directory: Path, model, optimizer, scratch: bool = False,
                 fresh: bool = False):
        self.directory = Path(directory)
        self.scratch = scratch
        self.fresh = fresh
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                              epoch=self.epoch, best=self.best)
        self._manager = None

    @property
    def manager(self) -> tf.train.CheckpointManager:
        """Made on first use, after checking the folder's `checkpoint` index: TensorFlow
        ignores an index it cannot parse, so a damaged one would silently restart the run."""
        if self._manager is None:
            index = self.directory / "checkpoint"
            if index.is_file() and not _index_readable(self.directory):
                if not self.fresh:
                    raise DataError(f"{index}: damaged index of the resume checkpoints "
                                    f"(not a readable checkpoint state); {RESTART_HINT}")
                _warn(f"warning: {index}: damaged index of the resume checkpoints; moved to "
                      f"{move_aside(index).name} (this run starts afresh)")
            self._manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory),
                                                       max_to_keep=2)
        return self._manager

    def save(self, next_epoch: int, best: float) -> None:
        self.epoch.assign(next_epoch)
        self.best.assign(best)
        if self.scratch:
            with tempfile.TemporaryDirectory(prefix="fcn-worker-state-") as scratch:
                self.checkpoint.write(str(Path(scratch) / "ckpt"))
            return
        manager = self.manager
        try:
            manager.save(checkpoint_number=next_epoch,
                         options=fault_injection.checkpoint_options(next_epoch - 1))
        except (tf.errors.OpError, OSError) as exc:
            self._remove_partial(next_epoch)
            kept = manager.latest_checkpoint
            raise OutputError(
                f"{self.directory}: cannot write the resume checkpoint of epoch {next_epoch} "
                f"({write_error(exc)}); "
                + (f"the previous one ({Path(kept).name}) is kept" if kept else
                   "no earlier one exists")) from None

    def _remove_partial(self, number: int) -> None:
        """The files a failed save of checkpoint `number` may leave: its data and index, the
        temporary folder of its shards and the index's temporary copy."""
        for pattern in (f"ckpt-{number}.*", f"ckpt-{number}_temp*", "checkpoint.tmp*"):
            for path in self.directory.glob(pattern):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    def restore(self) -> int | None:
        """Restore the latest complete checkpoint; returns the epoch to continue from."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            return None
        try:
            self.checkpoint.restore(latest).expect_partial()
        except Exception as exc:   # OpError, IndexError ("read less bytes"), ValueError, ...
            files = ", ".join(sorted(p.name for p in Path(latest).parent.glob(
                Path(latest).name + ".*"))) or "its files are missing"
            raise DataError(f"{latest}: damaged or foreign resume checkpoint ({files}): "
                            f"{_first_line(exc)}; {RESTART_HINT}") from None
        return int(self.epoch.numpy())


RESTART_HINT = ("the best weights beside it stay usable; to train on, start over without "
                "--resume or in another --save-dir")


def _index_readable(directory: Path) -> bool:
    try:
        return tf.train.get_checkpoint_state(str(directory)) is not None
    except (tf.errors.OpError, ValueError):   # ValueError: not UTF-8
        return False


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training at a step boundary; the last completed epoch is saved."""


class InterruptGuard(keras.callbacks.Callback):
    """Turns Ctrl-C (SIGINT) during training into a stop at the next step boundary.

    The first Ctrl-C only sets a flag: a step or an end-of-epoch save in progress finishes, and
    `check()` (after every step and every epoch) raises `TrainingInterrupted`; the state of the
    last completed epoch is then on disk. A second Ctrl-C interrupts at once, as usual. Used as a
    context manager around training; a Keras callback under `fit` (put it after the callbacks
    that save). The multi-worker loop instead sends `requested` with every step, so that all
    workers stop after the same step (a worker stopping alone would hang the others).
    """

    def __init__(self):
        super().__init__()
        self.requested = False
        self._installed = False
        self._previous = None

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True
        return self

    def __exit__(self, *exc_info) -> None:
        if self._installed:
            self._restore()
            self._installed = False

    def _restore(self) -> None:
        # None: the previous handler was not set from Python; fall back to KeyboardInterrupt
        signal.signal(signal.SIGINT, self._previous if self._previous is not None
                      else signal.default_int_handler)

    def _on_sigint(self, signum, frame) -> None:
        self.requested = True
        self._restore()
        print("\nCtrl-C: stopping after the current step (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def check(self) -> None:
        if self.requested:
            raise TrainingInterrupted("interrupted")

    def on_train_batch_end(self, batch, logs=None):
        self.check()

    def on_epoch_end(self, epoch, logs=None):
        self.check()
