"""Building blocks shared by the models: the book's Conv-BN-ReLU helpers, the bilinear kernel of
the d2l chapter, and the two layers that let a fixed-stride network take any image size.

All layers use `keras.layers` / `keras.ops` only, so models run on any Keras 3 backend.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import layers, ops

from fcn_keras.remat import recomputing


def conv_layer(inputs, filters=32, kernel_size=3, strides=1, use_maxpool=True, postfix=None,
               activation=None):
    """The book's Conv2D-BN-ReLU block (optionally followed by max pooling).

    Layer names (`conv_<postfix>`, `bn_<postfix>`, `relu_<postfix>`) are the book's, so its
    weight files can be matched by name.
    """
    del activation  # kept for signature compatibility with the book; the block is always ReLU
    x = layers.Conv2D(filters=filters, kernel_size=kernel_size, strides=strides,
                      kernel_initializer="he_normal", name="conv_" + postfix,
                      padding="same")(inputs)
    x = BatchNormalization(name="bn_" + postfix)(x)
    x = layers.Activation("relu", name="relu_" + postfix)(x)
    if use_maxpool:
        x = layers.MaxPooling2D(name="pool" + postfix)(x)
    return x


def tconv_layer(inputs, filters=32, kernel_size=3, strides=2, postfix=None):
    """The book's Conv2DTranspose-BN-ReLU upsampling block (this module's faster forms of both
    layers; same weights and results as Keras' own)."""
    x = Conv2DTranspose(filters=filters, kernel_size=kernel_size, strides=strides,
                        padding="same", kernel_initializer="he_normal",
                        name="tconv_" + postfix)(inputs)
    x = BatchNormalization(name="bn_" + postfix)(x)
    x = layers.Activation("relu", name="relu_" + postfix)(x)
    return x


@keras.saving.register_keras_serializable(package="fcn_keras")
class Conv2DTranspose(layers.Conv2DTranspose):
    """Keras' `Conv2DTranspose`; with kernel 3, stride 2 and "same" padding computed as one
    matrix product and a sub-pixel shuffle.

    Output pixel (2m + r, 2n + c) of the transposed conv only sees the kernel taps of its phase
    (r, c): y[2m, 2n] = x[m, n] w[0, 0] + x[m, n-1] w[0, 2] + x[m-1, n] w[2, 0] +
    x[m-1, n-1] w[2, 2]; y[2m, 2n+1] = x[m, n] w[0, 1] + x[m-1, n] w[2, 1];
    y[2m+1, 2n] = x[m, n] w[1, 0] + x[m, n-1] w[1, 2]; y[2m+1, 2n+1] = x[m, n] w[1, 1].
    So one matrix product gives every tap's contribution at input resolution, x @ W with W of
    shape (in_channels, 9 * filters): the same multiply-adds as the transposed conv, as one large
    GEMM. Shifting taps by one row/column and summing them per phase, then interleaving the
    four phases (depth-to-space), gives the output. The gradients are GEMMs too; TensorFlow's
    own `conv2d_transpose` gradients (a stride-2 convolution and a stride-2 filter gradient)
    barely use the second core on a CPU without AMX. Its forward op is fast, though, so
    inference (`training` not true) keeps it, and so does training in bfloat16 on a CPU with
    AMX-BF16, where oneDNN runs the transposed conv and both its gradients on the AMX tiles
    and the shifts and copies of the sub-pixel form cost more than they save
    (`subpixel_training_pays`). With `lean` (set by `--remat`, `fcn_keras.remat`; on
    TensorFlow) the nine taps are nine products summed one at a time and the gradients are
    computed phase by phase (`_subpixel_tconv_lean`): the same multiply-adds without the
    (in, 9 * filters) product and its gradient held at once, at some cost in speed.

    Weights are the parent's (kernel (3, 3, filters, in_channels) and bias, same names), so
    weight files move freely between this layer and Keras' `Conv2DTranspose`. The class keeps
    the parent's name because `.weights.h5` files address layers by their class name. With
    `fast=False`, or any other kernel size, stride, padding or layout, it computes exactly as
    the parent does.
    """

    def __init__(self, *args, fast: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fast = bool(fast)
        self.lean = False   # a training setting (`--remat`), not part of the saved config

    def _subpixel(self) -> bool:
        return (self.fast and tuple(self.kernel_size) == (3, 3) and tuple(self.strides) == (2, 2)
                and self.padding == "same" and tuple(self.dilation_rate) == (1, 1)
                and self.output_padding is None and self.data_format == "channels_last")

    def call(self, inputs, training=None):
        if not (training and self._subpixel() and subpixel_training_pays(self.compute_dtype)):
            return super().call(inputs)   # inference: TF's own op is the faster one
        # kernel (3, 3, filters, in) -> (in, 9 * filters): tap (i, j) is column block 3i + j
        weights = ops.reshape(ops.transpose(self.kernel, (3, 0, 1, 2)), (-1, 9 * self.filters))
        if self.lean and keras.backend.backend() == "tensorflow":
            outputs = _subpixel_tconv_lean(inputs, weights)
        else:
            outputs = _subpixel_tconv(inputs, weights)
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            return self.activation(outputs)
        return outputs

    def get_config(self):
        return {**super().get_config(), "fast": self.fast}


@keras.saving.register_keras_serializable(package="fcn_keras")
class BatchNormalization(layers.BatchNormalization):
    """Keras' `BatchNormalization`, computed by TensorFlow's fused kernel on that backend.

    Keras 3 normalises with separate element-wise ops (moments, then scale and shift), in
    float32 even under mixed precision; TensorFlow's `FusedBatchNormV3` (what Keras 2 used)
    does it in one pass each way and reads bfloat16 directly: on CPU it takes about a quarter
    off a training step of the book's model. Same weights (the class keeps the parent's name for
    `.weights.h5` files), same outputs, gradients and moving statistics up to float rounding.
    Other backends, masks, renorm, synchronized statistics, a non-last axis or `fast=False`
    use the parent's computation.
    """

    def __init__(self, *args, fast: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fast = bool(fast)

    def _fused(self, inputs, mask) -> bool:
        return (self.fast and keras.backend.backend() == "tensorflow" and mask is None
                and not self.renorm and not self.synchronized and len(inputs.shape) == 4
                and self.axis in (-1, 3) and self.scale and self.center)

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, "float32") if inputs.dtype == tf.float16 else inputs
        gamma, beta = tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32")
        if training and self.trainable:   # (a rematerialised pass, see remat.py, keeps the
            # moving statistics: the forward pass already updated them)
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, is_training=True)
            # the fused kernel returns the unbiased variance; Keras averages the biased one
            count = tf.cast(tf.size(x) // tf.shape(x)[-1], "float32")
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
            momentum = self.momentum
            if recomputing():
                return tf.cast(outputs, self.compute_dtype)
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(self.moving_variance * momentum +
                                        variance * (1.0 - momentum))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon,
                is_training=False)
        return tf.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "fast": self.fast}


def all_layers(model):
    """Every layer of `model` that is not itself a model, nested models' included."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        else:
            yield layer


def set_fast_layers(model, enabled: bool) -> None:
    """Switch every `Conv2DTranspose` / `BatchNormalization` of this module in `model` (nested
    models included) between its fast form and Keras' own computation; takes effect at the
    next trace."""
    for layer in all_layers(model):
        if isinstance(layer, (Conv2DTranspose, BatchNormalization)):
            layer.fast = bool(enabled)


def subpixel_training_pays(compute_dtype: str) -> bool:
    """Whether `Conv2DTranspose` trains faster in its sub-pixel form than with the backend's own
    transposed conv, for layers computing in `compute_dtype` on this machine.

    Not where `computes_on_amx`: there the book's model trained 10-11% faster with
    TensorFlow's `conv2d_transpose` (benchmarks/README.md, round 7). Elsewhere (AVX-512 without
    AMX, float32, GPUs, other backends) the sub-pixel form stays, as measured in round 2.
    """
    return not computes_on_amx(compute_dtype)


def computes_on_amx(compute_dtype: str) -> bool:
    """True for bfloat16 layers that TensorFlow runs on a CPU with AMX-BF16 (no GPU visible):
    oneDNN's convolutions use the AMX tiles there, so arithmetic is cheap beside passes over
    memory, which is what the choices of `subpixel_training_pays` and
    `fcn_keras.fold.phases_pay` turn on."""
    return compute_dtype == "bfloat16" and _tensorflow_on_amx_cpu()


@functools.lru_cache(maxsize=1)
def _tensorflow_on_amx_cpu() -> bool:
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    from fcn_keras.runtime import cpu_flags
    return "amx_bf16" in cpu_flags() and not tf.config.list_physical_devices("GPU")


def _subpixel_tconv(inputs, weights):
    """The stride-2 "same" transposed conv with kernel 3 as one GEMM (see `Conv2DTranspose`):
    `weights` (in, 9 * filters), tap (i, j) in column block 3i + j."""
    taps = ops.split(ops.matmul(inputs, weights), 9, axis=-1)
    tap = lambda i, j: taps[3 * i + j]  # noqa: E731
    even_even = tap(0, 0) + shift_right(tap(0, 2)) + shift_down(tap(2, 0) +
                                                                shift_right(tap(2, 2)))
    even_odd = tap(0, 1) + shift_down(tap(2, 1))
    odd_even = tap(1, 0) + shift_right(tap(1, 2))
    return interleave_phases(even_even, even_odd, odd_even, tap(1, 1))


def _subpixel_tconv_serial(x, w):
    """`_subpixel_tconv` as nine products of the input and one kernel block each, summed into
    the four phases one at a time (TensorFlow): the nine taps (and the one GEMM's output they
    are split from), each as large as a phase, are never held together."""
    import tensorflow as tf
    filters, shape = w.shape[-1] // 9, tf.shape(x)
    flat = tf.reshape(x, [-1, x.shape[-1]])
    last = []

    def tap(i, j):
        with tf.control_dependencies(last):
            product = tf.matmul(flat, w[:, (3 * i + j) * filters:(3 * i + j + 1) * filters])
        return tf.reshape(product, [shape[0], shape[1], shape[2], filters])

    phases = []
    # phase (r, c): its taps and their shifts (down, right) by one input position
    for phase_taps in (((0, 0, 0, 0), (0, 2, 0, 1), (2, 0, 1, 0), (2, 2, 1, 1)),
                       ((0, 1, 0, 0), (2, 1, 1, 0)), ((1, 0, 0, 0), (1, 2, 0, 1)),
                       ((1, 1, 0, 0),)):
        total = None
        for i, j, down, right in phase_taps:
            term = tap(i, j)
            term = shift_right(term) if right else term
            term = shift_down(term) if down else term
            total = term if total is None else total + term
            last = [total]
        phases.append(total)
    return interleave_phases(*phases)


def _subpixel_tconv_lean(inputs, weights):
    """`_subpixel_tconv` with its gradients computed phase by phase (TensorFlow).

    Left to autodiff, the backward pass of the one GEMM holds the nine taps' gradients and
    their concatenation at once, each as large as the layer's output: at the book head's last
    block (256 channels at full resolution) that was the peak of a whole training step.
    Here each tap's gradient is the output gradient's phase, shifted, and the shift is moved
    onto the small side of each product: kernel gradients are shifted inputs (transposed) times
    phases, the input gradient a sum of phases times kernel blocks, shifted back. Same GEMM
    work, no tensor larger than the output gradient beside it.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def tconv(x, w):
        def grad(upstream):
            shape, x_shape = tf.shape(upstream), tf.shape(x)
            channels_in, filters = x.shape[-1], upstream.shape[-1]
            # (B, 2H, 2W, F) -> phase (r, c): the output pixels (2m + r, 2n + c), flattened
            grid = tf.reshape(upstream, [shape[0], shape[1] // 2, 2, shape[2] // 2, 2, filters])
            phase = {(r, c): tf.reshape(grid[:, :, r, :, c, :], [-1, filters])
                     for r in (0, 1) for c in (0, 1)}
            # kernel row (column) i feeds the output's even rows for i = 0, 2 (2: from the
            # input row above, so shifted by one), its odd rows for i = 1
            parity, behind = {0: 0, 1: 1, 2: 0}, {0: 0, 1: 0, 2: 1}
            taps = sorted(((behind[i], behind[j]), i, j) for i in range(3) for j in range(3))
            kernel_grads, dx, last = {}, None, []
            # one product at a time (each waits for the one before): TensorFlow would
            # otherwise run all the ready ones first and hold their outputs together
            for moved in ((0, 0), (0, 1), (1, 0), (1, 1)):
                with tf.control_dependencies(last):
                    x_moved = shift_right(x) if moved[1] else x
                    x_moved = tf.reshape(shift_down(x_moved) if moved[0] else x_moved,
                                         [-1, channels_in])
                term = None
                for _, i, j in (t for t in taps if t[0] == moved):
                    d = phase[(parity[i], parity[j])]
                    with tf.control_dependencies(last):
                        # d(kernel block (i, j)) = moved input^T @ phase
                        kernel_grads[(i, j)] = tf.matmul(x_moved, d, transpose_a=True)
                    with tf.control_dependencies([kernel_grads[(i, j)]]):
                        block = w[:, (3 * i + j) * filters:(3 * i + j + 1) * filters]
                        product = tf.matmul(d, block, transpose_b=True)
                    term = product if term is None else term + product
                    last = [term]
                # the input gradient, moved back: phase @ block^T, shifted up / left
                term = tf.reshape(term, x_shape)
                term = shift_up(term) if moved[0] else term
                term = shift_left(term) if moved[1] else term
                dx = term if dx is None else dx + term
                last = [dx]
            return dx, tf.concat([kernel_grads[(i, j)] for i in range(3) for j in range(3)],
                                 axis=-1)
        return _subpixel_tconv_serial(x, w), grad
    return tconv(inputs, weights)


def shift_down(tensor):
    """`tensor[:, m - 1]` at row m, zeros in row 0 (pad and slice: cheap gradients)."""
    padded = ops.pad(tensor, [[0, 0], [1, 0], [0, 0], [0, 0]])
    return ops.slice(padded, [0, 0, 0, 0], ops.shape(tensor))


def shift_up(tensor):
    """`tensor[:, m + 1]` at row m, zeros in the last row."""
    padded = ops.pad(tensor, [[0, 0], [0, 1], [0, 0], [0, 0]])
    return ops.slice(padded, [0, 1, 0, 0], ops.shape(tensor))


def shift_left(tensor):
    """`tensor[:, :, n + 1]` at column n, zeros in the last column."""
    padded = ops.pad(tensor, [[0, 0], [0, 0], [0, 1], [0, 0]])
    return ops.slice(padded, [0, 0, 1, 0], ops.shape(tensor))


def shift_right(tensor):
    """`tensor[:, :, n - 1]` at column n, zeros in column 0."""
    padded = ops.pad(tensor, [[0, 0], [0, 0], [1, 0], [0, 0]])
    return ops.slice(padded, [0, 0, 0, 0], ops.shape(tensor))


def interleave_phases(even_even, even_odd, odd_even, odd_odd):
    """Four (B, H, W, C) phases -> (B, 2H, 2W, C) with phase (r, c) at pixels (2m + r, 2n + c)."""
    shape = ops.shape(even_even)
    batch, height, width, channels = shape[0], shape[1], shape[2], even_even.shape[-1]
    even = ops.reshape(ops.stack([even_even, even_odd], axis=3),
                       (batch, height, 2 * width, channels))
    odd = ops.reshape(ops.stack([odd_even, odd_odd], axis=3), (batch, height, 2 * width, channels))
    return ops.reshape(ops.stack([even, odd], axis=2), (batch, 2 * height, 2 * width, channels))


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> np.ndarray:
    """The d2l `bilinear_kernel`, laid out for `Conv2DTranspose`: (k, k, out_channels, in_channels).

    A transposed conv with kernel 2s, stride s and this kernel upsamples each channel by s with
    bilinear interpolation (channel i feeds only output channel i).
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = np.arange(kernel_size, dtype=np.float64)
    filt_1d = 1 - np.abs(og - center) / factor
    filt = np.outer(filt_1d, filt_1d)
    weight = np.zeros((kernel_size, kernel_size, out_channels, in_channels), dtype=np.float32)
    for channel in range(min(in_channels, out_channels)):
        weight[:, :, channel, channel] = filt
    return weight


@keras.saving.register_keras_serializable(package="fcn_keras")
class BilinearInitializer(keras.initializers.Initializer):
    """Initialise a `Conv2DTranspose` kernel (k, k, out, in) as bilinear upsampling."""

    def __call__(self, shape, dtype=None):
        kernel_h, kernel_w, out_channels, in_channels = shape
        if kernel_h != kernel_w:
            raise ValueError(f"bilinear kernel must be square, got {shape}")
        return ops.convert_to_tensor(bilinear_kernel(in_channels, out_channels, kernel_h),
                                     dtype=dtype or "float32")

    def get_config(self):
        return {}


def bilinear_upsampling(filters: int, factor: int, name: str, use_bias: bool = True):
    """A transposed conv of kernel 2f, stride f, padding f/2 initialised as bilinear upsampling.

    Keras' `padding="same"` crops (k - s) / 2 = f/2 on each side, the same as the d2l chapter's
    `ConvTranspose2d(kernel_size=2f, padding=f/2, stride=f)`.
    """
    return layers.Conv2DTranspose(filters, kernel_size=2 * factor, strides=factor, padding="same",
                                  use_bias=use_bias, kernel_initializer=BilinearInitializer(),
                                  name=name)


@keras.saving.register_keras_serializable(package="fcn_keras")
class BilinearUpSampling2D(layers.UpSampling2D):
    """`UpSampling2D(interpolation="bilinear")` that also works when height and width are only
    known at run time (a SavedModel taking any image size).

    `keras.ops.image.resize` checks the target size in Python, which fails on symbolic sizes
    in a TensorFlow graph; on that backend the same half-pixel bilinear resize is called directly.
    Other backends trace with static shapes and use the Keras layer unchanged.
    """

    def __init__(self, size=2, **kwargs):
        kwargs["interpolation"] = "bilinear"
        super().__init__(size=size, **kwargs)

    def call(self, inputs):
        if keras.backend.backend() != "tensorflow" or self.data_format != "channels_last":
            return super().call(inputs)
        import tensorflow as tf
        shape = tf.shape(inputs)
        size = tf.stack([shape[1] * self.size[0], shape[2] * self.size[1]])
        return tf.cast(tf.image.resize(inputs, size, method="bilinear"), inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config.pop("interpolation", None)
        return config


@keras.saving.register_keras_serializable(package="fcn_keras")
class PadToMultiple(layers.Layer):
    """Zero-pad height and width at the bottom/right up to a multiple of `multiple`.

    The book's pyramid rounds sizes down (average pooling) and up (strided convs), so a size that
    is not a multiple of the network stride makes the upsampled levels disagree. Padding first and
    cropping back (`CropLike`) gives every input size a valid network.
    """

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, inputs):
        height, width = ops.shape(inputs)[1], ops.shape(inputs)[2]
        pad_h = (-height) % self.multiple
        pad_w = (-width) % self.multiple
        return ops.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def compute_output_shape(self, input_shape):
        def rounded(size):
            return None if size is None else -(-size // self.multiple) * self.multiple
        return (input_shape[0], rounded(input_shape[1]), rounded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="fcn_keras")
class CropLike(layers.Layer):
    """Crop `inputs[0]` to the height and width of `inputs[1]` (undoes `PadToMultiple`)."""

    def call(self, inputs):
        tensor, reference = inputs
        height, width = ops.shape(reference)[1], ops.shape(reference)[2]
        return tensor[:, :height, :width, :]

    def compute_output_shape(self, input_shapes):
        tensor_shape, reference_shape = input_shapes
        return (tensor_shape[0], reference_shape[1], reference_shape[2], tensor_shape[3])


@keras.saving.register_keras_serializable(package="fcn_keras")
class BroadcastLike(layers.Layer):
    """Repeat a (B, 1, 1, C) tensor over the height and width of `inputs[1]` (any size)."""

    def call(self, inputs):
        pooled, reference = inputs
        return pooled + ops.zeros_like(reference[..., :1], dtype=pooled.dtype)

    def compute_output_shape(self, input_shapes):
        pooled_shape, reference_shape = input_shapes
        return (*reference_shape[:3], pooled_shape[3])


def context_module(inputs, filters: int, name: str = "context"):
    """Atrous spatial pyramid pooling, light (DeepLab's ASPP): a 1x1 conv, 3x3 convs dilated 2
    and 4, and the image-level mean, concatenated and mixed by a 1x1 conv, each with BN + ReLU.

    On the stride-32 features a 3x3 conv sees 3 positions; the dilated ones and the mean let
    each position see the whole object and its surroundings (a can beside a bottle, a pole
    against the sky) for little compute, since the map is 1/1024 of the image.
    """
    def conv_bn_relu(x, kernel_size, dilation, suffix):
        x = layers.Conv2D(filters, kernel_size, padding="same", dilation_rate=dilation,
                          use_bias=False, kernel_initializer="he_normal",
                          name=f"{name}_{suffix}")(x)
        x = BatchNormalization(name=f"{name}_{suffix}_bn")(x)
        return layers.Activation("relu", name=f"{name}_{suffix}_relu")(x)

    branches = [conv_bn_relu(inputs, 1, 1, "1x1"), conv_bn_relu(inputs, 3, 2, "rate2"),
                conv_bn_relu(inputs, 3, 4, "rate4")]
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_mean")(inputs)
    pooled = layers.Conv2D(filters, 1, activation="relu", kernel_initializer="he_normal",
                           name=f"{name}_mean_conv")(pooled)
    branches.append(BroadcastLike(name=f"{name}_mean_broadcast")([pooled, inputs]))
    x = layers.Concatenate(name=f"{name}_concat")(branches)
    return conv_bn_relu(x, 1, 1, "project")
