"""The fast layers of `fcn_keras.layers` are Keras' `Conv2DTranspose` and `BatchNormalization`
computed another way: same weights, same outputs, gradients and moving statistics (to float
rounding), interchangeable weight files."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from keras import layers  # noqa: E402

import fcn_keras.layers as layers_module  # noqa: E402
from fcn_keras.layers import BatchNormalization, Conv2DTranspose, set_fast_layers  # noqa: E402
from fcn_keras.models import build_model  # noqa: E402


@pytest.fixture(autouse=True)
def _subpixel_everywhere(monkeypatch):
    """The sub-pixel training form on every machine (on a CPU with AMX, bfloat16 layers would
    train with TensorFlow's own op instead, see `test_amx_bfloat16_trains_with_the_parents_op`)."""
    monkeypatch.setattr(layers_module, "subpixel_training_pays", lambda dtype: True)


def _pair(filters, in_channels, **kwargs):
    """A Conv2DTranspose and a Conv2DTranspose holding the same random weights."""
    kwargs = {"kernel_size": 3, "strides": 2, "padding": "same", **kwargs}
    plain = layers.Conv2DTranspose(filters, bias_initializer="random_normal", **kwargs)
    fast = Conv2DTranspose(filters, **kwargs)
    assert fast.fast
    shape = (None, None, None, in_channels)
    plain.build(shape)
    fast.build(shape)
    fast.set_weights(plain.get_weights())
    return plain, fast


def _outputs_and_gradients(layer, x, upstream):
    """Training mode: the sub-pixel form (inference uses TensorFlow's own op)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    grads = tape.gradient(loss, [x] + layer.trainable_variables)
    return [y.numpy()] + [g.numpy() for g in grads]


def _assert_close(got, want, rtol=1e-5):
    for name, a, b in zip(("output", "d_input", "d_kernel", "d_bias"), got, want):
        assert a.shape == b.shape, name
        scale = np.abs(b).max() + 1e-12
        assert np.abs(a - b).max() <= rtol * scale, (name, np.abs(a - b).max() / scale)


@pytest.mark.parametrize("lean", [False, True], ids=["one-gemm", "lean"])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 9), (12, 16)])
def test_same_outputs_and_gradients_as_conv2d_transpose(size, lean):
    """Both training forms: one GEMM, and `lean` (`--remat`: products and gradients phase by
    phase)."""
    rng = np.random.default_rng(0)
    plain, fast = _pair(6, 5)
    fast.lean = lean
    x = rng.standard_normal((2, *size, 5)).astype("float32")
    upstream = rng.standard_normal((2, 2 * size[0], 2 * size[1], 6)).astype("float32")
    _assert_close(_outputs_and_gradients(fast, x, upstream),
                  _outputs_and_gradients(plain, x, upstream))


@pytest.mark.parametrize("lean", [False, True], ids=["one-gemm", "lean"])
def test_same_inside_a_compiled_function_with_unknown_sizes(lean):
    rng = np.random.default_rng(1)
    plain, fast = _pair(4, 3)
    fast.lean = lean
    spec = tf.TensorSpec((None, None, None, 3), tf.float32)
    run_plain = tf.function(plain, input_signature=[spec])
    run_fast = tf.function(lambda x: fast(x, training=True), input_signature=[spec])
    for size in [(5, 6), (8, 8)]:
        x = rng.standard_normal((3, *size, 3)).astype("float32")
        np.testing.assert_allclose(run_fast(x).numpy(), run_plain(x).numpy(), rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("kwargs", [{"kernel_size": 4}, {"strides": 1}, {"padding": "valid"},
                                    {"kernel_size": 2, "strides": 2}])
def test_other_shapes_fall_back_to_the_parent(kwargs):
    rng = np.random.default_rng(2)
    plain, fast = _pair(3, 2, **kwargs)
    x = rng.standard_normal((1, 5, 7, 2)).astype("float32")
    np.testing.assert_allclose(fast(x, training=True).numpy(), plain(x).numpy(), rtol=1e-6,
                               atol=1e-6)


def test_inference_uses_the_parent_computation():
    rng = np.random.default_rng(10)
    plain, fast = _pair(4, 3)
    x = rng.standard_normal((1, 5, 6, 3)).astype("float32")
    np.testing.assert_array_equal(fast(x, training=False).numpy(), plain(x).numpy())
    np.testing.assert_allclose(fast(x, training=True).numpy(), plain(x).numpy(), rtol=1e-5,
                               atol=1e-5)


def test_bfloat16_policy_computes_in_bfloat16_and_matches():
    rng = np.random.default_rng(3)
    plain, fast = _pair(8, 16)
    fast16 = Conv2DTranspose(8, 3, strides=2, padding="same", dtype="mixed_bfloat16")
    fast16.build((None, None, None, 16))
    fast16.set_weights(plain.get_weights())
    x = rng.standard_normal((2, 6, 5, 16)).astype("float32")
    y16 = fast16(x, training=True)
    assert y16.dtype == tf.bfloat16
    assert fast16.kernel.dtype == "float32"   # variables stay float32 (mixed precision)
    want = plain(x).numpy()
    np.testing.assert_allclose(y16.numpy().astype("float32"), want,
                               atol=0.03 * np.abs(want).max())


@pytest.mark.parametrize("amx", [False, True])
def test_amx_bfloat16_trains_with_the_parents_op(monkeypatch, amx):
    """bfloat16 on a CPU with AMX-BF16 trains with TensorFlow's conv2d_transpose (faster there,
    benchmarks round 7); float32 and CPUs without AMX keep the sub-pixel form."""
    monkeypatch.undo()
    monkeypatch.setattr(layers_module, "_tensorflow_on_amx_cpu", lambda: amx)
    assert layers_module.subpixel_training_pays("float32")
    assert layers_module.subpixel_training_pays("float16")
    assert layers_module.subpixel_training_pays("bfloat16") is not amx
    keras.utils.set_random_seed(4)   # the same weights every run
    rng = np.random.default_rng(4)
    plain, _ = _pair(8, 16)
    fast16 = Conv2DTranspose(8, 3, strides=2, padding="same", dtype="mixed_bfloat16")
    plain16 = layers.Conv2DTranspose(8, 3, strides=2, padding="same", dtype="mixed_bfloat16")
    for layer in (fast16, plain16):
        layer.build((None, None, None, 16))
        layer.set_weights(plain.get_weights())
    x = rng.standard_normal((2, 6, 5, 16)).astype("float32")
    same = np.array_equal(fast16(x, training=True).numpy(), plain16(x).numpy())
    assert same is amx   # the sub-pixel form rounds its partial sums differently in bfloat16


def _keras_layers_model():
    """The same small model built from Keras' own Conv2DTranspose and BatchNormalization."""
    import fcn_keras.backbones as backbones_module
    import fcn_keras.layers as layers_module
    saved = layers_module.Conv2DTranspose, layers_module.BatchNormalization
    try:
        layers_module.Conv2DTranspose = layers.Conv2DTranspose
        layers_module.BatchNormalization = backbones_module.BatchNormalization = \
            layers.BatchNormalization
        model, _ = build_model("fcn", n_classes=3, n=1, layers_=2, head_filters=8,
                               pyramid_filters=16)
    finally:
        layers_module.Conv2DTranspose, layers_module.BatchNormalization = saved
        backbones_module.BatchNormalization = saved[1]
    return model


def _layers(model):
    for layer in model.layers:
        yield from _layers(layer) if isinstance(layer, keras.Model) else [layer]


def rounding_tolerance(model) -> float:
    """How far two float32 computations of `model`'s probabilities may drift apart when only
    the order of their sums differs (oneDNN picks it by layer form, shape and thread count).

    A sum of K products computed in another order moves by about sqrt(K) float32 ulps of its
    size (round-off as a random walk); each layer passes the error of its inputs on (batch norm
    rescales to unit size) and adds its own, so the differences add up over the convolutions:
    eps * sum(sqrt(K)) relative to the activations, and the softmax passes at most half of an
    error in its logits to the probabilities (at most 1). Observed worst: a third of that bound;
    the factor 4 covers the spread between runs and machines. A wrong weight mapping, layer or
    training-mode path differs by 1e-2 or more.
    """
    terms = 0.0
    for layer in _layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and len(kernel.shape) == 4:
            height, width, a, b = kernel.shape   # Conv2DTranspose keeps (h, w, out, in)
            inputs = b if isinstance(layer, layers.Conv2DTranspose) else a
            terms += np.sqrt(height * width * inputs)
    return 4 * float(np.finfo(np.float32).eps) * terms


def test_weight_files_interchange_with_the_plain_model(tmp_path):
    keras.utils.set_random_seed(0)   # the same weights every run
    fast, _ = build_model("fcn", n_classes=3, n=1, layers_=2, head_filters=8,
                          pyramid_filters=16)
    plain = _keras_layers_model()
    assert fast.layers[-2].get_layer("tconv_up_x2").fast
    assert type(plain.layers[-2].get_layer("tconv_up_x2")) is layers.Conv2DTranspose
    assert type(plain.layers[-2].get_layer("bn_up_x2")) is layers.BatchNormalization
    assert fast.count_params() == plain.count_params()
    atol = rounding_tolerance(plain)
    assert 1e-5 < atol < 1e-3
    path = tmp_path / "fast.weights.h5"
    fast.save_weights(path)
    plain.load_weights(path)
    x = np.random.default_rng(4).random((1, 37, 51, 3)).astype("float32")
    for training in (False, True):   # inference: TF's own ops; training: the fast forms
        np.testing.assert_allclose(plain(x, training=training).numpy(),
                                   fast(x, training=training).numpy(), atol=atol,
                                   err_msg=f"training={training}")
    back = tmp_path / "plain.weights.h5"
    plain.save_weights(back)
    fast.load_weights(back)
    for training in (False, True):
        np.testing.assert_allclose(plain(x, training=training).numpy(),
                                   fast(x, training=training).numpy(), atol=atol,
                                   err_msg=f"training={training}")


def test_keras_file_round_trip(tmp_path):
    _, fast = _pair(4, 3)
    model = keras.Sequential([keras.Input((None, None, 3)), fast])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[-1], Conv2DTranspose)
    x = np.random.default_rng(5).random((1, 4, 6, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x, training=True).numpy(), model(x, training=True).numpy(),
                               atol=1e-6)


def _bn_pair(channels):
    rng = np.random.default_rng(6)
    plain, fast = layers.BatchNormalization(momentum=0.9), BatchNormalization(momentum=0.9)
    plain.build((None, None, None, channels))
    fast.build((None, None, None, channels))
    plain.set_weights([rng.random(channels).astype("float32") + 0.5,
                       rng.standard_normal(channels).astype("float32"),
                       rng.standard_normal(channels).astype("float32"),
                       rng.random(channels).astype("float32") + 0.5])
    fast.set_weights(plain.get_weights())
    return plain, fast


def _bn_run(layer, x, upstream, training):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [y.numpy()] + [g.numpy() for g in grads] + \
        [w.numpy() for w in layer.non_trainable_weights]


@pytest.mark.parametrize("training", [True, False])
def test_batch_normalization_same_outputs_gradients_and_statistics(training):
    rng = np.random.default_rng(7)
    plain, fast = _bn_pair(5)
    x = (rng.standard_normal((3, 6, 7, 5)) * 3 + 2).astype("float32")
    upstream = rng.standard_normal(x.shape).astype("float32")
    got, want = _bn_run(fast, x, upstream, training), _bn_run(plain, x, upstream, training)
    names = ("output", "d_input", "d_gamma", "d_beta", "moving_mean", "moving_variance")
    for name, a, b in zip(names, got, want):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * np.abs(b).max(), err_msg=name)


def test_batch_normalization_under_bfloat16_policy():
    rng = np.random.default_rng(8)
    plain, _ = _bn_pair(4)
    fast16 = BatchNormalization(momentum=0.9, dtype="mixed_bfloat16")
    fast16.build((None, None, None, 4))
    fast16.set_weights(plain.get_weights())
    x = (rng.standard_normal((2, 5, 5, 4)) * 2).astype("float32")
    y16 = fast16(tf.cast(x, tf.bfloat16), training=True)
    assert y16.dtype == tf.bfloat16
    want = plain(x, training=True).numpy()
    np.testing.assert_allclose(y16.numpy().astype("float32"), want, atol=0.05)
    np.testing.assert_allclose(fast16.moving_mean.numpy(), plain.moving_mean.numpy(), atol=0.02)


def test_set_fast_layers_switches_nested_layers_and_keeps_results():
    """Switched off in place, the same model computes the same probabilities, in training mode
    (where the fast forms run) as in inference."""
    model, _ = build_model("fcn", n_classes=3, n=1, layers_=2, head_filters=8,
                           pyramid_filters=16)
    x = np.random.default_rng(9).random((2, 40, 56, 3)).astype("float32")
    weights = model.get_weights()   # a training-mode call moves the batch-norm statistics

    def outputs():
        model.set_weights(weights)
        return {training: model(x, training=training).numpy() for training in (False, True)}

    fast_out = outputs()
    set_fast_layers(model, False)
    switched = [layer for sub in (model.layers[-2], model.layers[-2].layers[1])
                for layer in sub.layers if isinstance(layer, (Conv2DTranspose, BatchNormalization))]
    assert switched and not any(layer.fast for layer in switched)
    plain_out = outputs()
    for training in (False, True):
        np.testing.assert_allclose(plain_out[training], fast_out[training],
                                   atol=rounding_tolerance(model), err_msg=f"training={training}")


def test_fast_flag_round_trips_through_the_config():
    layer = Conv2DTranspose(4, 3, strides=2, padding="same", fast=False)
    assert Conv2DTranspose.from_config(layer.get_config()).fast is False
    bn = BatchNormalization(fast=False)
    assert BatchNormalization.from_config(bn.get_config()).fast is False


def test_cli_flag_reaches_build_model():
    from fcn_keras.config import parse_args
    assert parse_args(["--summary"]).model_options()["fast_layers"] is True
    assert parse_args(["--summary", "--no-fast-layers"]).model_options()["fast_layers"] is False
