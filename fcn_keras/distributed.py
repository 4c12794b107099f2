"""Training across processes (machines) with `MultiWorkerMirroredStrategy`.

Keras 3's `model.fit` fails under this strategy ("Attempt to convert a value (PerReplica...)",
keras-team/keras#20585, tensorflow/tensorflow#72388), while a train step of our own run with
`strategy.run` works. So this loop replaces only `fit`'s step and epoch loop; everything else
is the fit path's: the compiled model and its `SegmentationLoss` (`model.compute_loss`, which
already divides by the number of replicas, and divides the cross-entropy by the global batch's
count of valid pixels, so that the all-reduced SUM of the gradients is the gradient of the
global-batch mean), the Keras optimizer's `apply_gradients` (which all-reduces the gradients),
the learning-rate schedule set per epoch, the `DataGenerator` pipeline (auto-shard policy DATA:
each worker keeps its share of every global batch, in a stateless per-epoch order, the one a
single process sees), and `AccuracyCallback`'s end-of-epoch work (validation, best weights,
history, `TrainingState`). With the same seed it trains as `fit` under MirroredStrategy with
as many replicas (tests/test_distributed.py: loss and weights to float32 rounding).

Every worker takes part in each save, as TF's multi-worker guide asks ("saving a checkpoint
... requires the participation of all workers ... attempting to save only on the chief worker
could lead to a deadlock"; reading SyncOnRead variables is a collective). Only the chief
writes into `--save-dir`: the others write into a temporary folder deleted at once. Only the
chief evaluates; its mIoU is broadcast so every worker takes the same save decision.

Batch normalisation keeps `synchronized=False` by default: each replica normalises with its own
batch's statistics and updates its own moving mean/variance; the trainable weights (gamma and
beta included) stay identical across workers, and the saved weights carry the chief's moving
statistics. `--sync-bn` (`synchronize_batch_norm`) all-reduces the batch statistics in every
BN layer of every step instead: each replica normalises with the global batch's statistics, as
one big batch would be, and the moving statistics are the same on every worker.

A lost worker: TensorFlow fails the survivors' next collective when a peer's connection is
reset (`lost_worker_errors` turns that into `WorkerLost`, exit status 75); a peer that hangs
without resetting anything is caught by `fcn_keras.watchdog` (`--worker-timeout`).
"""

from __future__ import annotations

import contextlib
import functools
import random

import keras
import tensorflow as tf

from fcn_keras import fault_injection
from fcn_keras.callbacks import TrainingInterrupted
from fcn_keras.errors import WorkerLost

# What a collective raises when a peer is gone: unreachable (its connection reset or refused),
# restarted, timed out, or the collectives aborted after one of those.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.FailedPreconditionError,
               tf.errors.DeadlineExceededError, tf.errors.AbortedError,
               tf.errors.CancelledError)


def is_multiworker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def synchronize_batch_norm(model) -> int:
    """Make every BatchNormalization layer of `model` (nested models included) all-reduce its
    batch statistics across replicas (Keras' `synchronized=True`, read when the layer is
    traced; weights and files are unchanged). Returns the number of layers."""
    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            count += synchronize_batch_norm(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    return count


@contextlib.contextmanager
def lost_worker_errors():
    """Turn the error of a collective whose peer is gone into `WorkerLost`, one line that says
    what happened and what to do, instead of TensorFlow's graph-execution traceback.

    The line points to the chief's --save-dir, not "this worker's files": when the chief is the
    one lost, the survivor is a worker that wrote nothing there (tests/test_distributed.py)."""
    try:
        yield
    except PEER_ERRORS as exc:
        lines = [line.strip() for line in str(exc).splitlines() if "aborted" in line.lower()
                 or "peer" in line.lower()] or [type(exc).__name__]
        raise WorkerLost(f"training stopped: another worker was lost ({lines[0][:200]}); the "
                         "chief's --save-dir holds the last completed epoch: restart every "
                         "worker with --resume") from None


def from_chief(strategy, values: list) -> list:
    """The chief's values on every worker: an all-reduce SUM where only replica 0 (the chief's
    first replica) contributes. A collective, so every worker must call it, in the same order."""
    tensors = [tf.convert_to_tensor(v) for v in values]
    shared = _broadcaster(strategy)(tensors)
    return [strategy.experimental_local_results(t)[0] for t in shared]


@functools.lru_cache(maxsize=None)
def _broadcaster(strategy):
    def share(*local):
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        masked = [tf.where(first, t, tf.zeros_like(t)) for t in local]
        shared = list(masked)
        for dtype in sorted({t.dtype for t in masked}, key=str):  # one packed reduce per dtype
            indices = [i for i, t in enumerate(masked) if t.dtype == dtype]
            reduced = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                         [masked[i] for i in indices])
            for i, value in zip(indices, reduced):
                shared[i] = value
        return shared

    return tf.function(lambda tensors: strategy.run(share, args=tuple(tensors)))


def share_scalar(strategy, value: float) -> float:
    return float(from_chief(strategy, [tf.constant(value, tf.float64)])[0].numpy())


def sync_from_chief(strategy, variables) -> None:
    """Give every worker the chief's values (after `--resume`, when only the chief may have
    the checkpoint: `--save-dir` need not be shared)."""
    variables = list(variables)
    values = from_chief(strategy, [tf.convert_to_tensor(v) for v in variables])
    for variable, value in zip(variables, values):
        variable.assign(value)


def agree_on_seed(strategy, seed: int | None) -> int:
    """One shuffle seed for all workers: with DATA sharding each worker runs the whole pipeline
    and keeps its share of each batch, so the orders must agree (same seed, deterministic maps)
    for the shares to partition each epoch."""
    if seed is None:
        seed = random.SystemRandom().randrange(2 ** 31)
    return int(round(share_scalar(strategy, float(seed))))


class MultiWorkerLoop:
    """The custom step and epoch loop; `run` mirrors `model.fit(epochs, steps_per_epoch,
    initial_epoch)` with the fit path's AccuracyCallback, NanGuard and InterruptGuard."""

    def __init__(self, strategy, model, schedule, accuracy, nan_guard, guard, verbose=1,
                 watchdog=None):
        self.strategy = strategy
        self.watchdog = watchdog
        self.model = model
        self.schedule = schedule
        self.accuracy = accuracy
        self.nan_guard = nan_guard
        self.guard = guard
        self.verbose = verbose
        for callback in (accuracy, nan_guard, guard):
            callback.set_model(model)
        self._step = tf.function(self._distributed_step)

    def _replica_step(self, images, masks):
        model = self.model
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            loss = model.compute_loss(x=images, y=masks, y_pred=predictions, training=True)
            scaled = model.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    def _distributed_step(self, iterator, stop):
        """One global step; also agrees on Ctrl-C (any worker's `stop` stops all of them)."""
        def replica(batch, stop):
            return self._replica_step(*batch), stop
        losses, stops = self.strategy.run(replica, args=(next(iterator), stop))
        sum_ = tf.distribute.ReduceOp.SUM
        return self.strategy.reduce(sum_, losses, axis=None), \
            self.strategy.reduce(sum_, stops, axis=None)

    def run(self, dataset, epochs: int, steps_per_epoch: int, initial_epoch: int = 0) -> None:
        iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
        for epoch in range(initial_epoch, epochs):
            self.model.optimizer.learning_rate = self.schedule(epoch)
            self.accuracy.on_epoch_begin(epoch)
            total = 0.0
            for step in range(steps_per_epoch):
                loss, stops = self._step(iterator, tf.constant(float(self.guard.requested)))
                loss = float(loss)
                self._beat()
                total += loss
                if self.verbose > 1:
                    print(f"epoch {epoch + 1} step {step + 1}/{steps_per_epoch}: loss "
                          f"{loss:.4f}", flush=True)
                self.nan_guard.on_train_batch_end(step, {"loss": loss})
                if self.nan_guard.stopped_at is not None:
                    return
                if float(stops) > 0:  # stop together, on the agreed flag, never the local one
                    raise TrainingInterrupted("interrupted")
                fault_injection.kill_point("batch", epoch)
            self.accuracy.end_epoch(epoch, total / steps_per_epoch)
            self._beat()

    def _beat(self) -> None:
        if self.watchdog is not None:
            self.watchdog.beat()


def prepare_workers(strategy, model, train_gen, accuracy, initial_epoch: int) -> int:
    """Make the workers agree before the first step: shuffle seed, restored weights and
    optimizer state, best mIoU and first epoch, all the chief's. Returns the first epoch."""
    train_gen.options.seed = agree_on_seed(strategy, train_gen.options.seed)
    train_gen.options.deterministic = True
    sync_from_chief(strategy, list(model.variables) + list(model.optimizer.variables))
    accuracy.best = share_scalar(strategy, accuracy.best)
    return int(round(share_scalar(strategy, float(initial_epoch))))

