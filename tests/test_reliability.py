"""Faults of long runs on shared machines (docs/bad-input.md, "Faults"): damaged files of ours,
two runs in one --save-dir, a full disk while saving, a worker that hangs. Each test provokes
the fault and checks the outcome: one clear message (exit status 2, or 75 for a lost worker),
the previous files intact and loadable, no temporary files left.

Training runs in-process from one small trained folder (copied per test); a full disk is
simulated for Python's writers by making every write into the folder fail with ENOSPC (as a
full file system does), and for TensorFlow's checkpoint writer, which is C++, by a real file
size limit (RLIMIT_FSIZE: the kernel fails the write with EFBIG).
"""

import builtins
import errno
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, TINY_TRAIN

pytest.importorskip("tensorflow")

from fcn_keras import cli  # noqa: E402
from fcn_keras.errors import OutputError  # noqa: E402

SMALL = [*TINY_TRAIN, "--pyramid-filters", "16", "--verbose", "0", "--seed", "0"]
STEM = "ResNet11v2-2layer-shapes-best-iou"
WEIGHTS = f"{STEM}.weights.h5"


def train_argv(data, save, epochs, *extra):
    return ["--train", "--data-path", str(data), "--save-dir", str(save), "--epochs",
            str(epochs), *SMALL, *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_folder_dataset):
    """A dataset and a --save-dir holding one completed epoch (weights, history, state)."""
    root = tmp_path_factory.mktemp("trained")
    data = make_folder_dataset(root / "data")
    assert cli.main(train_argv(data, root / "save", 1)) == 0
    return data, root / "save"


@pytest.fixture
def run_dir(trained, tmp_path):
    """(data, save): a private copy of the trained folder."""
    data, save = trained
    shutil.copytree(save, tmp_path / "save")
    return data, tmp_path / "save"


def snapshot(save: Path) -> dict:
    """Name -> bytes of every file in the folder (to show that nothing changed)."""
    return {str(p.relative_to(save)): p.read_bytes() for p in sorted(save.rglob("*"))
            if p.is_file()}


def temporaries(save: Path) -> list[str]:
    return sorted(str(p.relative_to(save)) for p in save.rglob("*")
                  if p.name.startswith(".") or "_temp" in p.name or ".tmp" in p.name)


def history_epochs(save: Path) -> list[int]:
    return [r["epoch"] for r in json.loads((save / f"{STEM}-history.json").read_text())]


def restored_epoch(save: Path) -> int | None:
    """The epoch `--resume` continues from, read back through the project's own loader."""
    import keras

    from fcn_keras.callbacks import TrainingState
    from fcn_keras.models import build_model
    model, _ = build_model("fcn", n_classes=3, n=1, layers_=2, head_filters=8,
                           pyramid_filters=16)
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    return TrainingState(save / f"{STEM}-state", model, optimizer).restore()


def assert_weights_load(path: Path):
    from fcn_keras.app import check_weights_file
    from fcn_keras.models import build_model
    check_weights_file(path)
    model, _ = build_model("fcn", n_classes=3, n=1, layers_=2, head_filters=8,
                           pyramid_filters=16)
    model.load_weights(str(path))


def cli_error(capsys, argv) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


# ---------------------------------------------------------------------------------------------
# Damaged files of ours


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "overwritten":   # a block in the middle replaced, the size unchanged
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(range(256)) * 16 + data[middle + 4096:])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        raise ValueError(how)


@pytest.mark.parametrize("how", ["truncated", "overwritten", "empty"])
def test_a_damaged_weights_file_is_named(run_dir, capsys, tmp_path, how):
    data, save = run_dir
    damage(save / WEIGHTS, how)
    code, err = cli_error(capsys, ["--evaluate", "--restore-weights", save / WEIGHTS,
                                   "--data-path", data, "--output-dir", tmp_path / "out"])
    assert code == 2 and f"{save / WEIGHTS}: not a readable Keras weights file" in err, err


@pytest.mark.parametrize("sidecar, fragment", [
    (".classes.json", "not a readable JSON classes file"),
    (".model.json", "not a readable model settings file"),
])
def test_a_damaged_sidecar_is_named(run_dir, capsys, tmp_path, sidecar, fragment):
    data, save = run_dir
    damage(save / f"{STEM}{sidecar}", "truncated")
    image = next((data / "images").iterdir())
    code, err = cli_error(capsys, ["--evaluate", "--restore-weights", save / WEIGHTS,
                                   "--image-file", image, "--output-dir", tmp_path / "out"])
    assert code == 2 and f"{STEM}{sidecar}: {fragment}" in err, err


@pytest.mark.parametrize("part, how", [("data", "truncated"), ("data", "overwritten"),
                                       ("index", "truncated"), ("checkpoint", "overwritten")])
def test_a_damaged_resume_checkpoint_is_named(run_dir, capsys, part, how):
    data, save = run_dir
    state = save / f"{STEM}-state"
    target = {"data": next(state.glob("ckpt-1.data-*")), "index": state / "ckpt-1.index",
              "checkpoint": state / "checkpoint"}[part]
    damage(target, how)
    before = snapshot(save)
    code, err = cli_error(capsys, train_argv(data, save, 2, "--resume"))
    assert code == 2, err
    named = "checkpoint" if part == "checkpoint" else "ckpt-1"
    assert f"{state / named}: damaged" in err and "--resume" in err, err
    assert snapshot(save) == before   # nothing written, nothing removed


def test_a_damaged_index_does_not_block_a_fresh_run(run_dir, capsys):
    data, save = run_dir
    damage(save / f"{STEM}-state" / "checkpoint", "overwritten")
    code, err = cli_error(capsys, train_argv(data, save, 1))
    assert code == 0 and "damaged index of the resume checkpoints; moved to" in err, err
    assert restored_epoch(save) == 1


@pytest.mark.parametrize("text", ['[{"epoch": 0, "loss": 1.', '{"epoch": 0}'],
                         ids=["cut-short", "not-a-list"])
def test_a_damaged_history_is_moved_aside_and_training_goes_on(run_dir, capsys, text):
    data, save = run_dir
    history = save / f"{STEM}-history.json"
    best = json.loads(history.read_text())[0]["val_mean_iou"]
    history.write_text(text)
    weights = (save / WEIGHTS).read_bytes()
    code, err = cli_error(capsys, train_argv(data, save, 2, "--resume"))
    assert code == 0 and f"{history}: damaged history" in err, err
    assert (save / f"{history.name}.damaged").read_text() == text
    assert history_epochs(save) == [1]   # the epoch trained after the damage
    assert restored_epoch(save) == 2
    # the best so far comes from the resume checkpoint: only a better epoch replaces the weights
    improved = json.loads(history.read_text())[0]["val_mean_iou"] > best
    assert ((save / WEIGHTS).read_bytes() != weights) == improved


# ---------------------------------------------------------------------------------------------
# Two runs in one --save-dir

HOLD_LOCK = ("import sys, time; from fcn_keras.runlock import SaveDirLock; "
             "lock = SaveDirLock(sys.argv[1]).__enter__(); print('locked', flush=True); "
             "time.sleep(600)")


@pytest.mark.slow
def test_a_second_run_is_refused_and_a_dead_runs_lock_taken_over(run_dir, capsys):
    data, save = run_dir
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(save)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(save)
        code, err = cli_error(capsys, train_argv(data, save, 2, "--resume"))
        assert code == 2, err
        assert f"{save}: another training run is using this --save-dir (process " \
               f"{holder.pid} on" in err, err
        assert snapshot(save) == before
    finally:
        os.killpg(holder.pid, signal.SIGKILL)   # dies holding the lock, as a crash would
        holder.wait(30)
    code, err = cli_error(capsys, train_argv(data, save, 2, "--resume"))
    assert code == 0, err
    assert f"taking over the stale lock of process {holder.pid} on" in err, err
    assert history_epochs(save) == [0, 1] and not (save / "fcn-train.lock").exists()


def test_the_lock_is_released_for_the_next_run_in_the_same_process(tmp_path):
    from fcn_keras.runlock import SaveDirLock
    with SaveDirLock(tmp_path / "a"):
        with pytest.raises(OutputError, match=f"process {os.getpid()} on"):
            SaveDirLock(tmp_path / "a").acquire()
    with SaveDirLock(tmp_path / "a"):   # released: taken again without a warning
        pass
    assert not (tmp_path / "a" / "fcn-train.lock").exists()


# ---------------------------------------------------------------------------------------------
# A full disk while saving


@pytest.fixture
def full_disk(monkeypatch):
    """`full_disk(folder, names=("",))`: from now on every file written under `folder` by
    Python code (whose name contains one of `names`) fails with ENOSPC once data is written
    (the file itself is created, as on a full file system), and the free space there reads
    as 0."""
    real_open, real_usage = builtins.open, shutil.disk_usage
    folders = []

    def inside(path, directory=False) -> bool:
        try:
            path = Path(os.fsdecode(path)).resolve()
        except TypeError:   # a file descriptor
            return False
        return any(path.is_relative_to(folder) and
                   (directory or any(name in path.name for name in names))
                   for folder, names in folders)

    class Full:
        """The opened file, except that writing fails."""

        def __init__(self, handle):
            self._handle = handle

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self._handle.close()

    def open_(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return Full(handle) if set(mode) & set("wax+") and inside(file) else handle

    def usage(path):
        result = real_usage(path)
        return result._replace(free=0) if inside(path, directory=True) else result

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(shutil, "disk_usage", usage)
    return lambda folder, names=("",): folders.append((Path(folder).resolve(), names))


def test_a_full_disk_stops_training_and_keeps_the_last_epoch(run_dir, capsys, monkeypatch,
                                                               full_disk):
    data, save = run_dir
    before = snapshot(save)
    full_disk(save, names=(".weights.h5", "-history."))   # the files of each epoch
    code, err = cli_error(capsys, train_argv(data, save, 3, "--resume"))
    assert code == 2, err
    assert "training stopped: " in err and "No space left on device" in err, err
    assert "files of the 1 completed epoch(s) are kept" in err and "--resume" in err, err
    monkeypatch.undo()   # room again
    assert temporaries(save) == []
    kept = snapshot(save)
    for name in (WEIGHTS, f"{STEM}-history.json", f"{STEM}.classes.json", f"{STEM}.model.json"):
        assert kept[name] == before[name], name
    assert history_epochs(save) == [0] and restored_epoch(save) == 1
    assert_weights_load(save / WEIGHTS)
    code, err = cli_error(capsys, train_argv(data, save, 2, "--resume"))
    assert code == 0, err
    assert history_epochs(save) == [0, 1] and restored_epoch(save) == 2


@pytest.mark.parametrize("writer", ["weights", "history", "mask", "report", "settings"])
def test_a_failed_write_keeps_the_previous_file(tmp_path, full_disk, writer):
    target, write = WRITERS[writer](tmp_path)
    write()   # the first version, with room on the disk
    before = target.read_bytes()
    full_disk(tmp_path)
    with pytest.raises(OutputError) as info:
        write()
    assert f"{target}: cannot write (No space left on device" in str(info.value)
    assert target.read_bytes() == before
    assert temporaries(tmp_path) == []


def _weights_writer(folder):
    from fcn_keras.export import save_weights_only
    from fcn_keras.io_utils import atomic_path
    from fcn_keras.models import build_model
    model, _ = build_model("fcn", n_classes=3, n=1, layers_=1, head_filters=8,
                           pyramid_filters=8)
    path = folder / "w.weights.h5"

    def write():
        with atomic_path(path) as tmp:
            save_weights_only(model, tmp)
    return path, write


def _history_writer(folder):
    from fcn_keras.callbacks import History
    history = History(folder, "run")
    return history.json_path, lambda: history.append({"epoch": 0, "loss": 1.0})


def _mask_writer(folder):
    from fcn_keras.io_utils import write_index_png
    return folder / "m.png", lambda: write_index_png(folder / "m.png",
                                                     np.eye(8, dtype=np.uint8))


def _report_writer(folder):
    from fcn_keras.evaluate import write_report
    metrics = {"pixel_accuracy": 0.5, "mean_accuracy": 0.5, "mean_iou": 0.5, "fw_iou": 0.5,
               "per_class_iou": [0.5], "book_miou": 0.5, "book_pla": 0.5}
    return folder / "r.json", lambda: write_report(folder / "r.json", metrics, ["a"])


def _settings_writer(folder):
    from fcn_keras.classes import ClassInfo
    return folder / "c.json", lambda: ClassInfo(["a", "b"]).save(folder / "c.json")


WRITERS = {"weights": _weights_writer, "history": _history_writer, "mask": _mask_writer,
           "report": _report_writer, "settings": _settings_writer}


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(run_dir):
    """TensorFlow writes checkpoints in C++: a real limit on file sizes makes the kernel fail
    its write (EFBIG) the way a full disk fails it (ENOSPC)."""
    import keras

    from fcn_keras.callbacks import TrainingState
    from fcn_keras.models import build_model
    _, save = run_dir
    model, _ = build_model("fcn", n_classes=3, n=1, layers_=2, head_filters=8,
                           pyramid_filters=16)
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    state = TrainingState(save / f"{STEM}-state", model, optimizer)
    before = snapshot(save)
    with pytest.raises(OutputError) as info, file_size_limit(64 * 1024):
        state.save(2, 0.5)
    assert "cannot write the resume checkpoint of epoch 2 (File too large)" in str(info.value)
    assert "the previous one (ckpt-1) is kept" in str(info.value)
    assert snapshot(save) == before and temporaries(save) == []
    assert restored_epoch(save) == 1


class file_size_limit:
    """RLIMIT_FSIZE for this process: writes beyond `limit` bytes into any file fail."""

    def __init__(self, limit: int):
        self.limit = limit

    def __enter__(self):
        self.saved = resource.getrlimit(resource.RLIMIT_FSIZE)
        self.handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG, not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, self.saved[1]))

    def __exit__(self, *exc_info):
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved)
        signal.signal(signal.SIGXFSZ, self.handler)


# ---------------------------------------------------------------------------------------------
# A worker that hangs: the watchdog (the end-to-end run is in test_distributed.py)

HANG = ("import threading; from fcn_keras.watchdog import Watchdog; "
        "Watchdog(1.5).start(); threading.Event().wait()")


@pytest.mark.slow
def test_a_worker_waiting_forever_stops_after_the_timeout():
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", HANG], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 75, result.stderr
    assert "no progress from the other worker(s) for 1.5 s (--worker-timeout)" in result.stderr
    assert "--resume" in result.stderr and time.monotonic() - start < 30


def test_the_watchdog_waits_for_local_work_and_beats():
    from fcn_keras.watchdog import Watchdog
    exits = []
    watchdog = Watchdog(2.0, exit_fn=exits.append).start()
    try:
        with watchdog.local():
            time.sleep(2.5)   # the chief validating: the others' silence is expected
        for _ in range(5):
            time.sleep(0.2)
            watchdog.beat()
        assert exits == []
        deadline = time.monotonic() + 20
        while not exits and time.monotonic() < deadline:
            time.sleep(0.1)
        assert exits == [75]
    finally:
        watchdog.stop()


def test_a_peer_error_becomes_one_line():
    import tensorflow as tf

    from fcn_keras.distributed import lost_worker_errors
    from fcn_keras.errors import WorkerLost
    message = ("Graph execution error:\n\nDetected at node adam/CollectiveReduceV2\n"
               "Collective ops is aborted by: recvmsg:Connection reset by peer\n")
    with pytest.raises(WorkerLost) as info, lost_worker_errors():
        raise tf.errors.UnavailableError(None, None, message)
    assert info.value.exit_code == 75
    assert "another worker was lost (Collective ops is aborted by: recvmsg:Connection reset " \
           "by peer)" in str(info.value) and "--resume" in str(info.value)
