"""Batch norm folded into the preceding convolution, for inference.

At inference a batch normalisation is a fixed per-channel affine map,
y = gamma * (x - mean) / sqrt(var + eps) + beta, so after a convolution it can be merged into
the convolution's kernel and bias: kernel' = kernel * s, bias' = (bias - mean) * s + beta with
s = gamma / sqrt(var + eps). The folded model skips a pass over every such feature map, and
a Conv2D followed directly by BiasAdd and ReLU is what TensorFlow's graph optimiser fuses into
one oneDNN kernel (`_FusedConv2D`); a ReLU right after the folded batch norm is folded too.
A transposed-conv block whose only consumer is a 1x1 classifier (the book head's last block
and `pre_activation`) takes the classifier in as well, so that its phases form
(`FoldedConv2DTranspose`) classifies each phase before interleaving.

`fold_batch_norm(model)` returns a new model (the original is untouched; its weights are read
once, so fold again after the weights change). Only Conv-BN pairs where the convolution feeds
nothing but the batch norm are folded: its Conv-BN-ReLU blocks (the stem, the pyramid levels,
the FCN head, the transposed-conv blocks, the residual blocks and context module) are folded.
The book's ResNet v2 units are pre-activation (BN-ReLU-Conv, nothing to fold into): those
batch norms run as 1x1 depthwise convolutions with bias and ReLU (`FoldedBatchNormalization`),
and every other plain Conv2D as `FoldedConv2D`, the forms TensorFlow's optimiser fuses.
Layer names are kept, so the folded model's structure reads like the original's.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from fcn_keras.layers import Conv2DTranspose, computes_on_amx, interleave_phases


@keras.saving.register_keras_serializable(package="fcn_keras")
class FoldedConv2D(layers.Conv2D):
    """`Conv2D` with the bias added by `BiasAdd` (Keras adds a reshaped bias with `Add`),
    so that Conv2D + BiasAdd (+ ReLU) match TensorFlow's fused-convolution pattern."""

    def call(self, inputs):
        if keras.backend.backend() != "tensorflow" or self.data_format != "channels_last":
            return super().call(inputs)
        import tensorflow as tf
        outputs = tf.nn.bias_add(self.convolution_op(inputs, self.kernel),
                                 tf.cast(self.bias, self.compute_dtype))
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package="fcn_keras")
class FoldedConv2DTranspose(Conv2DTranspose):
    """This package's `Conv2DTranspose` at inference, bias added by `BiasAdd`; with `classes`
    it also applies the 1x1 classifier that followed it (`classifier_kernel`, `classifier_bias`)
    and outputs `classes` channels.

    TensorFlow fuses no bias or ReLU into its transposed conv, so both are a pass each over
    the output. Where passes over memory are dear beside arithmetic (bfloat16 on a CPU with
    AMX: `phases_pay`), the stride-2 kernel-3 "same" case is computed instead as four ordinary
    convolutions on the input, one per output phase (r, c) = pixels (2m + r, 2n + c), with
    exactly that phase's taps (2x2, 2x1, 1x2 and 1x1 kernels; see `Conv2DTranspose` for which)
    and the row and column above/left of the input as explicit padding, not a padded copy.
    TensorFlow fuses each with its bias and ReLU. The phases are interleaved at the end; with
    a classifier, which is per pixel and so commutes with the interleave, each phase is
    classified first and only the `classes`-channel maps are interleaved. The book head's last
    block and classifier took 80 ms in round 7's rows form, 49 ms this way, and its
    1024 -> 256 block 51 -> 44 ms (benchmarks/README.md, round 8).
    """

    def __init__(self, *args, classes: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.classes = classes

    def build(self, input_shape):
        super().build(input_shape)
        if self.classes:
            self.classifier_kernel = self.add_weight(
                name="classifier_kernel", shape=(self.filters, self.classes),
                initializer="glorot_uniform")
            self.classifier_bias = self.add_weight(
                name="classifier_bias", shape=(self.classes,), initializer="zeros")

    def call(self, inputs, training=None):
        if keras.backend.backend() != "tensorflow" or self.data_format != "channels_last":
            return self._classify(super().call(inputs, training=training))
        import tensorflow as tf
        if self._subpixel() and phases_pay(self.compute_dtype):
            return self._phases(inputs)
        outputs = keras.ops.conv_transpose(inputs, self.kernel, strides=self.strides,
                                           padding=self.padding,
                                           output_padding=self.output_padding,
                                           data_format=self.data_format,
                                           dilation_rate=self.dilation_rate)
        outputs = tf.nn.bias_add(outputs, tf.cast(self.bias, self.compute_dtype))
        return self._classify(outputs if self.activation is None else self.activation(outputs))

    def _classify(self, features):
        """The 1x1 classifier on `features` (unchanged without `classes`)."""
        if not self.classes:
            return features
        kernel = keras.ops.cast(self.classifier_kernel, self.compute_dtype)
        bias = keras.ops.cast(self.classifier_bias, self.compute_dtype)
        if keras.backend.backend() != "tensorflow":
            return keras.ops.matmul(features, kernel) + bias
        import tensorflow as tf

        # a 1x1 convolution: one oneDNN kernel with its bias
        return tf.nn.bias_add(tf.nn.conv2d(features, kernel[None, None], 1, "VALID"), bias)

    def _phases(self, inputs):
        """The phases form (see the class): four convolutions, each with bias and activation
        (and the classifier), interleaved."""
        import tensorflow as tf
        taps = tf.transpose(tf.cast(self.kernel, self.compute_dtype), (0, 1, 3, 2))  # (3,3,C,F)
        bias = tf.cast(self.bias, self.compute_dtype)

        def phase(kernel, top, left):   # top / left: rows m - 1 / columns n - 1 in the window
            pads = [[0, 0], [top, 0], [left, 0], [0, 0]]
            outputs = tf.nn.bias_add(tf.nn.conv2d(inputs, kernel, 1, pads), bias)
            outputs = outputs if self.activation is None else self.activation(outputs)
            return self._classify(outputs)

        def taps_of(rows, columns):
            return tf.stack([tf.stack([taps[i, j] for j in columns]) for i in rows])

        # input row m - 1 meets kernel row 2 and row m kernel row 0 in even output rows, row m
        # kernel row 1 in odd ones; the same along columns
        return interleave_phases(phase(taps_of((2, 0), (2, 0)), 1, 1),
                                 phase(taps_of((2, 0), (1,)), 1, 0),
                                 phase(taps_of((1,), (2, 0)), 0, 1),
                                 phase(taps_of((1,), (1,)), 0, 0))

    def compute_output_shape(self, input_shape):
        shape = super().compute_output_shape(input_shape)
        return (*shape[:-1], self.classes) if self.classes else shape

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


def phases_pay(compute_dtype: str) -> bool:
    """Whether `FoldedConv2DTranspose` computes its phases form: in bfloat16 on a CPU with
    AMX-BF16, where convolutions are cheap beside passes over memory. Elsewhere TensorFlow's
    transposed conv stays (not measured there yet)."""
    return computes_on_amx(compute_dtype)


@keras.saving.register_keras_serializable(package="fcn_keras")
class FoldedBatchNormalization(layers.DepthwiseConv2D):
    """A batch norm with no convolution before it to fold into (the ResNet v2 units'
    pre-activation: its input is a residual sum), at inference: the per-channel affine map
    y = s * x + t it is then, as a 1x1 depthwise convolution (kernel s, bias t), the ReLU after
    it as its activation. TensorFlow fuses the three into one oneDNN kernel.

    "SAME" padding (for a 1x1 kernel the same as none) matters: with it TensorFlow's shape
    inference knows the output has the input's height and width even when both are unknown
    (the Predictor traces for any size), and only then does its graph optimiser fuse each
    unit's residual addition into the convolution before it (the shapes of an addition's
    operands must be known equal). The book model's evaluation batch took 10-11% less time
    than with TensorFlow's batch-norm kernel, and "VALID" padding 15% more
    (benchmarks/README.md, round 9)."""

    def call(self, inputs, training=None, mask=None):   # a batch norm's call signature
        if keras.backend.backend() != "tensorflow" or self.data_format != "channels_last":
            return super().call(inputs)
        import tensorflow as tf
        outputs = tf.nn.bias_add(
            tf.nn.depthwise_conv2d(inputs, tf.cast(self.kernel, self.compute_dtype),
                                   [1, 1, 1, 1], "SAME"),
            tf.cast(self.bias, self.compute_dtype))
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package="fcn_keras")
class FoldedAway(layers.Layer):
    """Stands where a folded batch norm (or the ReLU folded with it) was: passes its input on."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _producer(tensor):
    return tensor._keras_history.operation


def _consumers(layer) -> list:
    return [node.operation for node in layer._outbound_nodes]


def _foldable(bn) -> layers.Layer | None:
    """The convolution `bn` can be folded into, or None."""
    if not isinstance(bn, layers.BatchNormalization) or len(bn._inbound_nodes) != 1:
        return None
    if bn.axis not in (-1, 3) or getattr(bn, "renorm", False):
        return None
    inputs = bn._inbound_nodes[0].input_tensors
    if len(inputs) != 1:
        return None
    conv = _producer(inputs[0])
    kinds = (layers.Conv2D, layers.Conv2DTranspose)
    if not isinstance(conv, kinds) or type(conv) not in (layers.Conv2D, layers.Conv2DTranspose,
                                                         Conv2DTranspose):
        return None
    if (conv.data_format != "channels_last" or getattr(conv, "groups", 1) != 1
            or conv.activation not in (None, keras.activations.linear)
            or len(conv._inbound_nodes) != 1 or len(_consumers(conv)) != 1):
        return None
    return conv


def _affine(bn) -> bool:
    """Whether `bn` (not foldable into a convolution) can run as `FoldedBatchNormalization`."""
    return (isinstance(bn, layers.BatchNormalization) and len(bn._inbound_nodes) == 1
            and bn.axis in (-1, 3) and not getattr(bn, "renorm", False)
            and len(bn._inbound_nodes[0].input_tensors) == 1
            and len(bn._inbound_nodes[0].input_tensors[0].shape) == 4)


def _relu_after(bn) -> layers.Layer | None:
    """The ReLU `Activation` layer that alone consumes `bn`'s output, or None."""
    consumers = _consumers(bn)
    if len(consumers) != 1:
        return None
    act = consumers[0]
    if (isinstance(act, layers.Activation) and len(act._inbound_nodes) == 1
            and getattr(act.activation, "__name__", "") == "relu"):
        return act
    return None


def _classifier_after(layer) -> layers.Layer | None:
    """The 1x1, stride-1, linear convolution that alone consumes `layer`'s output, or None."""
    consumers = _consumers(layer)
    if len(consumers) != 1:
        return None
    conv = consumers[0]
    if type(conv) not in (layers.Conv2D, layers.Conv2DTranspose, Conv2DTranspose):
        return None
    if (tuple(conv.kernel_size) != (1, 1) or tuple(conv.strides) != (1, 1)
            or tuple(conv.dilation_rate) != (1, 1) or getattr(conv, "groups", 1) != 1
            or getattr(conv, "output_padding", None) is not None
            or conv.data_format != "channels_last"
            or conv.activation not in (None, keras.activations.linear)
            or len(conv._inbound_nodes) != 1):
        return None
    return conv


def _plan(model, plan: dict) -> None:
    """Fill `plan` (id(layer) -> ("conv", bn, relu, classifier) | ("affine", relu) | ("drop",))
    for `model`, nested models included. A transposed conv whose block (conv, batch norm, ReLU)
    feeds only a 1x1 classifier takes the classifier in too; a batch norm with no convolution
    to fold into becomes a `FoldedBatchNormalization`, with the ReLU after it."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _plan(layer, plan)
            continue
        conv = _foldable(layer)
        if conv is None:
            if _affine(layer):
                relu = _relu_after(layer)
                plan[id(layer)] = ("affine", relu)
                if relu is not None:
                    plan[id(relu)] = ("drop",)
            continue
        relu = _relu_after(layer)
        classifier = None
        if isinstance(conv, layers.Conv2DTranspose):
            classifier = _classifier_after(relu or layer)
        plan[id(conv)] = ("conv", layer, relu, classifier)
        for dropped in (layer, relu, classifier):
            if dropped is not None:
                plan[id(dropped)] = ("drop",)


def _folded_weights(conv, bn) -> list[np.ndarray]:
    kernel = np.asarray(conv.kernel, np.float64)
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else 0.0
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else 1.0
    beta = np.asarray(bn.beta, np.float64) if bn.center else 0.0
    mean = np.asarray(bn.moving_mean, np.float64)
    var = np.asarray(bn.moving_variance, np.float64)
    scale = gamma / np.sqrt(var + bn.epsilon)
    if isinstance(conv, layers.Conv2DTranspose):   # kernel (kh, kw, out, in)
        kernel = kernel * scale[None, None, :, None]
    else:                                         # kernel (kh, kw, in, out)
        kernel = kernel * scale
    bias = (bias - mean) * scale + beta
    return [kernel.astype(np.float32), np.asarray(bias, np.float32)]


def _affine_weights(bn) -> list[np.ndarray]:
    """A batch norm's inference map s * x + t as `FoldedBatchNormalization`'s weights: the
    depthwise kernel s (1, 1, C, 1) and the bias t."""
    mean = np.asarray(bn.moving_mean, np.float64)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta, np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(np.asarray(bn.moving_variance, np.float64) + bn.epsilon)
    shift = beta - mean * scale
    return [scale.astype(np.float32)[None, None, :, None], shift.astype(np.float32)]


def _classifier_weights(conv) -> list[np.ndarray]:
    """A 1x1 convolution's weights as `FoldedConv2DTranspose`'s classifier: kernel (F, classes)
    and bias."""
    kernel = np.asarray(conv.kernel, np.float32)[0, 0]
    if isinstance(conv, layers.Conv2DTranspose):   # kernel (1, 1, out, in)
        kernel = kernel.T
    bias = np.asarray(conv.bias, np.float32) if conv.use_bias else \
        np.zeros(conv.filters, np.float32)
    return [kernel, bias]


_CONVOLUTIONS = (layers.Conv2D, layers.Conv2DTranspose, layers.DepthwiseConv2D,
                 layers.SeparableConv2D)


def _weights_in_compute_dtype(layer, config: dict) -> dict:
    """`config` with a convolution's weights kept in its compute dtype (bfloat16 under
    mixed_bfloat16): a mixed-precision layer casts its float32 kernel to that dtype on every
    call, the same rounding each time, which at inference is only a pass over every weight
    per batch. Other layers (batch norms, the float32 softmax) keep their policy."""
    policy = layer.dtype_policy
    if isinstance(layer, _CONVOLUTIONS) and policy.variable_dtype != policy.compute_dtype:
        return {**config, "dtype": policy.compute_dtype}
    return config


def output_softmax(model: keras.Model) -> layers.Layer | None:
    """The `Softmax` whose output is `model`'s output up to crops (`CropLike`) and nested-model
    boundaries, or None (several outputs, or a resampling after it, as with `--downsample`:
    interpolated logits do not rank like interpolated probabilities)."""
    from fcn_keras.layers import CropLike
    if len(model.outputs) != 1:
        return None
    layer = _producer(model.outputs[0])
    while True:
        if isinstance(layer, layers.Softmax):
            return layer
        if isinstance(layer, keras.Model) and len(layer.outputs) == 1:
            layer = _producer(layer.outputs[0])
        elif isinstance(layer, CropLike):
            layer = _producer(layer._inbound_nodes[0].input_tensors[0])
        else:
            return None


def fold_batch_norm(model: keras.Model, logits: bool = False) -> keras.Model:
    """A copy of `model` for inference with every foldable batch norm merged into its
    convolution (and the ReLU after it into the convolution's activation). Outputs match
    `model(x, training=False)` to float rounding.

    With `logits=True` the `output_softmax` (when there is one) is left out too, for callers
    that only take the argmax: the softmax keeps the order of the classes at every pixel, and
    over a few classes TensorFlow's softmax cost 2-4% of the book model's evaluation (round 8)."""
    plan: dict = {}
    _plan(model, plan)
    softmax = output_softmax(model) if logits else None
    if softmax is not None:
        plan[id(softmax)] = ("drop",)
    originals: dict[str, layers.Layer] = {}

    def clone(layer):
        action = plan.get(id(layer))
        if action is None:
            config = _weights_in_compute_dtype(layer, layer.get_config())
            # a convolution with no batch norm after it gets the BiasAdd form too
            kind = FoldedConv2D if type(layer) is layers.Conv2D else layer.__class__
            new = kind.from_config(config)
        elif action[0] == "drop":
            new = FoldedAway(name=layer.name, dtype=layer.dtype_policy)
        elif action[0] == "affine":
            new = FoldedBatchNormalization(
                kernel_size=1, use_bias=True, name=layer.name,
                activation="relu" if action[1] is not None else None,
                dtype=layer.dtype_policy.compute_dtype)   # weights too, as for convolutions
        else:
            _, bn, relu, classifier = action
            config = {**_weights_in_compute_dtype(layer, layer.get_config()), "use_bias": True,
                      "activation": "relu" if relu is not None else None}
            config.pop("fast", None)
            if isinstance(layer, layers.Conv2DTranspose):
                new = FoldedConv2DTranspose.from_config(
                    {**config, "classes": classifier.filters if classifier else None})
            else:
                new = FoldedConv2D.from_config(config)
        originals[id(new)] = layer
        return new

    folded = keras.models.clone_model(model, clone_function=clone, recursive=True)
    _copy_weights(folded, originals, plan)
    return folded


def _copy_weights(model, originals: dict, plan: dict) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.Model) and id(layer) not in originals:
            _copy_weights(layer, originals, plan)
            continue
        source = originals.get(id(layer))
        if source is None:
            if isinstance(layer, keras.Model):
                _copy_weights(layer, originals, plan)
            continue
        action = plan.get(id(source))
        if action is None:
            if isinstance(layer, keras.Model):
                _copy_weights(layer, originals, plan)
            elif source.weights:
                layer.set_weights(source.get_weights())
        elif action[0] == "affine":
            layer.set_weights(_affine_weights(source))
        elif action[0] == "conv":
            classifier = action[3]
            extra = _classifier_weights(classifier) if classifier is not None else []
            layer.set_weights(_folded_weights(source, action[1]) + extra)


def count_batch_norms(model) -> int:
    """Number of BatchNormalization layers in `model`, nested models included."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_batch_norms(layer)
        elif isinstance(layer, layers.BatchNormalization):
            total += 1
    return total
