"""Training past one process: two MultiWorkerMirroredStrategy workers on 127.0.0.1 (the custom
loop of fcn_keras.distributed), and MirroredStrategy `fit` over two logical CPU devices.

Each run is a fresh `python fcn.py` process: a cluster's TF_CONFIG, and the logical CPU split,
must be in place before TensorFlow initialises.
"""

import json
import os
import signal
import socket

import numpy as np
import pytest
from helpers import TINY_WEIGHTS, fault_env, fcn_env, start_fcn, wait_all

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow   # every test here runs python processes

TIMEOUT = 180
STEM = TINY_WEIGHTS.replace(".weights.h5", "")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# `python -c` prefix: two logical CPU devices (for MirroredStrategy without GPUs), set before
# TensorFlow initialises its devices, then `fcn.py` with the arguments.
SPLIT_CPU_THEN_FCN = (
    "import sys; import tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
    "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration(), "
    "tf.config.LogicalDeviceConfiguration()]); "
    "from fcn_keras.cli import main; sys.exit(main(sys.argv[1:]))")


def written_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_two_workers_match_one_process_fitting_the_same_global_batch(tmp_path, folder_dataset,
                                                                     tiny_train):
    """Two MultiWorkerMirroredStrategy workers (the custom loop of fcn_keras.distributed) and,
    as the reference, one process running Keras' `fit` under MirroredStrategy over two logical
    CPUs, with the same seed, initial weights and global batch: the workers hold identical
    weights and only the chief writes files; and the loop reports the reference's loss and ends
    with its weights after 3 SGD steps (SGD: the weights move in proportion to a wrong loss or
    gradient scale).

    The reference has two replicas too, so it computes what the workers compute: batch norm
    over each replica's half batch (no --sync-bn on either side; the workers' BN over half the
    batch is what tf.distribute does, and only --sync-bn would make either side equal to one
    device over the whole batch), and the cross-entropy over the global batch's valid pixels
    (their count all-reduced: `losses.global_count`, tested below; here every pixel is valid:
    scales >= 0.75 of the 64x80 images cover the 32x48 crop).

    Found 2026-12-02: the two differed (loss 1.8255 against 1.7954 in float32, 67 of 68 weight
    arrays apart) because they trained on other samples: per-replica label sums of the first
    step 1522 / 650 in the workers (as a plain single-process pipeline gives them) against
    888 / 1390 under `fit`. Keras' `fit` under a tf.distribute strategy draws one batch from a
    throwaway iterator first (`_maybe_symbolic_build`), and the pipeline's
    `shuffle(reshuffle_each_iteration=True)` gave every new iterator the next order, so `fit`
    under MirroredStrategy started with the second order. The pipeline now shuffles statelessly
    per epoch (`fcn_keras.pipeline.epoch_orders`); since then the per-replica losses agree to
    1 ulp and the weights to 2 ulp.

    Tolerance: both sides do the same float32 arithmetic on the same data and differ only in
    the order of summations (oneDNN splits reductions over another number of threads; the
    gradient all-reduce), a few units of roundoff per step; 32 ulp (float32 eps 2**-23) of the
    loss, and of the largest weight for every array, bounds 3 steps with a wide margin. An
    absolute bound for the arrays because the conv biases that feed batch norm get no gradient
    (BN removes them), so they hold only rounding noise (1e-10..1e-7), which no relative
    tolerance fits. Another sample, loss scale or BN batch moves the loss by ~1% and weights by
    up to 2e-2, thousands of times more.
    """
    args = ["--train", "--data-path", folder_dataset, "--epochs", "1", *tiny_train,
            "--seed", "3", "--optimizer", "sgd", "--lr", "0.05", "--no-mixed-precision"]
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = fcn_env(TF_CONFIG=json.dumps(tf_config),
                      **fault_env(dump_weights=tmp_path / f"weights-{index}.npz"))
        # no --strategy: auto picks MultiWorkerMirroredStrategy because TF_CONFIG is set
        processes.append(start_fcn([*args, "--save-dir", tmp_path / f"save-{index}"],
                                   tmp_path / f"worker-{index}.log", env))
    prefix = SPLIT_CPU_THEN_FCN
    processes.append(start_fcn([*args, "--save-dir", tmp_path / "save-mirrored", "--strategy",
                                "mirrored"], tmp_path / "mirrored.log",
                               fcn_env(**fault_env(dump_weights=tmp_path / "weights-m.npz")),
                               python_prefix=prefix))
    codes = wait_all(processes, TIMEOUT)
    logs = [(tmp_path / f"{name}.log").read_text() for name in ("worker-0", "worker-1",
                                                                 "mirrored")]
    assert codes == [0, 0, 0], "\n\n".join(log[-3000:] for log in logs)
    assert "2 replica(s) (CollectiveAllReduceStrategy)" in logs[0]
    assert "2 replica(s) (MirroredStrategy)" in logs[2]

    chief, other, reference = (np.load(tmp_path / f"weights-{i}.npz") for i in (0, 1, "m"))
    assert len(chief.files) > 10 and chief.files == other.files == reference.files
    for key in chief.files:
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)
    # without --sync-bn each worker keeps the moving statistics of its own share of the data
    chief_moving, other_moving = (np.load(tmp_path / f"weights-{i}-moving.npz") for i in range(2))
    assert any(not np.allclose(chief_moving[key], other_moving[key])
               for key in chief_moving.files)
    history = {name: json.loads((tmp_path / name / f"{STEM}-history.json").read_text())
               for name in ("save-0", "save-mirrored")}
    assert [r["epoch"] for r in history["save-0"]] == [0]
    assert [r["epoch"] for r in history["save-mirrored"]] == [0]
    chief_files = written_files(tmp_path / "save-0")
    assert {TINY_WEIGHTS, f"{STEM}-history.json", f"{STEM}-state"} <= set(chief_files)
    assert written_files(tmp_path / "save-1") == []  # the other worker wrote nothing there
    assert (tmp_path / "save-mirrored" / TINY_WEIGHTS).exists()

    losses = history["save-0"][0]["loss"], history["save-mirrored"][0]["loss"]
    eps = float(np.finfo(np.float32).eps)
    assert losses[0] == pytest.approx(losses[1], rel=32 * eps, abs=0), losses
    atol = 32 * eps * max(float(np.abs(reference[key]).max()) for key in reference.files)
    far = {key: float(np.abs(chief[key] - reference[key]).max()) for key in chief.files
           if not np.allclose(chief[key], reference[key], rtol=0, atol=atol)}
    assert not far, f"{len(far)} of {len(chief.files)} weight arrays apart (atol {atol:.3g}): {far}"


# Two replicas in one process; the loss of a batch with ignored pixels unevenly split between
# them, summed over the replicas, against the loss of the whole batch on one device.
REPLICA_LOSS = SPLIT_CPU_THEN_FCN.split("from fcn_keras")[0] + """
import json
import numpy as np
from fcn_keras.losses import SegmentationLoss
rng = np.random.default_rng(0)
probs = rng.random((4, 6, 5, 3)).astype('float32') + 0.1
probs /= probs.sum(-1, keepdims=True)
labels = rng.integers(0, 3, (4, 6, 5, 1)).astype('uint8')
labels[:2, :5] = 255   # the first replica's half: most pixels ignored
loss = SegmentationLoss(3, 'ce')
one = float(loss(labels, probs))
strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
halves = strategy.experimental_distribute_values_from_function(
    lambda ctx: (tf.constant(labels[2 * ctx.replica_id_in_sync_group:][:2]),
                 tf.constant(probs[2 * ctx.replica_id_in_sync_group:][:2])))
per_replica = strategy.run(tf.function(lambda y, p: loss(y, p)), args=halves)
two = float(strategy.reduce('SUM', per_replica, axis=None))
valid = labels[..., 0] < 3
picked = np.take_along_axis(probs, np.where(valid, labels[..., 0], 0)[..., None], -1)
ce = -np.log(picked[..., 0])
means = [float((ce[h] * valid[h]).sum() / valid[h].sum()) for h in (slice(0, 2), slice(2, 4))]
print(json.dumps({'one': one, 'two': two, 'global': float((ce * valid).sum() / valid.sum()),
                  'mean_of_means': sum(means) / 2}))
"""


def test_replicas_divide_the_cross_entropy_by_the_global_count_of_valid_pixels(tmp_path):
    """Two replicas (MirroredStrategy over two logical CPUs, as `fit` and the multi-worker loop
    run the loss): the replicas' losses sum to the one-device loss of the whole batch, the mean
    over ALL its valid pixels, also when ignored pixels are unevenly split between the halves
    (here 12 valid in the first, 60 in the second), where the mean of the halves' own means is
    far off. Float32 sums over 72 pixels: 32 ulp."""
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", REPLICA_LOSS], capture_output=True,
                            text=True, timeout=TIMEOUT, env=fcn_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    eps = float(np.finfo(np.float32).eps)
    assert values["one"] == pytest.approx(values["global"], rel=32 * eps)
    assert values["two"] == pytest.approx(values["global"], rel=32 * eps), values
    assert abs(values["mean_of_means"] - values["global"]) > 1e3 * 32 * eps * values["global"]


def start_cluster(tmp_path, data, name, args, env_by_index=None):
    """Two workers on free loopback ports, each with its own --save-dir (save-0, save-1)."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = fcn_env(TF_CONFIG=json.dumps(tf_config),
                      **{**fault_env(dump_weights=tmp_path / f"{name}-weights-{index}.npz"),
                         **(env_by_index or {}).get(index, {})})
        processes.append(start_fcn(["--train", "--data-path", data, "--save-dir",
                                    tmp_path / f"save-{index}", *args],
                                   tmp_path / f"{name}-{index}.log", env))
    return processes


def wait_for(process, timeout: float) -> int:
    """The exit status, or the process group killed and a failure after `timeout` seconds."""
    import subprocess
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"still running after {timeout} s; killed") from None


def lose_a_worker_then_resume(tmp_path, data, args, lost: int, moving_too: bool) -> None:
    """Two workers train 3 epochs with `args` (which hold --worker-timeout 60); worker `lost`
    SIGKILLs itself after a step of the second epoch (FCN_FAULT_KILL_AT), when the chief's files
    hold the first. The survivor stops with status 75 and a message naming --resume, within the
    timeout; the chief's --save-dir keeps the first epoch (loadable best weights, a history of
    that epoch only, no temporary file) and the other worker's stays empty. Then both restart
    with --resume, continue from there and end with the same trainable weights (and moving
    statistics when `moving_too`)."""
    processes = start_cluster(tmp_path, data, "lost", args, {lost: fault_env(kill_at="batch@1")})
    survivor = 1 - lost
    try:
        assert wait_for(processes[lost], TIMEOUT) == -9, \
            (tmp_path / f"lost-{lost}.log").read_text()[-3000:]
        code = wait_for(processes[survivor], 60 + 60)   # the timeout, and a margin
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    log = (tmp_path / f"lost-{survivor}.log").read_text()
    assert code == 75, log[-3000:]
    assert "error: training stopped: another worker was lost" in log or \
        "error: no progress from the other worker(s)" in log, log[-3000:]
    assert "--resume" in log and "Traceback" not in log, log[-3000:]
    assert "the chief's --save-dir holds the last completed epoch" in log, log[-3000:]
    save = tmp_path / "save-0"
    history = json.loads((save / f"{STEM}-history.json").read_text())
    assert [r["epoch"] for r in history] == [0]
    assert_weights_load(save / TINY_WEIGHTS)
    assert not [p.name for p in save.rglob("*") if p.name.startswith(".") or "_temp" in p.name]
    assert written_files(tmp_path / "save-1") == []

    processes = start_cluster(tmp_path, data, "resumed", [*args, "--resume"])
    codes = wait_all(processes, TIMEOUT)
    logs = [(tmp_path / f"resumed-{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    assert "Resuming after epoch 1" in logs[0]
    history = json.loads((save / f"{STEM}-history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]
    # trainable weights; with --sync-bn also the batch-norm moving statistics
    for suffix in ("", "-moving") if moving_too else ("",):
        chief_arrays, other = (np.load(tmp_path / f"resumed-weights-{i}{suffix}.npz")
                               for i in range(2))
        assert len(chief_arrays.files) > 10 and chief_arrays.files == other.files
        for key in chief_arrays.files:
            np.testing.assert_allclose(chief_arrays[key], other[key], rtol=1e-6, atol=1e-7,
                                       err_msg=f"weights{suffix} {key}")


def test_a_lost_worker_stops_the_survivor_and_both_resume_with_sync_bn(tmp_path, folder_dataset,
                                                                       tiny_train):
    """Worker 1 SIGKILLs itself in the middle of the second epoch. The chief stops with status
    75 and a message instead of waiting forever, keeping the first epoch on disk; restarted
    with --resume, both continue from there and end with the same weights and, with --sync-bn,
    the same batch-norm moving statistics (`lose_a_worker_then_resume`)."""
    args = ["--epochs", "3", *tiny_train, "--pyramid-filters", "16", "--sync-bn",
            "--worker-timeout", "60"]
    lose_a_worker_then_resume(tmp_path, folder_dataset, args, lost=1, moving_too=True)


def test_a_lost_chief_stops_the_other_worker_and_both_resume(tmp_path, folder_dataset,
                                                            tiny_train):
    """The chief (worker 0: it evaluates, writes the best weights, history and resume state,
    and hosts TensorFlow's coordination service) SIGKILLs itself in the middle of the second
    epoch, after the first epoch's files are written. The other worker stops with status 75
    and a message naming --resume (no traceback) within --worker-timeout; the chief's folder
    keeps the first epoch; restarted with --resume, both continue from there and end with the
    same weights (`lose_a_worker_then_resume`; no --sync-bn: the moving statistics are per
    worker without it)."""
    args = ["--epochs", "3", *tiny_train, "--pyramid-filters", "16", "--worker-timeout", "60"]
    lose_a_worker_then_resume(tmp_path, folder_dataset, args, lost=0, moving_too=False)


def assert_weights_load(path):
    from fcn_keras.app import check_weights_file
    from fcn_keras.models import build_model
    check_weights_file(path)   # reads every array
    model, _ = build_model("fcn", n_classes=3, n=1, layers_=2, head_filters=8,
                           pyramid_filters=16)
    model.load_weights(str(path))
