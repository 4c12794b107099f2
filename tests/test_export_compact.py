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
