"""Building blocks shared by the models: the book's Conv-BN-ReLU helpers, the bilinear kernel of
the d2l chapter, and the two layers that let a fixed-stride network take any image size.

All layers use `keras.layers` / `keras.ops` only, so models run on any Keras 3 backend.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import layers, ops


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
    x = layers.BatchNormalization(name="bn_" + postfix)(x)
    x = layers.Activation("relu", name="relu_" + postfix)(x)
    if use_maxpool:
        x = layers.MaxPooling2D(name="pool" + postfix)(x)
    return x


def tconv_layer(inputs, filters=32, kernel_size=3, strides=2, postfix=None):
    """The book's Conv2DTranspose-BN-ReLU upsampling block."""
    x = layers.Conv2DTranspose(filters=filters, kernel_size=kernel_size, strides=strides,
                               padding="same", kernel_initializer="he_normal",
                               name="tconv_" + postfix)(inputs)
    x = layers.BatchNormalization(name="bn_" + postfix)(x)
    x = layers.Activation("relu", name="relu_" + postfix)(x)
    return x


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
