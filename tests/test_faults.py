"""Faults during training: a process SIGKILLed at chosen points (FCN_FAULT_KILL_AT of
fcn_keras/fault_injection.py) resumes from its last completed epoch with `--resume`, and the
best-weights file is loadable whatever the point; Ctrl-C stops cleanly with status 130 and a
message.
"""

import json
import os
import signal
import time

import pytest
from helpers import TINY_WEIGHTS, fault_env, fcn_env, start_fcn, wait_all

pytest.importorskip("tensorflow")

TIMEOUT = 120
STEM = TINY_WEIGHTS.replace(".weights.h5", "")


@pytest.fixture
def train_args(tmp_path, folder_dataset, tiny_train):
    """`train_args(epochs, *extra)`: a tiny run on `folder_dataset`, saving in tmp_path/save."""
    def args(epochs, *extra):
        return ["--train", "--data-path", folder_dataset, "--save-dir", tmp_path / "save",
                "--epochs", epochs, *tiny_train, *extra]
    return args


def run(tmp_path, name, args, **env):
    process = start_fcn(args, tmp_path / f"{name}.log", fcn_env(**env))
    code = wait_all([process], TIMEOUT)[0]
    return code, (tmp_path / f"{name}.log").read_text()


def history_epochs(tmp_path):
    path = tmp_path / "save" / f"{STEM}-history.json"
    return [r["epoch"] for r in json.loads(path.read_text())] if path.exists() else []


def saved_epoch(tmp_path):
    """The epoch the latest complete TrainingState checkpoint continues from (0: none)."""
    import tensorflow as tf
    latest = tf.train.latest_checkpoint(str(tmp_path / "save" / f"{STEM}-state"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def assert_best_weights_loadable(tmp_path):
    from fcn_keras.models import build_model
    path = tmp_path / "save" / TINY_WEIGHTS
    if path.exists():
        model, _ = build_model("fcn", n_classes=3, n=1, layers_=2, head_filters=8)
        model.load_weights(str(path))


# One run killed at each point in turn, every run after the first with --resume (4 epochs in
# all): (kill point, epochs complete when it dies = the epoch the next run resumes after).
KILLS = [("weights@0", 0),     # best weights written under a temporary name, not yet renamed
         ("batch@1", 1),       # in the middle of the second epoch
         ("checkpoint@1", 1),  # state files of the second epoch written, not yet the latest
         ("epoch@2", 3)]       # right after all of the third epoch's saves


@pytest.mark.slow
def test_sigkill_at_each_point_then_resume(tmp_path, train_args):
    resumed_from = 0
    for run_index, (point, done) in enumerate(KILLS):
        extra = ["--resume"] if run_index else []
        code, log = run(tmp_path, point, train_args(4, *extra),
                        **fault_env(kill_at=point))
        assert code == -signal.SIGKILL, f"{point}: {log[-3000:]}"
        if resumed_from:
            assert f"Resuming after epoch {resumed_from}" in log, point
        if run_index:   # the SIGKILLed run's lock on --save-dir is stale: taken over
            assert "taking over the stale lock of process" in log, point
        assert saved_epoch(tmp_path) == done, point
        assert history_epochs(tmp_path)[:done] == list(range(done)), point
        assert_best_weights_loadable(tmp_path)
        resumed_from = done

    code, log = run(tmp_path, "resumed", train_args(4, "--resume"))
    assert code == 0, log[-3000:]
    assert f"Resuming after epoch {resumed_from}" in log
    assert history_epochs(tmp_path) == [0, 1, 2, 3]
    assert saved_epoch(tmp_path) == 4
    assert (tmp_path / "save" / TINY_WEIGHTS).exists()
    assert not list((tmp_path / "save").glob(".*"))  # no temporaries left by the kills
    assert not (tmp_path / "save" / "fcn-train.lock").exists()   # released at the end
    assert_best_weights_loadable(tmp_path)


@pytest.mark.slow
def test_ctrl_c_stops_after_the_last_completed_epoch(tmp_path, train_args):
    log_path = tmp_path / "interrupted.log"
    process = start_fcn(train_args(100), log_path, fcn_env())
    deadline = time.monotonic() + TIMEOUT
    while "epoch 1:" not in log_path.read_text():  # the first epoch is complete and saved
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGINT)
    code = wait_all([process], TIMEOUT)[0]
    log = log_path.read_text()
    assert code == 130, log[-3000:]
    assert "training interrupted" in log and "--resume" in log
    epochs = history_epochs(tmp_path)
    assert epochs == list(range(len(epochs))) and 1 <= len(epochs) < 100
    assert saved_epoch(tmp_path) == len(epochs)  # the state of the last completed epoch
    assert f"{len(epochs)} epoch(s) complete" in log
    assert_best_weights_loadable(tmp_path)


def test_interrupt_guard_defers_the_first_ctrl_c_only():
    from fcn_keras.callbacks import InterruptGuard, TrainingInterrupted
    # The test sets its own starting state: Python's own handler (a shell running the suite in
    # the background starts it with SIGINT ignored, and the guard rightly restores that state
    # after the first Ctrl-C), and SIGINT unblocked in this thread.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        run_guard_twice(InterruptGuard, TrainingInterrupted)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, inherited)


def ctrl_c():
    """SIGINT to this thread (the main one), whose handler Python runs before the next line.
    (`os.kill` on the process may deliver it to one of TensorFlow's threads, and the handler
    would then run whenever the main thread next checks: the test would depend on timing.)"""
    signal.raise_signal(signal.SIGINT)


def run_guard_twice(InterruptGuard, TrainingInterrupted):
    before = signal.getsignal(signal.SIGINT)
    with InterruptGuard() as guard:
        guard.check()  # nothing requested: no-op
        ctrl_c()
        assert guard.requested
        with pytest.raises(TrainingInterrupted):
            guard.check()
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C is not deferred
            ctrl_c()
    assert signal.getsignal(signal.SIGINT) is before
