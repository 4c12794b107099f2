"""`--recalibrate-bn` / `utils/recalibrate_bn.py`: batch-norm statistics recomputed over whole
training images are the exact population moments, and are kept only if val does not fall."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from fcn_keras.app import FCN
from fcn_keras.config import parse_args
from fcn_keras.recalibrate import (
    batch_norm_layers,
    recalibrate_batch_norm,
    recalibrate_if_better,
    same_size_batches,
)
from tests.helpers import ROOT, load_script


def _utility():
    return load_script(ROOT / "utils" / "recalibrate_bn.py")


def _images(folder, sizes, rng):
    paths = []
    for i, (height, width) in enumerate(sizes):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(path)
        paths.append(path)
    return paths


def _conv_bn_model(frozen_second: bool = False) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn")(conv)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(2, 1, name="conv2")(x)
    second = keras.layers.BatchNormalization(name="bn2")
    second.trainable = not frozen_second
    return keras.Model(inputs, second(x))


def _pixels(paths):
    return [np.asarray(Image.open(p), np.float32) / 255.0 for p in paths]


def test_statistics_are_the_population_moments_over_images_of_two_sizes(tmp_path):
    rng = np.random.default_rng(0)
    paths = _images(tmp_path, [(16, 24)] * 5 + [(20, 12)] * 3, rng)
    model = _conv_bn_model(frozen_second=True)
    frozen = model.get_layer("bn2")
    frozen_mean = frozen.moving_mean.numpy().copy()
    record = recalibrate_batch_norm(model, paths, batch_size=2)
    assert (record["images"], record["batches"], record["layers"]) == (8, 5, 1)
    conv = keras.Model(model.input, model.get_layer("conv").output)
    features = np.concatenate([conv(image[None]).numpy().reshape(-1, 4)
                               for image in _pixels(paths)])
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), features.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), features.var(0), rtol=1e-3,
                               atol=1e-6)
    assert bn.momentum == 0.9                                       # put back
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), frozen_mean)   # frozen: kept
    assert batch_norm_layers(model) == [bn]


def test_batches_hold_one_size_each(tmp_path):
    rng = np.random.default_rng(1)
    paths = _images(tmp_path, [(8, 8), (8, 12), (8, 8), (8, 8), (8, 12)], rng)
    batches = same_size_batches(paths, 2)
    assert sorted(len(b) for b in batches) == [1, 2, 2]
    for batch in batches:
        assert len({Image.open(p).size for p in batch}) == 1


@pytest.mark.parametrize("after, kept", [(0.6, True), (0.4, False)])
def test_statistics_are_kept_only_if_val_does_not_fall(tmp_path, after, kept):
    paths = _images(tmp_path, [(16, 16)] * 4, np.random.default_rng(2))
    model = _conv_bn_model()
    bn = model.get_layer("bn")
    original = bn.moving_mean.numpy().copy()
    scores = iter([0.5, after])
    record = recalibrate_if_better(model, paths, lambda: next(scores), batch_size=4)
    assert record["kept"] is kept
    assert (record["val_mean_iou_before"], record["val_mean_iou_after"]) == (0.5, after)
    assert np.array_equal(bn.moving_mean.numpy(), original) is not kept


def test_training_with_the_flag_writes_the_record_and_loadable_weights(folder_dataset,
                                                                       tiny_train, tmp_path):
    config = parse_args(["--train", "--data-path", str(folder_dataset), "--save-dir",
                         str(tmp_path / "run"), "--epochs", "1", "--recalibrate-bn",
                         *tiny_train])
    app = FCN(config)
    app.train()
    record = json.loads((tmp_path / "run" / app.weights_path.name.replace(
        ".weights.h5", "-recalibrate-bn.json")).read_text())
    assert record["images"] == 6 and isinstance(record["kept"], bool)
    saved = FCN(parse_args(["--evaluate", "--data-path", str(folder_dataset),
                            "--restore-weights", str(app.weights_path), *tiny_train]))
    saved.restore_weights()
    bns = batch_norm_layers(saved.model)
    if record["kept"]:   # the file holds the model's recalibrated statistics
        for ours, theirs in zip(batch_norm_layers(app.model), bns):
            np.testing.assert_allclose(ours.moving_variance.numpy(),
                                       theirs.moving_variance.numpy(), rtol=1e-6)


def test_the_utility_writes_weights_with_their_companions(folder_dataset, tiny_train,
                                                          tmp_path, capsys):
    run = tmp_path / "run"
    FCN(parse_args(["--train", "--data-path", str(folder_dataset), "--save-dir", str(run),
                    "--epochs", "1", *tiny_train])).train()
    weights = next(run.glob("*-best-iou.weights.h5"))
    out = tmp_path / "out" / "x-best-iou.weights.h5"
    status = _utility().main(["--out", str(out), "--restore-weights", str(weights),
                              "--data-path", str(folder_dataset), *tiny_train])
    assert status == 0
    record = json.loads((tmp_path / "out" / "x-best-iou-recalibrate-bn.json").read_text())
    assert record["source"] == str(weights) and "val mIoU" in capsys.readouterr().out
    if record["kept"]:
        assert out.is_file() and (tmp_path / "out" / "x-best-iou.classes.json").is_file()
        assert (tmp_path / "out" / "x-best-iou.model.json").is_file()
    else:
        assert not out.exists()


def test_the_utility_needs_weights_and_a_weights_name(folder_dataset, tmp_path, capsys):
    utility = _utility()
    assert utility.main(["--out", str(tmp_path / "x.weights.h5"), "--data-path",
                         str(folder_dataset)]) == 2
    assert "--restore-weights" in capsys.readouterr().err
    assert utility.main(["--out", str(tmp_path / "x.h5"), "--data-path", str(folder_dataset),
                         "--restore-weights", str(tmp_path / "missing.weights.h5")]) == 2
    assert "x.h5" in capsys.readouterr().err
    assert utility.main(["--out", str(tmp_path / "x.weights.h5"), "--data-path",
                         str(folder_dataset), "--restore-weights",
                         str(tmp_path / "missing.weights.h5")]) == 2
    assert "missing.weights.h5" in capsys.readouterr().err


def test_a_broken_image_is_named_and_the_statistics_are_left_alone(tmp_path):
    from fcn_keras.errors import DataError
    paths = _images(tmp_path, [(16, 16)] * 3, np.random.default_rng(3))
    paths[2].write_bytes(paths[2].read_bytes()[:-40])          # a truncated PNG, last batch
    model = _conv_bn_model()
    bn = model.get_layer("bn")
    mean, variance = bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()
    with pytest.raises(DataError, match="2.png"):
        recalibrate_batch_norm(model, paths, batch_size=2)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), mean)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), variance)
    assert bn.momentum == 0.9
