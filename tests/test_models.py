"""Model shapes and parameter counts, and the bilinear transposed convolution."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from fcn_keras.backbones import build_backbone, build_resnet  # noqa: E402
from fcn_keras.errors import ConfigError  # noqa: E402
from fcn_keras.layers import bilinear_kernel, bilinear_upsampling  # noqa: E402
from fcn_keras.models import build_model  # noqa: E402

SIZES = [(480, 640), (360, 480), (250, 333), (37, 51)]


def test_book_model_parameter_count():
    """ResNet56v2, 3 pyramid layers, 256-filter heads, 4 classes: the book's 11,120,900."""
    model, _ = build_model("fcn", n_classes=4)
    assert model.count_params() == 11_120_900


def test_book_model_is_the_books_layout():
    model, backbone = build_model("fcn", n_classes=4, any_size=False)
    assert backbone.model.name == "ResNet56v2"
    names = [layer.name for layer in model.layers]
    for name in ("conv_fcn_8", "fcn_8_up2d", "fcn_16_up2d", "fcn_32_up2d", "tconv_up_x2",
                 "tconv_up_x4", "pre_activation", "segmentation"):
        assert any(n == name or n.endswith(name) for n in names), name
    assert backbone.strides == [4, 8, 16, 32]


@pytest.mark.parametrize("arch", ["fcn", "fcn32s", "fcn8s", "fcn4s"])
def test_output_shape_any_size(arch):
    model, _ = build_model(arch, n_classes=5, n=1)
    for height, width in SIZES:
        out = model(np.random.rand(2, height, width, 3).astype("float32"))
        assert tuple(out.shape) == (2, height, width, 5)
        np.testing.assert_allclose(np.sum(out.numpy(), axis=-1), 1.0, atol=1e-4)


@pytest.mark.parametrize("arch", ["fcn", "fcn32s", "fcn8s"])
def test_full_depth_models_at_checked_sizes(arch):
    model, _ = build_model(arch, n_classes=4)
    for height, width in [(480, 640), (360, 480), (250, 333)]:
        assert tuple(model(np.zeros((1, height, width, 3), "float32")).shape) == \
            (1, height, width, 4)


def test_resnet_v1_and_other_depths():
    v1 = build_resnet((64, 64, 3), n_layers=2, version=1, n=3)
    assert v1.name == "ResNet20v1"
    assert [tuple(o.shape[1:3]) for o in v1.outputs] == [(16, 16), (8, 8), (4, 4)]
    v2 = build_resnet((64, 64, 3), n_layers=4, version=2, n=12)
    assert v2.name == "ResNet110v2"
    assert len(v2.outputs) == 5


@pytest.mark.parametrize("name", ["resnet50v2", "vgg16"])
def test_application_backbones_expose_strides(name):
    backbone = build_backbone(name, (None, None, 3), n_layers=3)
    outputs = backbone.model(np.zeros((1, 128, 160, 3), "float32"))
    assert backbone.strides == [4, 8, 16, 32]
    for stride, out in zip(backbone.strides, outputs):
        assert tuple(out.shape[1:3]) == (128 // stride, 160 // stride)


@pytest.mark.parametrize("arch", ["fcn", "fcn32s", "fcn8s"])
def test_vgg16_models_odd_size(arch):
    model, _ = build_model(arch, n_classes=3, backbone="vgg16")
    assert tuple(model(np.zeros((1, 250, 333, 3), "float32")).shape) == (1, 250, 333, 3)


def test_imagenet_for_book_resnet_is_a_clear_error():
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        build_model("fcn", backbone="resnet", backbone_weights="imagenet")


def test_imagenet_offline_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")
    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline, raising=False)
    monkeypatch.setattr("keras.src.applications.vgg16.file_utils.get_file", offline,
                        raising=False)
    with pytest.raises(ConfigError, match="ImageNet weights"):
        build_model("fcn8s", backbone="vgg16", backbone_weights="imagenet")


def test_missing_backbone_weights_file():
    with pytest.raises(ConfigError, match="not found"):
        build_model("fcn", backbone="resnet", backbone_weights="/nonexistent/w.weights.h5")


def test_fcn8s_needs_stride_32():
    with pytest.raises(ConfigError, match="stride 32"):
        build_model("fcn8s", layers_=2, n=1)


def test_bilinear_kernel_matches_d2l():
    k = bilinear_kernel(1, 1, 4)[:, :, 0, 0]
    row = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(k, np.outer(row, row))
    assert bilinear_kernel(3, 3, 4)[:, :, 0, 1].sum() == 0  # channels do not mix


@pytest.mark.parametrize("factor", [2, 4, 8, 32])
def test_bilinear_transposed_conv_equals_bilinear_resize(factor):
    """The d2l claim: the bilinear-initialised transposed conv upsamples like bilinear resize
    (half-pixel centres) away from the border."""
    rng = np.random.default_rng(0)
    image = rng.random((1, 12, 10, 3)).astype("float32")
    layer = bilinear_upsampling(3, factor, name="up", use_bias=False)
    upsampled = layer(image).numpy()
    resized = tf.image.resize(image, (12 * factor, 10 * factor), method="bilinear").numpy()
    assert upsampled.shape == resized.shape
    m = factor  # one input pixel of border on each side
    np.testing.assert_allclose(upsampled[:, m:-m, m:-m], resized[:, m:-m, m:-m], atol=1e-5)


def test_bilinear_upsampling_layer_matches_keras_upsampling():
    from fcn_keras.layers import BilinearUpSampling2D
    x = np.random.default_rng(0).random((2, 5, 7, 4)).astype("float32")
    ours = BilinearUpSampling2D(size=4)(x).numpy()
    reference = keras.layers.UpSampling2D(size=4, interpolation="bilinear")(x).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_export_savedmodel_takes_any_size(tmp_path):
    from fcn_keras.classes import ClassInfo
    from fcn_keras.config import parse_args
    from fcn_keras.export import export_model
    model, _ = build_model("fcn", n_classes=3, n=1, layers_=2, head_filters=8)
    export_model(model, tmp_path, ClassInfo(["a", "b", "c"]), parse_args(["--summary"]),
                 tflite_size=(32, 48))
    served = tf.saved_model.load(str(tmp_path / "saved_model"))
    for height, width in [(45, 61), (64, 64)]:
        x = np.random.rand(1, height, width, 3).astype("float32")
        np.testing.assert_allclose(served.serve(x).numpy(), model(x).numpy(), atol=1e-5)
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    x = np.random.rand(1, 33, 50, 3).astype("float32")
    np.testing.assert_allclose(reloaded(x).numpy(), model(x).numpy(), atol=1e-5)
    assert (tmp_path / "classes.json").exists()


@pytest.mark.parametrize("arch", ["fcn8s", "fcn4s"])
def test_context_and_pyramid_blocks_any_size(arch):
    model, _ = build_model(arch, n_classes=5, n=1, pyramid_filters=16, context="aspp",
                           pyramid_blocks=2)
    for height, width in SIZES:
        out = model(np.random.rand(1, height, width, 3).astype("float32"))
        assert tuple(out.shape) == (1, height, width, 5)
        np.testing.assert_allclose(np.sum(out.numpy(), axis=-1), 1.0, atol=1e-4)


def test_fcn4s_fuses_the_stride4_scores():
    model, _ = build_model("fcn4s", n_classes=3, n=1, any_size=False)
    names = {layer.name for layer in model.layers}
    assert {"score_stride4", "upsample_8_to_4", "fuse_stride4", "upsample_x4"} <= names


def test_pyramid_blocks_add_two_3x3_convs_each_at_strides_16_and_32():
    plain, _ = build_model("fcn8s", n_classes=4, n=2, pyramid_filters=128)
    deeper, backbone = build_model("fcn8s", n_classes=4, n=2, pyramid_filters=128,
                                   pyramid_blocks=2)
    per_block = 2 * (3 * 3 * 128 * 128) + 2 * (4 * 128)   # two convs (no bias), two BN
    assert deeper.count_params() - plain.count_params() == 2 * 2 * per_block
    assert backbone.strides == [4, 8, 16, 32]


def test_context_and_pyramid_blocks_are_refused_where_they_do_not_apply():
    with pytest.raises(ConfigError, match="--context aspp applies"):
        build_model("fcn", n=1, context="aspp")
    with pytest.raises(ConfigError, match="--pyramid-blocks"):
        build_model("fcn8s", backbone="vgg16", pyramid_blocks=1)


def test_shipped_fcn8s_weights_still_load(tmp_path):
    """The skip-fusion builder now serves fcn8s and fcn4s: layer names must not have moved."""
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "weights" / \
        "fcn8s-ResNet20v2-3layer-camvid-best-iou.weights.h5"
    model, _ = build_model("fcn8s", n_classes=11, n=2, pyramid_filters=128)
    model.load_weights(str(path))


def test_keras_file_round_trip_with_context(tmp_path):
    model, _ = build_model("fcn4s", n_classes=3, n=1, pyramid_filters=8, context="aspp",
                           pyramid_blocks=1)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.rand(1, 40, 70, 3).astype("float32")
    np.testing.assert_allclose(reloaded(x).numpy(), model(x).numpy(), atol=1e-5)


def test_downsample_runs_the_same_network_on_a_smaller_image(tmp_path):
    """--downsample 2: the core sees the 2x2-averaged image (padded to stride x 2), and its
    probabilities come back bilinearly upsampled to the input's size; same weights as F=1."""
    model, _ = build_model("fcn8s", n_classes=3, n=1, pyramid_filters=8, downsample=2)
    plain, _ = build_model("fcn8s", n_classes=3, n=1, pyramid_filters=8)
    assert model.count_params() == plain.count_params()
    assert [w.shape for w in model.get_weights()] == [w.shape for w in plain.get_weights()]
    core = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    x = np.random.default_rng(0).random((2, 70, 90, 3)).astype("float32")
    out = model(x).numpy()
    assert out.shape == (2, 70, 90, 3)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=1e-4)
    padded = np.pad(x, [(0, 0), (0, 128 - 70), (0, 128 - 90), (0, 0)])
    small = padded.reshape(2, 64, 2, 64, 2, 3).mean(axis=(2, 4))
    expected = tf.image.resize(core(small), (128, 128), method="bilinear").numpy()[:, :70, :90]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    for height, width in SIZES:
        assert model(np.zeros((1, height, width, 3), "float32")).shape == (1, height, width, 3)
    plain.save_weights(str(tmp_path / "plain.weights.h5"))   # the weights files interchange
    model.load_weights(str(tmp_path / "plain.weights.h5"))
    plain_core = next(layer for layer in plain.layers if isinstance(layer, keras.Model))
    np.testing.assert_allclose(core(small).numpy(), plain_core(small).numpy(), atol=1e-6)


def test_backbone_weights_start_a_training_only(tmp_path, monkeypatch):
    """`--backbone-weights` (e.g. from a preset) is read when training starts; evaluating
    loads the whole model's weights, so there the file is not needed. A relative path is also
    looked up in the project, where shipped weights are."""
    from fcn_keras import backbones
    from fcn_keras.config import parse_args
    (tmp_path / "w.weights.h5").write_bytes(b"x")
    train = parse_args(["--train", "--backbone-weights", "weights/b.weights.h5"])
    evaluate = parse_args(["--evaluate", "--restore-weights", str(tmp_path / "w.weights.h5"),
                           "--backbone-weights", "weights/b.weights.h5"])
    assert train.model_options()["backbone_weights"] == "weights/b.weights.h5"
    assert evaluate.model_options()["backbone_weights"] == "none"
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "b.weights.h5").write_bytes(b"x")
    monkeypatch.setattr(backbones, "PROJECT_DIR", tmp_path)
    monkeypatch.chdir(tmp_path / "weights")
    assert backbones.weights_file("weights/b.weights.h5") == tmp_path / "weights" / "b.weights.h5"
    with pytest.raises(ConfigError, match="weights/c.weights.h5: file not found"):
        backbones.weights_file("weights/c.weights.h5")
