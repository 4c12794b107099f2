"""Command-line parsing into the typed Config."""

import subprocess
import sys
from pathlib import Path

import pytest

from fcn_keras.config import Config, parse_args
from fcn_keras.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_book_defaults():
    config = parse_args(["--train"])
    assert isinstance(config, Config)
    assert (config.layers, config.batch_size, config.epochs) == (3, 4, 100)
    assert (config.height, config.width, config.channels) == (480, 640, 3)
    assert config.backbone == "resnet" and config.arch == "fcn" and config.n == 6
    assert config.lr == 1e-3 and config.optimizer == "adam" and config.schedule == "book"
    assert config.weights_name == "ResNet56v2-3layer-drinks-best-iou.weights.h5"


def test_book_flags_are_all_kept():
    config = parse_args([
        "--layers", "4", "--batch-size", "2", "--epochs", "3", "--train", "--summary",
        "--save-dir", "w", "--dataset", "camvid", "--height", "360", "--width", "480",
        "--channels", "3", "--data-path", "d", "--train-labels", "a.npy", "--test-labels",
        "b.npy", "--plot", "--verbose", "0", "--backbone", "vgg16", "--arch", "fcn8s",
        "--n", "2", "--resnet-version", "1", "--workers", "2"])
    assert config.layers == 4 and config.batch_size == 2 and config.dataset == "camvid"
    assert config.backbone == "vgg16" and config.arch == "fcn8s" and config.resnet_version == 1
    assert config.weights_name == "fcn8s-VGG16-4layer-camvid-best-iou.weights.h5"
    assert parse_args(["--batch_size", "8", "--train"]).batch_size == 8  # the book's spelling


def test_sgd_default_lr_and_tile():
    config = parse_args(["--train", "--optimizer", "sgd", "--tile", "256x320"])
    assert config.lr == 1e-2 and config.tile == (256, 320)


@pytest.mark.parametrize("argv, message", [
    ([], "nothing to do"),
    (["--evaluate"], "--restore-weights"),
    (["--image-file", "x.jpg", "--train"], "needs --evaluate"),
    (["--resume", "--summary"], "--resume"),
    (["--train", "--height", "0"], "--height"),
    (["--evaluate", "--restore-weights", "nope.weights.h5"], "not found"),
])
def test_bad_combinations(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_args(argv)


def test_cli_reports_errors_without_traceback():
    result = subprocess.run([sys.executable, "fcn.py", "--evaluate"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "error: --evaluate needs --restore-weights" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_book_flags():
    result = subprocess.run([sys.executable, "fcn.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--layers", "--batch-size", "--restore-weights", "--image-file", "--arch",
                 "--resnet-version", "--train-labels", "--test-labels"):
        assert flag in result.stdout


def test_help_imports_no_tensorflow():
    """`fcn.py --help` answers without importing TensorFlow (or Keras)."""
    script = ("import runpy, sys\n"
              "sys.argv = ['fcn.py', '--help']\n"
              "try:\n"
              "    runpy.run_path('fcn.py', run_name='__main__')\n"
              "except SystemExit:\n"
              "    pass\n"
              "print('imported:', sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--layers" in result.stdout and "imported: []" in result.stdout


def test_every_default_is_written_once_in_config():
    """The parser's defaults are the Config fields' (no second copy), and a flag given its own
    default, or one without a field, is refused when the parser is built."""
    import argparse
    import dataclasses

    from fcn_keras.config import build_parser, with_config_defaults
    fields = {f.name: f.default for f in dataclasses.fields(Config)
              if not f.metadata.get("derived")}   # set from other options, not a flag
    actions = [a for a in build_parser()._actions if a.dest != "help"]
    assert {a.dest for a in actions} == set(fields)   # every option has a field, and back
    for action in actions:
        assert action.default == fields[action.dest], action.dest
    assert parse_args(["--train"]).lr == 1e-3   # derived when not given (optimizer's default)
    for extra in ({"default": 5}, {"dest": "no_such_field"}):
        parser = argparse.ArgumentParser()
        parser.add_argument("--layers", type=int, **extra)
        with pytest.raises(TypeError):
            with_config_defaults(parser)


def test_workers_sets_the_pipeline_parallelism():
    assert parse_args(["--train"]).workers is None          # tf.data.AUTOTUNE
    assert parse_args(["--train", "--workers", "2"]).workers == 2
    with pytest.raises(ConfigError, match="--workers"):
        parse_args(["--train", "--workers", "0"])
    pytest.importorskip("tensorflow")
    from types import SimpleNamespace

    from fcn_keras.data import pipeline_options
    options = pipeline_options(parse_args(["--train", "--workers", "3"]),
                               SimpleNamespace(n_classes=3, ignore_index=255), training=True)
    assert options.parallel_calls == 3   # tf.data num_parallel_calls
