"""Fault injection for the tests: TEST-ONLY, never a user-facing option.

The fault-tolerance and multi-worker tests (tests/test_faults.py, tests/test_distributed.py)
stop or inspect a training process at an exact point instead of guessing with timers. Training
calls the functions below at those points; they do nothing unless the process was started with
`FCN_FAULT_INJECTION=1` in its environment, and then act on the variables below.

`FCN_FAULT_KILL_AT=POINT@EPOCH` makes the process SIGKILL itself (no cleanup, as a crash or the
OOM killer would) at POINT of the 0-based EPOCH (`POINT` alone: the first epoch it is reached):
- `batch`: after a training step of that epoch (in the middle of the epoch);
- `weights`: the best-weights file written under its temporary name, not yet renamed into place;
- `checkpoint`: the `TrainingState` checkpoint files written, not yet recorded as the latest;
- `epoch`: after all of that epoch's writes (weights, history, state).

`FCN_FAULT_DUMP_WEIGHTS=PATH`: when training returns, the process writes its model's trainable
weights to PATH (`.npz`, `arr_0`, `arr_1`, ... in `model.trainable_variables` order), so a test
can check that every worker of a cluster ends with the same weights, and the other variables
(batch-norm moving statistics) to PATH with `-moving` before `.npz`.
"""

from __future__ import annotations

import os
import signal

ENABLE = "FCN_FAULT_INJECTION"
KILL_AT = "FCN_FAULT_KILL_AT"
DUMP_WEIGHTS = "FCN_FAULT_DUMP_WEIGHTS"


def _setting(name: str) -> str:
    """The variable's value when fault injection is enabled, else ''."""
    return os.environ.get(name, "") if os.environ.get(ENABLE) == "1" else ""


def kill_point(point: str, epoch: int) -> None:
    """SIGKILL this process if `FCN_FAULT_KILL_AT` names this point (and epoch)."""
    spec = _setting(KILL_AT)
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
    if not _setting(KILL_AT).startswith("checkpoint"):
        return None
    import tensorflow as tf
    return tf.train.CheckpointOptions(
        experimental_write_callbacks=[lambda: kill_point("checkpoint", epoch)])


def batch_callbacks() -> list:
    """A Keras callback running the `batch` kill point under `model.fit` (none when unset)."""
    if not _setting(KILL_AT).startswith("batch"):
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
    """Write the trainable weights to `FCN_FAULT_DUMP_WEIGHTS` when it is set."""
    path = _setting(DUMP_WEIGHTS)
    if not path:
        return
    import numpy as np
    np.savez(path, *[np.asarray(v.numpy()) for v in model.trainable_variables])
    np.savez(path.removesuffix(".npz") + "-moving.npz",
             *[np.asarray(v.numpy()) for v in model.non_trainable_variables])
