"""Test-only hooks, driven by environment variables and inert when those are unset.

They let the fault-tolerance and multi-worker tests stop or inspect a training process at an
exact point instead of guessing with timers. Nothing here is a user-facing option.

`FCN_TEST_KILL_AT=POINT@EPOCH` makes the process SIGKILL itself (no cleanup, as a crash or the
OOM killer would) at POINT of the 0-based EPOCH (`POINT` alone: the first epoch it is reached):
- `batch`: after a training step of that epoch (in the middle of the epoch);
- `weights`: the best-weights file written under its temporary name, not yet renamed into place;
- `checkpoint`: the `TrainingState` checkpoint files written, not yet recorded as the latest;
- `epoch`: after all of that epoch's writes (weights, history, state).

`FCN_TEST_DUMP_WEIGHTS=PATH`: when training returns, the process writes its model's trainable
weights to PATH (`.npz`, `arr_0`, `arr_1`, ... in `model.trainable_variables` order), so a test
can check that every worker of a cluster ends with the same weights, and the other variables
(batch-norm moving statistics) to PATH with `-moving` before `.npz`.
"""

from __future__ import annotations

import os
import signal

KILL_AT = "FCN_TEST_KILL_AT"
DUMP_WEIGHTS = "FCN_TEST_DUMP_WEIGHTS"


def kill_point(point: str, epoch: int) -> None:
    """SIGKILL this process if `FCN_TEST_KILL_AT` names this point (and epoch)."""
    spec = os.environ.get(KILL_AT)
    if not spec:
        return
    name, _, at = spec.partition("@")
    if name == point and (not at or int(at) == epoch):
        os.kill(os.getpid(), signal.SIGKILL)


def checkpoint_options(epoch: int):
    """`tf.train.CheckpointOptions` whose write callback is the `checkpoint` kill point.

    `CheckpointManager.save` runs these callbacks after the checkpoint files are written and
    before it records them as the latest checkpoint. None (no options) when no hook is set.
    """
    if not os.environ.get(KILL_AT, "").startswith("checkpoint"):
        return None
    import tensorflow as tf
    return tf.train.CheckpointOptions(
        experimental_write_callbacks=[lambda: kill_point("checkpoint", epoch)])


def batch_callbacks() -> list:
    """A Keras callback running the `batch` kill point under `model.fit` (none when unset)."""
    if not os.environ.get(KILL_AT, "").startswith("batch"):
        return []
    import keras

    class KillAtBatch(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            kill_point("batch", self.epoch)

    return [KillAtBatch()]


def dump_weights(model) -> None:
    """Write the trainable weights to `FCN_TEST_DUMP_WEIGHTS` when it is set."""
    path = os.environ.get(DUMP_WEIGHTS)
    if not path:
        return
    import numpy as np
    np.savez(path, *[np.asarray(v.numpy()) for v in model.trainable_variables])
    np.savez(path.removesuffix(".npz") + "-moving.npz",
             *[np.asarray(v.numpy()) for v in model.non_trainable_variables])
