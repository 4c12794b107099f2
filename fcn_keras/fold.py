"""Batch norm folded into the preceding convolution, for inference.

At inference a batch normalisation is a fixed per-channel affine map,
y = gamma * (x - mean) / sqrt(var + eps) + beta, so after a convolution it can be merged into
the convolution's kernel and bias: kernel' = kernel * s, bias' = (bias - mean) * s + beta with
s = gamma / sqrt(var + eps). The folded model skips a pass over every such feature map, and
a Conv2D followed directly by BiasAdd and ReLU is what TensorFlow's graph optimiser fuses into
one oneDNN kernel (`_FusedConv2D`); a ReLU right after the folded batch norm is folded too.

`fold_batch_norm(model)` returns a new model (the original is untouched; its weights are read
once, so fold again after the weights change). Only Conv-BN pairs where the convolution feeds
nothing but the batch norm are folded: the book's ResNet v2 units are pre-activation
(BN-ReLU-Conv, nothing to fold into), its Conv-BN-ReLU blocks (the stem, the pyramid levels,
the FCN head, the transposed-conv blocks, the residual blocks and context module) are folded.
Layer names are kept, so the folded model's structure reads like the original's.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from fcn_keras.layers import Conv2DTranspose, computes_on_amx


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
    """This package's `Conv2DTranspose` at inference, bias added by `BiasAdd`.

    TensorFlow fuses no bias or ReLU into its transposed conv, so both are a pass each over
    the output. Where that output is large beside the work (no more input channels than
    filters, bfloat16 on a CPU with AMX: `rows_pay`), the stride-2 kernel-3 "same" case is
    computed instead as two ordinary convolutions on the input, which TensorFlow fuses with
    their bias and ReLU: the even output rows come from input rows m - 1 and m through kernel
    rows 2 and 0, the odd rows from row m through kernel row 1, and along a row the two output
    columns of input column n are 2F output channels of one convolution (the odd column never
    uses column n - 1, a zero tap). One stack interleaves the rows. A third more multiply-adds
    (the zero taps), two fewer passes over the output: the book head's last block took 27%
    less time this way (benchmarks/README.md, round 7).
    """

    def call(self, inputs, training=None):
        if keras.backend.backend() != "tensorflow" or self.data_format != "channels_last":
            return super().call(inputs, training=training)
        import tensorflow as tf
        if self._subpixel() and rows_pay(self.compute_dtype, inputs.shape[-1], self.filters):
            return self._rows(inputs)
        outputs = keras.ops.conv_transpose(inputs, self.kernel, strides=self.strides,
                                           padding=self.padding,
                                           output_padding=self.output_padding,
                                           data_format=self.data_format,
                                           dilation_rate=self.dilation_rate)
        outputs = tf.nn.bias_add(outputs, tf.cast(self.bias, self.compute_dtype))
        return outputs if self.activation is None else self.activation(outputs)

    def _rows(self, inputs):
        """The rows form (see the class): two convolutions with bias and activation, one stack."""
        import tensorflow as tf
        even_kernel, odd_kernel = row_kernels(tf.cast(self.kernel, self.compute_dtype))
        bias = tf.cast(self.bias, self.compute_dtype)
        bias = tf.concat([bias, bias], axis=0)
        padded = tf.pad(inputs, [[0, 0], [1, 0], [1, 0], [0, 0]])   # row m - 1, column n - 1

        def rows(window, kernel):
            outputs = tf.nn.bias_add(tf.nn.conv2d(window, kernel, 1, "VALID"), bias)
            return outputs if self.activation is None else self.activation(outputs)

        even, odd = rows(padded, even_kernel), rows(padded[:, 1:], odd_kernel)
        shape = tf.shape(inputs)
        return tf.reshape(tf.stack([even, odd], axis=2),
                          [shape[0], 2 * shape[1], 2 * shape[2], self.filters])


def rows_pay(compute_dtype: str, in_channels: int | None, filters: int) -> bool:
    """Whether `FoldedConv2DTranspose` computes its rows form: in bfloat16 on a CPU with
    AMX-BF16 (convolutions cheap beside passes over memory), for no more input channels than
    filters. Measured on the book's head (round 7): 256 -> 256 channels 116 -> 85 ms, 1024 -> 256
    48 -> 70 ms (its output is a quarter as large beside the same multiply-adds)."""
    return in_channels is not None and in_channels <= filters and computes_on_amx(compute_dtype)


def row_kernels(kernel):
    """A transposed conv's kernel (3, 3, F, C) as the rows form's two convolution kernels:
    even rows (2, 2, C, 2F) over input rows (m - 1, m) and columns (n - 1, n), output
    channels [column 2n | column 2n + 1]; odd rows (1, 2, C, 2F) over row m."""
    import tensorflow as tf
    taps = tf.transpose(kernel, (0, 1, 3, 2))   # taps[i, j]: (C, F), input -> output
    zero = tf.zeros_like(taps[0, 0])

    def window_row(i):   # kernel row i over columns (n - 1, n) -> [even column | odd column]
        return tf.stack([tf.concat([taps[i, 2], zero], -1),
                         tf.concat([taps[i, 0], taps[i, 1]], -1)])

    return tf.stack([window_row(2), window_row(0)]), window_row(1)[None]


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


def _plan(model, plan: dict) -> None:
    """Fill `plan` (id(layer) -> ("conv", bn, relu) | ("drop",)) for `model`, nested models
    included."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _plan(layer, plan)
            continue
        conv = _foldable(layer)
        if conv is None:
            continue
        relu = _relu_after(layer)
        plan[id(conv)] = ("conv", layer, relu)
        plan[id(layer)] = ("drop",)
        if relu is not None:
            plan[id(relu)] = ("drop",)


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


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """A copy of `model` for inference with every foldable batch norm merged into its
    convolution (and the ReLU after it into the convolution's activation). Outputs match
    `model(x, training=False)` to float rounding."""
    plan: dict = {}
    _plan(model, plan)
    originals: dict[str, layers.Layer] = {}

    def clone(layer):
        action = plan.get(id(layer))
        if action is None:
            new = layer.__class__.from_config(layer.get_config())
        elif action[0] == "drop":
            new = FoldedAway(name=layer.name, dtype=layer.dtype_policy)
        else:
            _, bn, relu = action
            config = {**layer.get_config(), "use_bias": True,
                      "activation": "relu" if relu is not None else None}
            cls = FoldedConv2DTranspose if isinstance(layer, layers.Conv2DTranspose) \
                else FoldedConv2D
            config.pop("fast", None)
            new = cls.from_config(config)
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
        elif action[0] == "conv":
            layer.set_weights(_folded_weights(source, action[1]))


def count_batch_norms(model) -> int:
    """Number of BatchNormalization layers in `model`, nested models included."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_batch_norms(layer)
        elif isinstance(layer, layers.BatchNormalization):
            total += 1
    return total
