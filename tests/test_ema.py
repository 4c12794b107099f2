"""`--ema`: validation and the best-weights file use the optimizer's moving averages, while
training (and the resumable state) goes on from the raw weights."""

import h5py
import keras
import numpy as np
import pytest

from fcn_keras.app import FCN
from fcn_keras.config import parse_args
from fcn_keras.ema import averaged_weights, ema_optimizer
from fcn_keras.errors import ConfigError


def _trained_dense(use_ema: bool) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.1, use_ema=use_ema, ema_momentum=0.5), loss="mse")
    rng = np.random.default_rng(0)
    for _ in range(4):   # not fit, which ends by writing the averages into the model
        model.train_on_batch(rng.normal(size=(8, 3)), rng.normal(size=(8, 1)))
    return model


def _values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def test_the_block_sees_the_averages_and_the_weights_come_back():
    model = _trained_dense(use_ema=True)
    optimizer = ema_optimizer(model)
    raw = _values(model.trainable_variables)
    averages = _values(optimizer._model_variables_moving_average)
    assert any(not np.allclose(r, a) for r, a in zip(raw, averages))
    with averaged_weights(model):
        for inside, average in zip(_values(model.trainable_variables), averages):
            np.testing.assert_array_equal(inside, average)
    for after, before in zip(_values(model.trainable_variables), raw):
        np.testing.assert_array_equal(after, before)
    # and the averages themselves are untouched (a swap would have exchanged them)
    for after, before in zip(_values(optimizer._model_variables_moving_average), averages):
        np.testing.assert_array_equal(after, before)


def test_without_ema_the_block_changes_nothing():
    model = _trained_dense(use_ema=False)
    assert ema_optimizer(model) is None
    raw = _values(model.trainable_variables)
    with averaged_weights(model):
        for inside, before in zip(_values(model.trainable_variables), raw):
            np.testing.assert_array_equal(inside, before)


def test_ema_momentum_is_checked():
    with pytest.raises(ConfigError, match="--ema"):
        parse_args(["--train", "--ema", "1.5"])


def test_training_with_ema_saves_the_averaged_weights(folder_dataset, tiny_train, tmp_path):
    """One epoch: the best-weights file is written after it with the averages in the model, and
    fit ends by writing the same averages into the model (nothing trained in between)."""
    config = parse_args(["--train", "--data-path", str(folder_dataset), "--save-dir",
                         str(tmp_path / "run"), "--epochs", "1", "--ema", "0.5", "--lr", "0.01",
                         *tiny_train])
    app = FCN(config)
    app.train()
    optimizer = ema_optimizer(app.model)
    assert optimizer is not None and optimizer.ema_momentum == 0.5
    averages = _values(optimizer._model_variables_moving_average)
    for value, average in zip(_values(app.model.trainable_variables), averages):
        np.testing.assert_array_equal(value, average)   # fit's finalize_variable_values
    saved = FCN(parse_args(["--evaluate", "--data-path", str(folder_dataset), "--restore-weights",
                            str(app.weights_path), *tiny_train]))
    saved.restore_weights()
    for value, average in zip(_values(saved.model.trainable_variables), averages):
        np.testing.assert_allclose(value, average, rtol=0, atol=0)
    with h5py.File(app.weights_path) as f:   # weights only: no optimizer slots in the file
        assert "optimizer" not in f
