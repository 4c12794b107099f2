"""Training learns: on a small synthetic task (a bright square and a dark disc on noise) the loss
falls and validation mIoU ends far above what the majority class alone scores. Not a timed test:
seconds on a CPU, with a fixed seed; the margins are wide so that bfloat16-free float32 runs on
any machine pass."""

import json

import pytest

pytest.importorskip("tensorflow")

from fcn_keras.app import FCN  # noqa: E402
from fcn_keras.config import parse_args  # noqa: E402


@pytest.mark.parametrize("arch,loss", [("fcn8s", "ce+dice"), ("fcn", "ce")])
def test_training_learns_a_simple_task(tmp_path, make_folder_dataset, arch, loss):
    data = make_folder_dataset(tmp_path / "data", n_train=24, n_val=6, n_test=1, height=48,
                               width=64)
    config = parse_args([
        "--train", "--data-path", str(data), "--save-dir", str(tmp_path / "w"),
        "--dataset", "shapes", "--arch", arch, "--loss", loss, "--n", "1", "--layers", "3",
        "--pyramid-filters", "16", "--head-filters", "16", "--bn-momentum", "0.9",
        "--height", "48", "--width", "64", "--batch-size", "4", "--epochs", "8",
        "--schedule", "cosine", "--lr", "3e-3", "--seed", "0", "--verbose", "0",
        "--no-mixed-precision"])
    FCN(config).train()
    history = json.loads(next((tmp_path / "w").glob("*-history.json")).read_text())
    losses = [record["loss"] for record in history]
    best = max(record["val_mean_iou"] for record in history)
    # the majority class alone (background everywhere) scores its own IoU / 3
    background = history[0]["val_per_class_pixels"][0] / history[0]["val_n_pixels"]
    assert losses[-1] < 0.6 * losses[0], losses
    assert best > max(0.6, background / 3 + 0.3), (best, background)
