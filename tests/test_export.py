"""Exports checked against the Keras model: `.keras`, SavedModel (any input size), TFLite float32
and dynamic-range int8, each loaded back and run on real-looking images (the drinks sample's
test photos, through the shipped drinks model)."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from helpers import ROOT  # noqa: E402
from PIL import Image  # noqa: E402

from fcn_keras import Segmenter  # noqa: E402
from fcn_keras.config import parse_args  # noqa: E402
from fcn_keras.errors import DataError  # noqa: E402
from fcn_keras.export import export_model, load_export  # noqa: E402
from fcn_keras.metrics import ConfusionMatrix  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    segmenter = Segmenter.from_preset("quick")
    directory = tmp_path_factory.mktemp("export")
    export_model(segmenter.model, directory, segmenter.classes, parse_args(["--summary"]),
                 tflite_size=(240, 320))
    images = np.stack([np.asarray(Image.open(ROOT / "data" / "drinks" / f"00001{i}.jpg"))
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
