"""The Python API (`fcn_keras.Segmenter`): loading from weights with their settings, or from a
shipped preset, and predicting on the kinds of input a user has at hand."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from PIL import Image  # noqa: E402

import fcn_keras  # noqa: E402
from fcn_keras.app import FCN  # noqa: E402
from fcn_keras.config import parse_args  # noqa: E402
from fcn_keras.errors import ConfigError, DataError  # noqa: E402

MODEL = ["--arch", "fcn8s", "--n", "1", "--pyramid-filters", "8", "--downsample", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_folder_dataset):
    root = tmp_path_factory.mktemp("api")
    data = make_folder_dataset(root / "data")
    FCN(parse_args(["--train", "--data-path", str(data), "--save-dir", str(root / "w"),
                    "--dataset", "shapes", *MODEL, "--height", "64", "--width", "64",
                    "--batch-size", "2", "--epochs", "1", "--steps-per-epoch", "2",
                    "--verbose", "0", "--no-mixed-precision"])).train()
    return data, root / "w" / "fcn8s-ResNet11v2-3layer-shapes-best-iou.weights.h5"


def test_from_weights_rebuilds_the_model_and_its_classes(trained):
    _, weights = trained
    segmenter = fcn_keras.Segmenter.from_weights(weights)
    assert segmenter.classes.n_classes == 3
    assert any(layer.name == "downsample_input" for layer in segmenter.model.layers)


def test_predict_takes_paths_pil_images_arrays_lists_and_batches(trained):
    data, weights = trained
    segmenter = fcn_keras.Segmenter.from_weights(weights)
    path = sorted((data / "images").glob("*.png"))[0]
    pixels = np.asarray(Image.open(path).convert("RGB"))
    expected = np.argmax(segmenter.model(pixels[None].astype("float32") / 255.0)[0], -1)
    mask = segmenter.predict(path)
    assert mask.dtype == np.uint8 and mask.shape == pixels.shape[:2]
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(segmenter.predict(str(path)), mask)
    np.testing.assert_array_equal(segmenter.predict(Image.open(path)), mask)
    np.testing.assert_array_equal(segmenter.predict(pixels), mask)
    np.testing.assert_array_equal(segmenter.predict(pixels.astype("float32") / 255.0), mask)
    other = pixels[:37, :45]
    masks = segmenter.predict([pixels, other])
    assert isinstance(masks, list) and [m.shape for m in masks] == [mask.shape, (37, 45)]
    batch = segmenter.predict(np.stack([pixels, pixels[:, ::-1]]))
    assert batch.shape == (2, *mask.shape)
    np.testing.assert_array_equal(batch[0], mask)
    probs = segmenter.predict(pixels, probabilities=True)
    assert probs.shape == (*mask.shape, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(np.argmax(probs, -1), mask)


def test_tta_option_reaches_the_predictor(trained):
    data, weights = trained
    segmenter = fcn_keras.Segmenter.from_weights(weights, tta="flip")
    pixels = np.asarray(Image.open(sorted((data / "images").glob("*.png"))[0]).convert("RGB"))
    x = pixels[None].astype("float32") / 255.0
    flipped = (segmenter.model(x)[0].numpy() + segmenter.model(x[:, :, ::-1])[0].numpy()[:, ::-1])
    np.testing.assert_allclose(segmenter.predict(pixels, probabilities=True), flipped / 2,
                               atol=1e-5)


def test_bad_input_is_named(trained):
    _, weights = trained
    segmenter = fcn_keras.Segmenter.from_weights(weights)
    with pytest.raises(DataError, match=r"float pixels must be in \[0, 1\]"):
        segmenter.predict(np.full((8, 8, 3), 200.0))
    with pytest.raises(DataError, match="channels"):
        segmenter.predict(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(DataError, match="shape"):
        segmenter.predict(np.zeros((8,), np.uint8))
    with pytest.raises(DataError, match="not found"):
        segmenter.predict(weights.parent / "missing.png")
    with pytest.raises(ConfigError, match="no classes file"):
        lonely = weights.parent / "lonely.weights.h5"
        lonely.write_bytes(weights.read_bytes())
        fcn_keras.Segmenter.from_weights(lonely)


def test_from_preset_loads_the_shipped_drinks_weights_offline(repo_root):
    segmenter = fcn_keras.Segmenter.from_preset("quick")
    assert segmenter.classes.names[3] == "juice can"
    image = repo_root / "data" / "drinks" / "0000181.jpg"
    mask = segmenter.predict(image)
    assert mask.shape == (240, 320) and set(np.unique(mask)) <= {0, 1, 2, 3}
    assert len(np.unique(mask)) >= 2          # a trained model finds drinks on a drinks photo
    with pytest.raises(ConfigError, match="not here"):
        fcn_keras.Segmenter.from_preset("quick", weights_dir=repo_root / "tests")


def test_cli_prediction_runs_through_the_api(trained, tmp_path, monkeypatch):
    data, weights = trained
    calls = []
    original = fcn_keras.Segmenter.predict

    def spy(self, images, probabilities=False):
        calls.append(np.shape(images))
        return original(self, images, probabilities)

    monkeypatch.setattr(fcn_keras.Segmenter, "predict", spy)
    image = sorted((data / "images").glob("*.png"))[0]
    FCN(parse_args(["--evaluate", "--restore-weights", str(weights), "--image-file", str(image),
                    "--output-dir", str(tmp_path), "--verbose", "0"])).predict_files(str(image))
    assert len(calls) == 1 and (tmp_path / f"{image.stem}-mask.png").exists()


def test_readme_example_runs(monkeypatch, repo_root):
    """The README's Python API example, as written there, runs from the repository root."""
    import re
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(repo_root)
    exec(compile(code, "README.md", "exec"), {})
