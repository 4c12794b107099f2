"""Shared fixtures: the small synthetic datasets and the tiny training options of the tests,
and the per-test resets of process-wide state (Keras' precision policy, determinism).

Tests that start `python fcn.py` processes use `helpers.py` (start, wait, environment); the
data builders live there too, and reach the tests through the fixtures below.
"""

import os
from pathlib import Path

import helpers
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def make_folder_dataset():
    """`make_folder_dataset(root, n_train=6, n_val=2, n_test=2, height=64, width=80, seed=0)`:
    writes a `folder`-layout dataset of squares and discs (3 classes) and returns `root`."""
    return helpers.make_folder_dataset


@pytest.fixture
def folder_dataset(tmp_path, make_folder_dataset) -> Path:
    """A fresh default `folder` dataset (6 train, 2 val, 2 test images of 64x80) for this test."""
    return make_folder_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def make_camvid_dataset():
    """`make_camvid_dataset(root, rng, counts=(("train", 4), ("val", 2), ("test", 2)),
    size=(72, 96))`: a tiny SegNet-layout CamVid (11 classes, void borders); returns `root`."""
    return helpers.make_camvid_dataset


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder (the shipped data, weights, scripts and README)."""
    return helpers.ROOT


@pytest.fixture(scope="session")
def shapes_image():
    """`shapes_image(rng, height, width)`: an image with a square (class 1), a disc (class 2)
    and its mask."""
    return helpers.shapes_image


@pytest.fixture
def tiny_train() -> list[str]:
    """Options of a tiny, fast model and run (ResNet11v2, 2 pyramid layers, 3 steps an epoch)
    on a `folder_dataset`; its weights file is `TINY_WEIGHTS`."""
    return list(helpers.TINY_TRAIN)


@pytest.fixture(autouse=True)
def _float32_unless_asked(monkeypatch):
    """In-process runs train in float32 unless a test passes --mixed-precision: the automatic
    choice (bfloat16 on CPUs with AVX512-BF16) is tested on its own, and the global Keras policy
    is put back after every test so that one test's choice does not leak into the next."""
    from fcn_keras import runtime

    monkeypatch.setattr(runtime, "native_low_precision", lambda: False)
    yield
    import keras

    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(autouse=True)
def _no_determinism_leak(monkeypatch):
    """`--seed` turns on TF_DETERMINISTIC_OPS in the process environment; in-process runs must
    not hand it to the subprocesses of later tests (unseeded random ops fail under it)."""
    monkeypatch.delenv("TF_DETERMINISTIC_OPS", raising=False)
    yield
