"""Training end to end on a tiny synthetic dataset: weights, history, resume, evaluation."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from fcn_keras.app import FCN  # noqa: E402
from fcn_keras.config import parse_args  # noqa: E402
from fcn_keras.errors import ConfigError  # noqa: E402

SMALL = ["--n", "1", "--layers", "2", "--head-filters", "16", "--height", "32", "--width", "48",
         "--batch-size", "2", "--verbose", "0", "--seed", "1"]
STEM = "ResNet11v2-2layer-shapes-best-iou"


def config_for(root, *extra, data=None):
    """Options of the small model on `data` (default: root/data), saving in root/weights."""
    return parse_args(["--data-path", str(data or root / "data"), "--save-dir",
                       str(root / "weights"), "--output-dir", str(root / "out"), "--dataset",
                       "shapes", *SMALL, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_folder_dataset):
    """A folder with data/ and weights/ of a 2-epoch training, shared by this module's tests
    (each copies what it changes)."""
    root = tmp_path_factory.mktemp("trained")
    make_folder_dataset(root / "data")
    FCN(config_for(root, "--train", "--epochs", "2")).train()
    return root


@pytest.fixture
def run_dir(trained, tmp_path):
    """A private copy of the trained weights/ folder in tmp_path (data shared, read-only)."""
    shutil.copytree(trained / "weights", tmp_path / "weights")
    return tmp_path


def test_train_then_resume_then_evaluate(run_dir, trained):
    tmp_path, data = run_dir, trained / "data"
    weights = tmp_path / "weights" / f"{STEM}.weights.h5"
    assert weights.exists()
    history = json.loads((tmp_path / "weights" / f"{STEM}-history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1]
    assert {"loss", "val_mean_iou", "val_pixel_accuracy", "val_book_miou", "lr"} <= set(history[0])
    assert (tmp_path / "weights" / f"{STEM}-history.csv").exists()
    assert (tmp_path / "weights" / f"{STEM}.classes.json").exists()

    resumed = FCN(config_for(tmp_path, "--train", "--epochs", "3", "--resume", data=data))
    resumed.train()
    history = json.loads((tmp_path / "weights" / f"{STEM}-history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]  # continued at epoch 3, not from 1

    evaluator = FCN(config_for(tmp_path, "--evaluate", "--restore-weights", str(weights),
                               "--report", str(tmp_path / "report.json"), "--plot",
                               "--worst", "1", data=data))
    evaluator.restore_weights()
    metrics = evaluator.evaluate()
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou", "per_class_iou",
                "book_miou", "book_pla"):
        assert key in report
    assert report["mean_iou"] == pytest.approx(metrics["mean_iou"])
    assert (tmp_path / "out" / "confusion-test.png").exists()
    assert len(list((tmp_path / "out").glob("worst-01-*.png"))) == 1


def test_predict_files_any_size(trained, tmp_path):
    from PIL import Image
    weights = trained / "weights" / f"{STEM}.weights.h5"
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((37, 53, 3), 128, np.uint8)).save(folder / "odd.png")
    Image.fromarray(np.full((20, 20), 10, np.uint8)).save(folder / "grey.jpg")
    app = FCN(config_for(tmp_path, "--evaluate", "--restore-weights", str(weights),
                         "--image-file", str(folder), data=trained / "data"))
    app.restore_weights()
    written = app.predict_files(str(folder))
    assert len(written) == 2
    mask = np.asarray(Image.open(tmp_path / "out" / "odd-mask.png"))
    assert mask.shape == (37, 53) and mask.max() < 3
    assert (tmp_path / "out" / "odd-overlay.png").exists()


def test_weights_for_another_class_count_are_refused(run_dir, trained):
    tmp_path, data = run_dir, trained / "data"
    weights = tmp_path / "weights" / f"{STEM}.weights.h5"
    with pytest.raises(ConfigError, match="trained with --head-filters 16"):   # the settings
        config_for(tmp_path, "--evaluate", "--restore-weights", str(weights),
                   "--head-filters", "8", data=data)
    (tmp_path / "weights" / f"{STEM}.model.json").unlink()
    other = FCN(config_for(tmp_path, "--evaluate", "--restore-weights", str(weights),
                           "--head-filters", "8", data=data))   # without them: the load says it
    with pytest.raises(ConfigError, match="does not fit this model"):
        other.restore_weights()


def pointwise_model(n_classes=3):
    """A model whose prediction at a pixel depends on that pixel only (1x1 convs)."""
    import keras
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 1, activation="relu")(inputs)
    outputs = keras.layers.Softmax()(keras.layers.Conv2D(n_classes, 1)(x))
    return keras.Model(inputs, outputs)


def test_tiling_agrees_with_whole_image():
    from fcn_keras.predict import Predictor
    model = pointwise_model()
    image = np.random.default_rng(0).random((1, 70, 95, 3)).astype("float32")
    whole = Predictor(model).probabilities(image)
    tiled = Predictor(model, tile=(32, 40)).probabilities(image)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def local_model(n_classes=3, convs=2, stride=8):
    """A model whose output at a pixel depends on the pixels within `convs` of it only (3x3
    convs), padded to `stride` at the bottom and right as the FCNs are."""
    import keras

    from fcn_keras.layers import CropLike, PadToMultiple
    inputs = keras.Input((None, None, 3))
    x = PadToMultiple(stride)(inputs)
    normal = keras.initializers.RandomNormal
    for _ in range(convs):
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu",
                                kernel_initializer=normal(stddev=0.5, seed=1))(x)
    x = keras.layers.Conv2D(n_classes, 1, kernel_initializer=normal(stddev=0.5, seed=2))(x)
    outputs = keras.layers.Softmax()(CropLike()([x, inputs]))
    return keras.Model(inputs, outputs)


def away_from_inner_window_borders(size, window, margin, overlap=1 / 3):
    """Along one axis: True where every window covering the position holds all of its
    receptive field: at least `margin` from each window edge inside the image, and from the
    far image edge (padded to the stride by both the window and the whole image, differently)."""
    from fcn_keras.predict import window_starts
    good = np.ones(size, bool)
    for start in window_starts(size, window, overlap):
        inside = np.zeros(size, bool)
        inside[start:start + window] = True
        low = start + (margin if start > 0 else 0)
        high = start + window - margin
        good &= ~inside | ((np.arange(size) >= low) & (np.arange(size) < high))
    return good


def test_tiling_agrees_with_whole_image_away_from_the_window_borders():
    """Windows smaller than the image: wherever each covering window holds the pixel's whole
    receptive field, the averaged windows equal the whole-image prediction exactly (to float
    rounding); a window placed or averaged wrongly breaks that."""
    from fcn_keras.predict import Predictor
    model = local_model(convs=2)
    image = np.random.default_rng(1).random((1, 45, 61, 3)).astype("float32")
    whole = Predictor(model).probabilities(image)
    tiled = Predictor(model, tile=(24, 32)).probabilities(image)
    assert tiled.shape == whole.shape == (1, 45, 61, 3)
    rows = away_from_inner_window_borders(45, 24, margin=2)
    cols = away_from_inner_window_borders(61, 32, margin=2)
    interior = rows[:, None] & cols[None, :]
    assert interior.mean() > 0.4 and not interior.all()
    np.testing.assert_allclose(tiled[0][interior], whole[0][interior], atol=1e-5)
    assert np.abs(tiled[0] - whole[0]).max() > 1e-3   # the borders do differ: windows were used


def test_tiling_with_the_book_model_covers_the_image():
    """The book's model in windows smaller than the image: every pixel is predicted, and the
    averaged probabilities still sum to one."""
    from fcn_keras.models import build_model
    from fcn_keras.predict import Predictor
    model, _ = build_model("fcn32s", n_classes=3, n=1, layers_=2)
    image = np.random.default_rng(1).random((1, 45, 61, 3)).astype("float32")
    tiled = Predictor(model, tile=(32, 32)).probabilities(image)
    assert tiled.shape == (1, 45, 61, 3)
    np.testing.assert_allclose(tiled.sum(-1), 1.0, atol=1e-5)


def test_flip_tta_on_symmetric_model_is_identity():
    from fcn_keras.predict import Predictor
    model = pointwise_model()
    image = np.random.default_rng(2).random((2, 33, 47, 3)).astype("float32")
    np.testing.assert_allclose(Predictor(model, tta="flip").probabilities(image),
                               Predictor(model).probabilities(image), atol=1e-5)


def test_multi_scale_tta_on_a_pointwise_model_of_a_smooth_image():
    """A pointwise model commutes with resizing up to interpolation error, so on a smooth image
    every scale agrees with the plain prediction; each view is resized back to the image."""
    from fcn_keras.predict import Predictor
    model = pointwise_model()
    rows, cols = np.mgrid[:41, :57] / 60.0
    image = np.stack([rows, cols, (rows + cols) / 2], -1)[None].astype("float32")
    plain = Predictor(model).probabilities(image)
    multi = Predictor(model, tta="ms-flip", scales=(0.5, 1.0, 1.5)).probabilities(image)
    assert multi.shape == plain.shape == (1, 41, 57, 3)
    np.testing.assert_allclose(multi[:, 2:-2, 2:-2], plain[:, 2:-2, 2:-2], atol=2e-3)
    one_scale = Predictor(model, tta="ms-flip", scales=(1.0,)).probabilities(image)
    np.testing.assert_allclose(one_scale, Predictor(model, tta="flip").probabilities(image))


def test_multi_scale_tta_averages_the_views():
    """With a real network the views differ; the result is their mean, resized back."""
    import tensorflow as tf

    from fcn_keras.models import build_model
    from fcn_keras.predict import Predictor
    model, _ = build_model("fcn8s", n_classes=3, n=1, pyramid_filters=8)
    image = np.random.default_rng(3).random((1, 48, 64, 3)).astype("float32")
    flip = Predictor(model, tta="flip")
    half = tf.image.resize(image, (24, 32)).numpy()
    expected = (flip.probabilities(image) + tf.image.resize(
        flip.probabilities(half), (48, 64)).numpy()) / 2
    multi = Predictor(model, tta="ms-flip", scales=(1.0, 0.5)).probabilities(image)
    np.testing.assert_allclose(multi, expected, atol=1e-5)


def test_model_predicting_the_truth_scores_one(tmp_path):
    """score_split on a predictor that returns the ground truth gives 1.0 everywhere."""
    import tensorflow as tf

    from fcn_keras.evaluate import score_split

    class Oracle:
        def labels(self, images):
            return np.round(images[..., 0] * 255).astype(np.uint8)

    rng = np.random.default_rng(0)
    masks = rng.integers(0, 3, (4, 16, 20, 1)).astype(np.uint8)
    masks[0, :2] = 255  # ignored pixels
    images = np.repeat(masks.astype(np.float32) / 255.0, 3, axis=-1)
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)
    metrics = score_split(Oracle(), dataset, 3, 255)
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou", "book_miou", "book_pla"):
        assert metrics[key] == pytest.approx(1.0), key


@pytest.mark.parametrize("budget,read_before_first", [(0, 1), (10 ** 9, 5), (7000, 3)])
def test_evaluation_decodes_ahead_within_its_budget(budget, read_before_first):
    """score_split reads the batches `decode_ahead` bytes at a time before the model sees them
    (0: one at a time) and scores them all, in order, whatever the chunking."""
    from fcn_keras.evaluate import score_split

    rng = np.random.default_rng(1)
    # 5 batches of 2 images 8x12: 2304 bytes of float32 image + 768 of int32 mask each, so a
    # 7000-byte budget is passed by the third
    batches = [(rng.random((2, 8, 12, 3), np.float32),
                rng.integers(0, 3, (2, 8, 12, 1)).astype(np.int32)) for _ in range(5)]
    read, seen = [], []

    def dataset():
        for i, batch in enumerate(batches):
            read.append(i)
            yield batch

    class Recorder:
        def labels(self, images):
            seen.append((len(read), images.copy()))
            return np.zeros(images.shape[:3], np.uint8)

    metrics = score_split(Recorder(), dataset(), 3, 255, decode_ahead=budget)
    assert metrics["n_images"] == 10
    assert seen[0][0] == read_before_first
    for (_, images), (expected, _) in zip(seen, batches, strict=True):
        np.testing.assert_array_equal(images, expected)
