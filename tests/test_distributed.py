"""Training past one process: two MultiWorkerMirroredStrategy workers on 127.0.0.1 (the custom
loop of fcn_keras.distributed), and MirroredStrategy `fit` over two logical CPU devices.

Each run is a fresh `python fcn.py` process: a cluster's TF_CONFIG, and `split_cpu`, must be in
place before TensorFlow initialises.
"""

import json
import os
import signal
import socket
import time

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from helpers import (TINY_TRAIN, TINY_WEIGHTS, fcn_env, make_folder_dataset,  # noqa: E402
                     start_fcn, wait_all)

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


def written_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_two_workers_train_the_same_weights_and_only_the_chief_writes(tmp_path):
    data = make_folder_dataset(tmp_path / "data")
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = fcn_env(TF_CONFIG=json.dumps(tf_config),
                      FCN_TEST_DUMP_WEIGHTS=str(tmp_path / f"weights-{index}.npz"))
        # no --strategy: auto picks MultiWorkerMirroredStrategy because TF_CONFIG is set
        args = ["--train", "--data-path", data, "--save-dir", tmp_path / f"save-{index}",
                "--epochs", "1", *TINY_TRAIN]
        processes.append(start_fcn(args, tmp_path / f"worker-{index}.log", env))
    codes = wait_all(processes, TIMEOUT)
    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    assert "2 replica(s) (CollectiveAllReduceStrategy)" in logs[0]

    chief, other = (np.load(tmp_path / f"weights-{i}.npz") for i in range(2))
    assert len(chief.files) > 10 and chief.files == other.files
    for key in chief.files:
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)
    # without --sync-bn each worker keeps the moving statistics of its own share of the data
    chief, other = (np.load(tmp_path / f"weights-{i}-moving.npz") for i in range(2))
    assert any(not np.allclose(chief[key], other[key]) for key in chief.files)

    chief_files = written_files(tmp_path / "save-0")
    assert {TINY_WEIGHTS, f"{STEM}-history.json", f"{STEM}-state"} <= set(chief_files)
    history = json.loads((tmp_path / "save-0" / f"{STEM}-history.json").read_text())
    assert [r["epoch"] for r in history] == [0]
    assert written_files(tmp_path / "save-1") == []  # the other worker wrote nothing there


def test_mirrored_fit_over_two_logical_cpus(tmp_path):
    data = make_folder_dataset(tmp_path / "data")
    prefix = ("import sys; from fcn_keras.strategy import split_cpu; split_cpu(2); "
              "from fcn_keras.cli import main; sys.exit(main(sys.argv[1:]))")
    args = ["--train", "--data-path", data, "--save-dir", tmp_path / "save", "--epochs", "1",
            "--strategy", "mirrored", *TINY_TRAIN, "--steps-per-epoch", "1"]
    process = start_fcn(args, tmp_path / "mirrored.log", fcn_env(), python_prefix=prefix)
    codes = wait_all([process], TIMEOUT)
    log = (tmp_path / "mirrored.log").read_text()
    assert codes == [0], log[-3000:]
    assert "2 replica(s) (MirroredStrategy)" in log
    history = json.loads((tmp_path / "save" / f"{STEM}-history.json").read_text())
    assert [r["epoch"] for r in history] == [0]
    assert (tmp_path / "save" / TINY_WEIGHTS).exists()


def start_cluster(tmp_path, data, name, args, env_by_index=None):
    """Two workers on free loopback ports, each with its own --save-dir (save-0, save-1)."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = fcn_env(TF_CONFIG=json.dumps(tf_config),
                      FCN_TEST_DUMP_WEIGHTS=str(tmp_path / f"{name}-weights-{index}.npz"),
                      **(env_by_index or {}).get(index, {}))
        processes.append(start_fcn(["--train", "--data-path", data, "--save-dir",
                                    tmp_path / f"save-{index}", *args],
                                   tmp_path / f"{name}-{index}.log", env))
    return processes


def wait_for(process, timeout: float) -> int:
    """The exit status, or the process group killed and a failure after `timeout` seconds."""
    import os
    import signal
    import subprocess
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"still running after {timeout} s; killed") from None


def test_a_lost_worker_stops_the_survivor_and_both_resume_with_sync_bn(tmp_path):
    """Worker 1 SIGKILLs itself in the middle of the second epoch (FCN_TEST_KILL_AT). The chief
    stops with status 75 and a message instead of waiting forever, keeping the first epoch on
    disk; restarted with --resume, both continue from there and end with the same weights and,
    with --sync-bn, the same batch-norm moving statistics."""
    data = make_folder_dataset(tmp_path / "data")
    args = ["--epochs", "3", *TINY_TRAIN, "--pyramid-filters", "16", "--sync-bn",
            "--worker-timeout", "60"]
    chief, lost = start_cluster(tmp_path, data, "lost", args,
                                {1: {"FCN_TEST_KILL_AT": "batch@1"}})
    try:
        assert wait_for(lost, TIMEOUT) == -9, (tmp_path / "lost-1.log").read_text()[-3000:]
        died = time.monotonic()
        code = wait_for(chief, 60 + 60)
    finally:
        for process in (chief, lost):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    log = (tmp_path / "lost-0.log").read_text()
    assert code == 75, log[-3000:]
    assert "error: training stopped: another worker was lost" in log or \
        "error: no progress from the other worker(s)" in log, log[-3000:]
    assert "--resume" in log and "Traceback" not in log, log[-3000:]
    assert time.monotonic() - died < 60 + 60
    save = tmp_path / "save-0"
    history = json.loads((save / f"{STEM}-history.json").read_text())
    assert [r["epoch"] for r in history] == [0]
    assert_weights_load(save / TINY_WEIGHTS)
    assert not [p.name for p in save.rglob("*") if p.name.startswith(".") or "_temp" in p.name]

    processes = start_cluster(tmp_path, data, "resumed", [*args, "--resume"])
    codes = wait_all(processes, TIMEOUT)
    logs = [(tmp_path / f"resumed-{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    assert "Resuming after epoch 1" in logs[0]
    history = json.loads((save / f"{STEM}-history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]
    for suffix in ("", "-moving"):   # trainable weights; batch-norm moving statistics
        chief_arrays, other = (np.load(tmp_path / f"resumed-weights-{i}{suffix}.npz")
                               for i in range(2))
        assert len(chief_arrays.files) > 10 and chief_arrays.files == other.files
        for key in chief_arrays.files:
            np.testing.assert_allclose(chief_arrays[key], other[key], rtol=1e-6, atol=1e-7,
                                       err_msg=f"weights{suffix} {key}")


def assert_weights_load(path):
    from fcn_keras.app import check_weights_file
    from fcn_keras.models import build_model
    check_weights_file(path)   # reads every array
    model, _ = build_model("fcn", n_classes=3, n=1, layers_=2, head_filters=8,
                           pyramid_filters=16)
    model.load_weights(str(path))
