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
