"""Weights that describe their model: training writes `<stem>.model.json`; evaluation and
prediction rebuild the model from it without model flags, and refuse a contradicting flag."""

import json

import pytest

pytest.importorskip("tensorflow")

from fcn_keras.app import FCN  # noqa: E402
from fcn_keras.config import parse_args  # noqa: E402
from fcn_keras.errors import ConfigError  # noqa: E402
from fcn_keras.sidecar import settings_path  # noqa: E402

MODEL = ["--arch", "fcn4s", "--n", "1", "--pyramid-filters", "8", "--pyramid-blocks", "1",
         "--context", "aspp"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_folder_dataset):
    root = tmp_path_factory.mktemp("sidecar")
    data = make_folder_dataset(root / "data")
    FCN(parse_args(["--train", "--data-path", str(data), "--save-dir", str(root / "w"),
                    "--dataset", "shapes", *MODEL, "--height", "32", "--width", "48",
                    "--batch-size", "2", "--epochs", "1", "--steps-per-epoch", "2",
                    "--verbose", "0", "--no-mixed-precision"])).train()
    weights = root / "w" / "fcn4s-ResNet11v2-3layer-shapes-best-iou.weights.h5"
    return data, weights


def test_training_writes_the_model_settings(trained):
    _, weights = trained
    document = json.loads(settings_path(weights).read_text())
    assert document["model"]["arch"] == "fcn4s" and document["model"]["context"] == "aspp"
    assert document["model"]["pyramid_blocks"] == 1 and document["n_classes"] == 3
    assert document["training"]["height"] == 32


def test_evaluation_needs_no_model_flags(trained, tmp_path):
    data, weights = trained
    config = parse_args(["--evaluate", "--data-path", str(data), "--restore-weights",
                         str(weights), "--output-dir", str(tmp_path), "--verbose", "0"])
    assert (config.arch, config.n, config.pyramid_filters) == ("fcn4s", 1, 8)
    assert (config.pyramid_blocks, config.context) == (1, "aspp")
    app = FCN(config)
    app.restore_weights()
    assert 0.0 <= app.evaluate()["mean_iou"] <= 1.0
    same = parse_args(["--evaluate", "--data-path", str(data), "--restore-weights",
                       str(weights), *MODEL])   # agreeing flags are fine
    assert same.arch == "fcn4s"


def test_a_contradicting_flag_is_refused_with_both_values(trained):
    data, weights = trained
    with pytest.raises(ConfigError, match=r"--arch fcn4s, but --arch fcn8s was given"):
        parse_args(["--evaluate", "--data-path", str(data), "--restore-weights", str(weights),
                    "--arch", "fcn8s"])


def test_a_damaged_settings_file_is_named(trained, tmp_path):
    import shutil
    data, weights = trained
    copy = tmp_path / weights.name
    shutil.copy(weights, copy)
    settings_path(copy).write_text('{"model": {"arch": "fcn4s", "depth": 3}}')
    with pytest.raises(ConfigError, match=r"model\.json: not a readable model settings"):
        parse_args(["--evaluate", "--data-path", str(data), "--restore-weights", str(copy)])
    settings_path(copy).unlink()   # no file: the flags decide, as before
    config = parse_args(["--evaluate", "--data-path", str(data), "--restore-weights",
                         str(copy), "--arch", "fcn8s"])
    assert config.arch == "fcn8s"


def test_companions_keep_the_dots_of_the_stem(tmp_path):
    """Every file beside the weights is named from the stem without the weights suffix, dots
    in the stem kept (`--dataset camvid.v2`): classes, settings, history and state agree."""
    from fcn_keras.sidecar import beside, weights_stem
    weights = tmp_path / "ResNet20v2-3layer-camvid.v2-best-iou.weights.h5"
    assert weights_stem(weights) == "ResNet20v2-3layer-camvid.v2-best-iou"
    assert beside(weights, ".classes.json").name == \
        "ResNet20v2-3layer-camvid.v2-best-iou.classes.json"
    assert settings_path(weights).name == "ResNet20v2-3layer-camvid.v2-best-iou.model.json"
    assert beside(weights, "-state") == tmp_path / "ResNet20v2-3layer-camvid.v2-best-iou-state"
    for name, stem in (("book.h5", "book"), ("model.keras", "model"), ("w.weights.h5", "w")):
        assert weights_stem(tmp_path / name) == stem
