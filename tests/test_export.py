"""Exports checked against the Keras model: `.keras`, SavedModel (any input size), TFLite float32
and dynamic-range int8, each loaded back and run on real-looking images (the drinks sample's
test photos, through the shipped drinks model)."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from PIL import Image  # noqa: E402

from fcn_keras import Segmenter  # noqa: E402
from fcn_keras.config import parse_args  # noqa: E402
from fcn_keras.errors import DataError  # noqa: E402
from fcn_keras.export import export_model, load_export  # noqa: E402
from fcn_keras.metrics import ConfusionMatrix  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory, repo_root):
    # Module fixtures run before the autouse float32 fixture: ask for float32 here, so that the
    # reference is the float32 model on every CPU (bfloat16 is the default where it is native).
    import keras

    from fcn_keras import runtime
    native, runtime.native_low_precision = runtime.native_low_precision, lambda: False
    try:
        segmenter = Segmenter.from_preset("quick")
    finally:
        runtime.native_low_precision = native
        keras.mixed_precision.set_global_policy("float32")
    directory = tmp_path_factory.mktemp("export")
    export_model(segmenter.model, directory, segmenter.classes, parse_args(["--summary"]),
                 tflite_size=(240, 320))
    images = np.stack([np.asarray(Image.open(repo_root / "data" / "drinks" / f"00001{i}.jpg"))
                       for i in (81, 90)]).astype(np.float32) / 255.0
    reference = segmenter.model(images, training=False).numpy()
    return directory, images, reference


@pytest.mark.parametrize("name", ["model.keras", "saved_model", "model.tflite"])
def test_float_exports_agree_with_the_keras_model(exported, name):
    directory, images, reference = exported
    run = load_export(directory / name)
    probs = np.asarray(run(images))
    assert probs.shape == reference.shape
    agreement = np.mean(probs.argmax(-1) == reference.argmax(-1))
    assert agreement >= 0.999, f"{name}: {agreement:.5f} of pixels agree"
    np.testing.assert_allclose(probs, reference, atol=2e-3)


def test_onnx_export_agrees_with_the_keras_model(exported):
    """`model.onnx` is written when tf2onnx is installed (the `onnx` extra, in the test extra)."""
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    directory, images, reference = exported
    probs = np.asarray(load_export(directory / "model.onnx")(images))
    assert probs.shape == reference.shape
    agreement = np.mean(probs.argmax(-1) == reference.argmax(-1))
    assert agreement >= 0.999, f"model.onnx: {agreement:.5f} of pixels agree"
    np.testing.assert_allclose(probs, reference, atol=2e-3)
    with pytest.raises(DataError, match=r"takes 240x320 images .*--export-size"):
        load_export(directory / "model.onnx")(images[:1, :97, :131])


def test_keras_and_savedmodel_take_any_size_tflite_its_own(exported):
    directory, images, reference = exported
    crop = images[:1, :97, :131]
    expected = load_export(directory / "model.keras")(crop).argmax(-1)
    got = np.asarray(load_export(directory / "saved_model")(crop)).argmax(-1)
    assert got.shape == (1, 97, 131) and np.mean(got == expected) >= 0.999
    with pytest.raises(DataError, match=r"takes 240x320 images .*--export-size"):
        load_export(directory / "model.tflite")(crop)


def test_int8_export_is_smaller_and_close(exported):
    directory, images, reference = exported
    float_size = (directory / "model.tflite").stat().st_size
    int8_size = (directory / "model-int8.tflite").stat().st_size
    assert int8_size < 0.4 * float_size
    probs = np.asarray(load_export(directory / "model-int8.tflite")(images))
    agreement = np.mean(probs.argmax(-1) == reference.argmax(-1))
    matrix = ConfusionMatrix(4)
    matrix.update(reference.argmax(-1), probs.argmax(-1))   # int8 scored against float
    keras_miou = matrix.compute()["mean_iou"]
    assert agreement >= 0.95 and keras_miou >= 0.8, (agreement, keras_miou)


def test_a_bfloat16_model_exports_as_float32(tmp_path):
    """Trained in bfloat16 (the default on CPUs that compute it natively), the model still
    converts to TFLite: exports are float32 clones with the same weights."""
    import keras

    from fcn_keras.export import _computing_layers, export_tflite, float32_model
    from fcn_keras.models import build_model
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model, _ = build_model("fcn8s", 3, n=1, pyramid_filters=16)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    clone = float32_model(model)
    assert {layer.dtype_policy.compute_dtype for layer in _computing_layers(clone)} == {"float32"}
    images = np.random.default_rng(0).random((1, 64, 96, 3), np.float32)
    reference = clone(images, training=False).numpy()
    run = load_export(export_tflite(clone, tmp_path / "model.tflite", (64, 96)))
    np.testing.assert_allclose(np.asarray(run(images)), reference, atol=1e-4)
    for original, copied in zip(model.get_weights(), clone.get_weights(), strict=True):
        np.testing.assert_array_equal(original, copied)
