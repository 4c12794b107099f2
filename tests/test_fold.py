"""Batch norm folded into the preceding convolution (`fcn_keras.fold`) gives the unfolded
model's outputs, and the inference function traces once for images of any size."""

import keras
import numpy as np
import pytest

from fcn_keras.fold import count_batch_norms, fold_batch_norm
from fcn_keras.models import build_model
from fcn_keras.predict import Predictor

MODEL = dict(n=1, layers_=3, head_filters=8, pyramid_filters=16)


def _model(arch, **extra):
    keras.utils.set_random_seed(1)
    model, _ = build_model(arch, 4, **MODEL, **extra)
    rng = np.random.default_rng(0)   # batch norms that do something: statistics far from 0/1
    for w in model.weights:
        if w.path.endswith(("moving_variance", "gamma")):
            w.assign(rng.uniform(0.5, 2.0, w.shape))
        elif w.path.endswith(("moving_mean", "beta")):
            w.assign(rng.normal(0.0, 0.5, w.shape))
    return model


@pytest.mark.parametrize("arch,extra", [("fcn", {}), ("fcn8s", {}), ("fcn32s", {}),
                                        ("fcn4s", dict(context="aspp", pyramid_blocks=1)),
                                        ("fcn4s", dict(downsample=2))])
def test_folded_model_matches_the_unfolded_one(arch, extra):
    model = _model(arch, **extra)
    folded = fold_batch_norm(model)
    assert count_batch_norms(folded) < count_batch_norms(model)
    x = np.random.default_rng(2).random((2, 70, 90, 3), np.float32)
    expected = model(x, training=False).numpy()
    got = folded(x, training=False).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-3)
    # the original keeps its batch norms and weights
    np.testing.assert_array_equal(model(x, training=False).numpy(), expected)


def test_pre_activation_batch_norms_run_as_fused_depthwise_convolutions():
    """The ResNet v2 units' batch norms (no convolution before them) become 1x1 depthwise
    convolutions with bias and the ReLU after them, traced with "SAME" padding (the form whose
    output shape TensorFlow's optimiser knows to equal the input's, so that it fuses the
    residual additions); every plain Conv2D becomes a FoldedConv2D (bias by BiasAdd)."""
    import tensorflow as tf

    from fcn_keras.fold import FoldedAway, FoldedBatchNormalization, FoldedConv2D
    from fcn_keras.layers import all_layers
    model = _model("fcn")
    unfoldable = [layer for layer in all_layers(model)
                  if isinstance(layer, keras.layers.BatchNormalization)
                  and not isinstance(layer._inbound_nodes[0].input_tensors[0]._keras_history
                                     .operation, (keras.layers.Conv2D,
                                                  keras.layers.Conv2DTranspose))]
    assert unfoldable
    folded = fold_batch_norm(model)
    kinds = {layer.name: layer for layer in all_layers(folded)}
    for bn in unfoldable:
        assert isinstance(kinds[bn.name], FoldedBatchNormalization)
        assert kinds[bn.name].activation is keras.activations.relu
        relu = bn._outbound_nodes[0].operation
        assert isinstance(kinds[relu.name], FoldedAway)
    assert not [layer for layer in all_layers(folded) if type(layer) is keras.layers.Conv2D]
    assert any(type(layer) is FoldedConv2D and layer.activation is keras.activations.linear
               for layer in all_layers(folded))
    graph = tf.function(folded).get_concrete_function(
        tf.TensorSpec((None, None, None, 3), tf.float32)).graph
    depthwise = [op for op in graph.get_operations() if op.type == "DepthwiseConv2dNative"]
    assert len(depthwise) == len(unfoldable)
    assert {op.get_attr("padding") for op in depthwise} == {b"SAME"}


def test_predictor_folds_and_traces_once_for_many_sizes():
    model = _model("fcn4s", context="aspp", pyramid_blocks=1)
    plain, folded = Predictor(model), Predictor(model, fold_bn=True)
    rng = np.random.default_rng(3)
    for shape in ((2, 64, 96), (1, 50, 70), (3, 97, 33), (1, 64, 96)):
        x = rng.random((*shape, 3), np.float32)
        p = plain.probabilities(x)
        assert p.shape == (*shape, 4)
        np.testing.assert_allclose(folded.probabilities(x), p, atol=2e-4, rtol=1e-3)
    assert plain.traces == 1 and folded.traces == 1


def test_predictor_folds_the_probabilities_network_only_when_asked():
    """Labels use the softmax-less folded copy only; the copy with the softmax is folded the
    first time probabilities are asked for (before its function traces), and matches the
    model."""
    model = _model("fcn")
    predictor = Predictor(model, fold_bn=True)
    x = np.random.default_rng(4).random((2, 64, 96, 3), np.float32)
    expected = model(x, training=False).numpy()
    top2 = np.sort(expected, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 1e-3     # float rounding cannot swap these pixels
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(predictor.labels(x)[clear], expected.argmax(-1)[clear])
    assert predictor._network is None
    np.testing.assert_allclose(predictor.probabilities(x), expected, atol=2e-4, rtol=1e-3)
    assert predictor._network is not None and predictor.network is predictor._network
    assert predictor.traces == 2     # one function each: labels, probabilities


def test_evaluating_a_split_of_three_sizes_traces_once():
    import tensorflow as tf

    from fcn_keras.evaluate import score_split
    model = _model("fcn")
    predictor = Predictor(model, fold_bn=True)
    rng = np.random.default_rng(4)
    batches = [(tf.constant(rng.random((n, h, w, 3), np.float32)),
                tf.constant(rng.integers(0, 4, (n, h, w, 1)).astype(np.int32)))
               for n, h, w in ((2, 48, 64), (2, 61, 45), (1, 80, 100), (1, 48, 64))]
    metrics = score_split(predictor, batches, 4, 255)
    assert metrics["n_images"] == 6
    assert predictor.traces == 1


def test_labels_argmax_in_the_graph_match_the_probabilities():
    """Without TTA the argmax runs inside the inference function; it must give the labels
    of the probabilities, cropped back from the stride padding, as uint8."""
    model = _model("fcn4s", context="aspp", pyramid_blocks=1)
    predictor = Predictor(model)
    rng = np.random.default_rng(5)
    for shape in ((2, 64, 96), (1, 50, 70)):
        x = rng.random((*shape, 3), np.float32)
        labels = predictor.labels(x)
        assert labels.dtype == np.uint8 and labels.shape == shape
        np.testing.assert_array_equal(labels, predictor.probabilities(x).argmax(-1))
    assert predictor.traces == 2    # one labels function and one probabilities function


@pytest.mark.parametrize("classes", [None, 3])
@pytest.mark.parametrize("activation", ["relu", None])
@pytest.mark.parametrize("size", [(1, 1), (5, 7), (8, 6)])
def test_phases_form_matches_the_transposed_conv(monkeypatch, size, activation, classes):
    """The phases form (four convolutions, interleaved: `FoldedConv2DTranspose._phases`)
    computes the transposed conv + bias (+ ReLU) (+ 1x1 classifier), in a function traced for
    unknown sizes too."""
    import tensorflow as tf

    from fcn_keras import fold
    layer = fold.FoldedConv2DTranspose(6, 3, strides=2, padding="same", activation=activation,
                                       bias_initializer="random_normal", classes=classes)
    layer.build((None, None, None, 5))
    rng = np.random.default_rng(3)
    for weight in layer.weights:   # no zero biases: every term must land in its place
        weight.assign(rng.standard_normal(weight.shape).astype("float32"))
    x = rng.standard_normal((2, *size, 5)).astype("float32")
    monkeypatch.setattr(fold, "phases_pay", lambda *args: False)
    expected = layer(x).numpy()
    monkeypatch.setattr(fold, "phases_pay", lambda *args: True)
    phases, calls = fold.FoldedConv2DTranspose._phases, []
    monkeypatch.setattr(fold.FoldedConv2DTranspose, "_phases",
                        lambda self, inputs: calls.append(1) or phases(self, inputs))
    spec = tf.TensorSpec((None, None, None, 5), tf.float32)
    for got in (layer(x).numpy(), tf.function(layer, input_signature=[spec])(x).numpy()):
        assert got.shape == expected.shape == (2, 2 * size[0], 2 * size[1], classes or 6)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-5)
    assert len(calls) == 2


@pytest.mark.parametrize("phases", [False, True])
def test_folded_book_head_takes_its_classifier_in(monkeypatch, phases):
    """The book head's last transposed-conv block swallows the 1x1 `pre_activation`
    classifier; the folded model still gives the unfolded one's outputs, in either form."""
    from fcn_keras import fold
    from fcn_keras.layers import all_layers
    monkeypatch.setattr(fold, "phases_pay", lambda *args: phases)
    model = _model("fcn")
    folded = fold_batch_norm(model)
    by_name = {layer.name: layer for layer in all_layers(folded)}
    assert by_name["tconv_up_x4"].classes == 4
    assert by_name["tconv_up_x2"].classes is None
    assert isinstance(by_name["pre_activation"], fold.FoldedAway)
    x = np.random.default_rng(4).random((2, 70, 90, 3), np.float32)
    np.testing.assert_allclose(folded(x, training=False).numpy(),
                               model(x, training=False).numpy(), atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("amx", [False, True])
def test_phases_form_only_in_bfloat16_on_amx(monkeypatch, amx):
    from fcn_keras import fold, layers
    monkeypatch.setattr(layers, "_tensorflow_on_amx_cpu", lambda: amx)
    assert fold.phases_pay("bfloat16") is amx
    assert not fold.phases_pay("float32")


@pytest.mark.parametrize("phases", [False, True])
def test_mixed_precision_fold_keeps_convolution_weights_in_bfloat16(monkeypatch, phases):
    """Under mixed_bfloat16 the folded model stores its convolutions' weights in bfloat16
    (no cast of every kernel per batch) and computes exactly what it computed with float32
    weights cast on each call; batch norms and the float32 softmax keep their policy."""
    from fcn_keras import fold
    from fcn_keras.layers import all_layers
    monkeypatch.setattr(fold, "phases_pay", lambda *args: phases)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _model("fcn")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    folded = fold_batch_norm(model)
    monkeypatch.setattr(fold, "_weights_in_compute_dtype", lambda layer, config: config)
    cast_each_call = fold_batch_norm(model)
    policies = {type(layer).__name__: layer.dtype_policy.name for layer in all_layers(folded)}
    assert policies["FoldedConv2D"] == policies["FoldedConv2DTranspose"] == "bfloat16"
    assert policies["FoldedBatchNormalization"] == "bfloat16"
    assert "Conv2D" not in policies and "BatchNormalization" not in policies
    assert policies["Softmax"] == "float32"
    x = np.random.default_rng(6).random((2, 64, 96, 3), np.float32)
    np.testing.assert_array_equal(folded(x, training=False).numpy(),
                                  cast_each_call(x, training=False).numpy())


@pytest.mark.parametrize("arch,extra,dropped", [("fcn", {}, True), ("fcn8s", {}, True),
                                                ("fcn4s", dict(downsample=2), False)])
def test_labels_come_from_logits_where_the_softmax_is_last(arch, extra, dropped):
    """`fold_batch_norm(logits=True)` leaves the output softmax out when only crops follow it
    (not with --downsample's bilinear upsampling of the probabilities after it); the
    Predictor's labels are the argmax of the probabilities either way."""
    from fcn_keras.fold import FoldedAway, output_softmax
    from fcn_keras.layers import all_layers
    model = _model(arch, **extra)
    logits = fold_batch_norm(model, logits=True)
    kinds = {type(layer) for layer in all_layers(logits)}
    assert (output_softmax(model) is not None) is dropped
    assert (keras.layers.Softmax not in kinds) is dropped
    if dropped:
        by_name = {layer.name: layer for layer in all_layers(logits)}
        assert isinstance(by_name["segmentation"], FoldedAway)
    predictor = Predictor(model, fold_bn=True)
    x = np.random.default_rng(7).random((2, 70, 90, 3), np.float32)
    np.testing.assert_array_equal(predictor.labels(x), predictor.probabilities(x).argmax(-1))
