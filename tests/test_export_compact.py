"""Shipped weights stored as float16 load into the float32 model and predict as before."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from fcn_keras.export import compact_weights  # noqa: E402
from fcn_keras.models import build_model  # noqa: E402


def test_compact_weights_halve_the_file_and_keep_the_predictions(tmp_path):
    import keras
    keras.utils.set_random_seed(0)
    model, _ = build_model("fcn4s", n_classes=3, n=1, pyramid_filters=16, context="aspp",
                           pyramid_blocks=1)
    full, half = tmp_path / "full.weights.h5", tmp_path / "half.weights.h5"
    model.save_weights(full)
    compact_weights(full, half)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    again, _ = build_model("fcn4s", n_classes=3, n=1, pyramid_filters=16, context="aspp",
                           pyramid_blocks=1)
    again.load_weights(half)
    assert all(w.dtype == "float32" for w in again.weights)
    x = np.random.default_rng(0).random((1, 64, 96, 3)).astype("float32")
    np.testing.assert_allclose(again(x).numpy(), model(x).numpy(), atol=5e-3)
    assert not list(tmp_path.glob(".*"))   # no temporary file left


def test_a_models_backbone_starts_another_training(tmp_path):
    """export_backbone writes the backbone of a trained model (any head, any classes) as a
    file that `--backbone-weights` loads into a new model's backbone."""
    import keras

    from fcn_keras.export import export_backbone
    from fcn_keras.remat import _backbones
    keras.utils.set_random_seed(0)
    options = dict(n=1, pyramid_filters=16, pyramid_blocks=1)
    trained, _ = build_model("fcn4s", n_classes=5, context="aspp", **options)
    path = export_backbone(trained, tmp_path / "backbone.weights.h5")
    fresh, _ = build_model("fcn8s", n_classes=3, backbone_weights=str(path), **options)
    pairs = list(zip(_backbones(trained)[0].weights, _backbones(fresh)[0].weights, strict=True))
    assert any(np.any(a.numpy() != 0) for a, _ in pairs)
    for a, b in pairs:
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-3, atol=1e-4, err_msg=a.path)
    with pytest.raises(Exception, match="backbone-weights"):
        build_model("fcn8s", n_classes=3, n=2, pyramid_filters=16, pyramid_blocks=1,
                    backbone_weights=str(path))
    assert not list(tmp_path.glob(".*"))


def test_init_weights_loads_every_layer_but_the_class_scores(tmp_path):
    """`--init-weights`: a model trained on other classes starts a new training with all its
    layers but the ones whose shapes follow the classes; a model of another shape is refused."""
    import keras

    from fcn_keras.errors import ConfigError
    from fcn_keras.restore import _weighted_layers, load_matching_weights
    keras.utils.set_random_seed(0)
    options = dict(n=1, pyramid_filters=16, pyramid_blocks=1, context="aspp", downsample=2)
    trained, _ = build_model("fcn4s", n_classes=11, **options)
    path = tmp_path / "other.weights.h5"
    trained.save_weights(str(path))
    keras.utils.set_random_seed(1)
    fresh_model, _ = build_model("fcn4s", n_classes=4, **options)
    fresh = load_matching_weights(fresh_model, path)
    assert sorted(fresh) == sorted(f"{kind}{where}" for kind, where in [
        ("score_stride", 32), ("score_stride", 16), ("score_stride", 8), ("score_stride", 4),
        ("upsample_", "32_to_16"), ("upsample_", "16_to_8"), ("upsample_", "8_to_4"),
        ("upsample_", "x4")])
    loaded = 0
    for a, b in zip(_weighted_layers(trained), _weighted_layers(fresh_model), strict=True):
        if b.name not in fresh:
            loaded += 1
            for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
                np.testing.assert_array_equal(x, y, err_msg=b.name)
    assert loaded > 40
    unrelated = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    unrelated.save_weights(str(tmp_path / "dense.weights.h5"))
    with pytest.raises(ConfigError, match="no layer of this model matches"):
        load_matching_weights(fresh_model, tmp_path / "dense.weights.h5")


def test_init_weights_refuses_a_model_of_other_settings(tmp_path):
    """The weights file's `.model.json` must agree with the training's model settings."""
    from fcn_keras.config import parse_args
    from fcn_keras.errors import ConfigError
    from fcn_keras.sidecar import write_settings
    from fcn_keras.training import check_same_model
    config = parse_args(["--train", "--arch", "fcn4s", "--n", "2"])
    weights = tmp_path / "m.weights.h5"
    write_settings(weights, config, 11)
    check_same_model(config, weights)                                  # same: fine
    check_same_model(config, tmp_path / "no-sidecar.weights.h5")       # nothing to compare
    with pytest.raises(ConfigError, match="--n 2 .*--n 1"):
        check_same_model(config.replace(n=1), weights)
