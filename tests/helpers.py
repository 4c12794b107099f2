"""Helpers of the tests: small synthetic datasets (no network, nothing from ../shared), reached
through the fixtures of `conftest.py`, and the start / wait / environment of `python fcn.py`
processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def shapes_image(rng, height, width):
    """A noisy image with a bright square (class 1) and a dark disc (class 2)."""
    image = (rng.random((height, width, 3)) * 60 + 90).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    size = max(4, min(height, width) // 3)
    top, left = rng.integers(0, height - size), rng.integers(0, width - size)
    image[top:top + size, left:left + size] = rng.integers(200, 255, 3)
    mask[top:top + size, left:left + size] = 1
    cy, cx = rng.integers(size // 2, height - size // 2), rng.integers(size // 2, width - size // 2)
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (size // 2) ** 2
    image[disc] = rng.integers(0, 50, 3)
    mask[disc] = 2
    return image, mask


def make_folder_dataset(root: Path, n_train=6, n_val=2, n_test=2, height=64, width=80,
                        seed=0) -> Path:
    """The native `folder` layout: images/, masks/, classes.json, train/val/test.txt."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    splits = {"train": n_train, "val": n_val, "test": n_test}
    index = 0
    for split, count in splits.items():
        stems = []
        for _ in range(count):
            stem = f"img{index:03d}"
            image, mask = shapes_image(rng, height, width)
            Image.fromarray(image).save(root / "images" / f"{stem}.png")
            Image.fromarray(mask, mode="L").save(root / "masks" / f"{stem}.png")
            stems.append(stem)
            index += 1
        (root / f"{split}.txt").write_text("\n".join(stems) + "\n")
    (root / "classes.json").write_text(json.dumps(
        {"names": ["background", "square", "disc"],
         "colors": [[0, 0, 0], [255, 0, 0], [0, 0, 255]], "ignore_index": 255}))
    return root


def make_camvid_dataset(root: Path, rng, counts=(("train", 4), ("val", 2), ("test", 2)),
                        size=(72, 96)) -> Path:
    """A tiny SegNet-layout CamVid: images, index masks with void (11) borders, the lists."""
    for split, n in counts:
        lines = []
        for i in range(n):
            image, mask = shapes_image(rng, *size)
            mask = np.where(mask == 2, 8, mask * 3)   # road (3) and car (8) on sky (0)
            mask[0, :] = 11                            # void, ignored
            for folder, array in ((split, image), (f"{split}annot", mask.astype(np.uint8))):
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / folder / f"{split}{i:03d}.png")
            lines.append(f"{split}/{split}{i:03d}.png {split}annot/{split}{i:03d}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["--n", "1", "--layers", "2", "--head-filters", "8", "--height", "32", "--width",
              "48", "--batch-size", "4", "--steps-per-epoch", "3", "--dataset", "shapes"]
TINY_WEIGHTS = "ResNet11v2-2layer-shapes-best-iou.weights.h5"


def fcn_env(**extra) -> dict:
    """Environment for a `python fcn.py` child: CPU only, quiet, no inherited cluster or fault
    injection (`fault_env` turns that on)."""
    import os
    env = {k: v for k, v in os.environ.items()
           if k != "TF_CONFIG" and not k.startswith("FCN_FAULT_")}
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def fault_env(kill_at: str | None = None, dump_weights=None) -> dict:
    """Variables of `fcn_keras.fault_injection` (test-only): SIGKILL at `kill_at`
    (`POINT@EPOCH`), the trained weights written to `dump_weights` (.npz)."""
    env = {"FCN_FAULT_INJECTION": "1"}
    if kill_at:
        env["FCN_FAULT_KILL_AT"] = kill_at
    if dump_weights:
        env["FCN_FAULT_DUMP_WEIGHTS"] = str(dump_weights)
    return env


def start_fcn(args, log_path: Path, env: dict, python_prefix=None):
    """Start `python fcn.py ARGS` (or `python -c PREFIX ARGS`) with output to `log_path`."""
    import subprocess
    import sys
    command = [sys.executable, *(["-c", python_prefix] if python_prefix else ["fcn.py"]),
               *map(str, args)]
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_all(processes, timeout: float) -> list[int]:
    """Wait for every process; kill them all (with their children) on timeout, or as soon as
    one fails (its peers in a cluster would wait for it until the timeout)."""
    import os
    import signal
    import time
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in processes):
        failed = any(p.poll() not in (None, 0) for p in processes)
        if failed or time.monotonic() > deadline:
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            if not failed:
                raise AssertionError(f"training processes still running after {timeout} s; "
                                     "killed")
        time.sleep(0.2)
    return [p.returncode for p in processes]


def load_script(path: Path):
    """A script of utils/ as a module (utils/ is no package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
