"""Training past one process: two MultiWorkerMirroredStrategy workers on 127.0.0.1 (the custom
loop of fcn_keras.distributed), and MirroredStrategy `fit` over two logical CPU devices.

Each run is a fresh `python fcn.py` process: a cluster's TF_CONFIG, and `split_cpu`, must be in
place before TensorFlow initialises.
"""

import json
import socket

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
