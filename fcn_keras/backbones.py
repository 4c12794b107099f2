"""Backbones: the book's ResNet v1/v2 with its `features_pyramid`, and `keras.applications`
ResNet50V2 / VGG16.

Every backbone is a `keras.Model` whose outputs are a list of feature maps at strides
4, 8, 16, 32, ... (each half the size of the previous). The book's `build_fcn` takes the whole
list; FCN-32s takes the deepest map; FCN-8s the maps at strides 8, 16 and 32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers, regularizers

from fcn_keras.choices import BACKBONES
from fcn_keras.errors import ConfigError
from fcn_keras.layers import BatchNormalization, conv_layer


@dataclass
class Backbone:
    """A backbone model and the stride of each of its outputs."""

    model: keras.Model
    strides: list[int]

    def feature_index(self, stride: int) -> int:
        if stride not in self.strides:
            raise ConfigError(f"backbone {self.model.name} has no features at stride {stride} "
                              f"(it has {self.strides}); use more --layers or another backbone")
        return self.strides.index(stride)


def resnet_layer(inputs, num_filters=16, kernel_size=3, strides=1, activation="relu",
                 batch_normalization=True, conv_first=True, l2=1e-4):
    """The book's Conv2D-BN-Activation stack (or BN-Activation-Conv2D when `conv_first=False`)."""
    conv = layers.Conv2D(num_filters, kernel_size=kernel_size, strides=strides, padding="same",
                         kernel_initializer="he_normal",
                         kernel_regularizer=regularizers.L2(l2) if l2 else None)
    x = inputs
    if conv_first:
        x = conv(x)
        if batch_normalization:
            x = BatchNormalization()(x)
        if activation is not None:
            x = layers.Activation(activation)(x)
    else:
        if batch_normalization:
            x = BatchNormalization()(x)
        if activation is not None:
            x = layers.Activation(activation)(x)
        x = conv(x)
    return x


def features_pyramid(x, n_layers, n_filters=512, blocks=0):
    """The book's pyramid: the backbone output, an average pool, then stride-2 Conv-BN-ReLU levels.

    Returns `n_layers + 1` maps; with the ResNet's stride-4 output they sit at strides
    4, 8, 16, ... 2 ** (n_layers + 2). `blocks` > 0 (not in the book) adds that many residual
    blocks after each stride-2 level: the book's levels are one conv each, so the stride-16 and
    32 features see little of an object; there a block costs 1/256 (1/1024) of the same block
    on the full image, so depth comes almost free.
    """
    outputs = [x]
    conv = layers.AveragePooling2D(pool_size=2, name="pool1")(x)
    outputs.append(conv)
    prev_conv = conv
    for i in range(n_layers - 1):
        postfix = "_layer" + str(i + 2)
        conv = conv_layer(prev_conv, n_filters, kernel_size=3, strides=2, use_maxpool=False,
                          postfix=postfix)
        for block in range(blocks):
            conv = residual_block(conv, n_filters, name=f"block{block + 1}{postfix}")
        outputs.append(conv)
        prev_conv = conv
    return outputs


def residual_block(x, filters, name):
    """Two 3x3 Conv-BN (ReLU between) added to the input, then ReLU (ResNet v1's basic block)."""
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_conv1")(x)
    y = BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_conv2")(y)
    y = BatchNormalization(name=f"{name}_bn2")(y)
    x = layers.Add(name=f"{name}_add")([x, y])
    return layers.Activation("relu", name=f"{name}_out")(x)


def resnet_v1(input_shape, depth, n_layers=4, l2=1e-4, pyramid_filters=512, pyramid_blocks=0):
    """ResNet v1 (depth 6n+2): stacks of 2 x (3x3) Conv-BN-ReLU, as in the book's chapter 2."""
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ConfigError(f"ResNet v1 depth must be 6n+2 (e.g. 20, 32, 56), got {depth}")
    num_filters = 16
    num_res_blocks = (depth - 2) // 6
    inputs = keras.Input(shape=input_shape)
    x = resnet_layer(inputs=inputs, l2=l2)
    for stack in range(3):
        for res_block in range(num_res_blocks):
            strides = 2 if stack > 0 and res_block == 0 else 1
            y = resnet_layer(x, num_filters, strides=strides, l2=l2)
            y = resnet_layer(y, num_filters, activation=None, l2=l2)
            if stack > 0 and res_block == 0:
                x = resnet_layer(x, num_filters, kernel_size=1, strides=strides, activation=None,
                                 batch_normalization=False, l2=l2)
            x = layers.Add()([x, y])
            x = layers.Activation("relu")(x)
        num_filters *= 2
    outputs = features_pyramid(x, n_layers, pyramid_filters, pyramid_blocks)
    return keras.Model(inputs=inputs, outputs=outputs, name="ResNet%dv1" % depth)


def resnet_v2(input_shape, depth, n_layers=4, l2=1e-4, pyramid_filters=512, pyramid_blocks=0):
    """ResNet v2 (depth 9n+2): pre-activation bottleneck units, as in the book's chapter 2.

    Two of its three stages downsample, so its output (the pyramid's main feature) is at
    stride 4 with 256 channels.
    """
    if depth < 11 or (depth - 2) % 9 != 0:
        raise ConfigError(f"ResNet v2 depth must be 9n+2 (e.g. 29, 56, 110), got {depth}")
    num_filters_in = 16
    num_res_blocks = (depth - 2) // 9
    inputs = keras.Input(shape=input_shape)
    x = resnet_layer(inputs=inputs, num_filters=num_filters_in, conv_first=True, l2=l2)
    for stage in range(3):
        for res_block in range(num_res_blocks):
            activation, batch_normalization, strides = "relu", True, 1
            if stage == 0:
                num_filters_out = num_filters_in * 4
                if res_block == 0:
                    activation, batch_normalization = None, False
            else:
                num_filters_out = num_filters_in * 2
                if res_block == 0:
                    strides = 2
            y = resnet_layer(x, num_filters_in, kernel_size=1, strides=strides,
                             activation=activation, batch_normalization=batch_normalization,
                             conv_first=False, l2=l2)
            y = resnet_layer(y, num_filters_in, conv_first=False, l2=l2)
            y = resnet_layer(y, num_filters_out, kernel_size=1, conv_first=False, l2=l2)
            if res_block == 0:
                x = resnet_layer(x, num_filters_out, kernel_size=1, strides=strides,
                                 activation=None, batch_normalization=False, l2=l2)
            x = layers.Add()([x, y])
        num_filters_in = num_filters_out
    x = BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    outputs = features_pyramid(x, n_layers, pyramid_filters, pyramid_blocks)
    return keras.Model(inputs=inputs, outputs=outputs, name="ResNet%dv2" % depth)


def build_resnet(input_shape, n_layers=4, version=2, n=6, l2=1e-4, pyramid_filters=512,
                 pyramid_blocks=0):
    """The book's `build_resnet`: depth 6n+2 (v1) or 9n+2 (v2); default ResNet56v2."""
    if version not in (1, 2):
        raise ConfigError(f"--resnet-version must be 1 or 2, got {version}")
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if n_layers < 1:
        raise ConfigError(f"--layers must be at least 1, got {n_layers}")
    builder, depth = (resnet_v1, 6 * n + 2) if version == 1 else (resnet_v2, 9 * n + 2)
    return builder(input_shape=input_shape, depth=depth, n_layers=n_layers, l2=l2,
                   pyramid_filters=pyramid_filters, pyramid_blocks=pyramid_blocks)


# keras.applications backbones -------------------------------------------------------------

_APPLICATION_FEATURES = {
    # stride -> layer whose output is the last one at that stride
    "resnet50v2": {4: "conv2_block2_out", 8: "conv3_block3_out", 16: "conv4_block5_out",
                   32: "post_relu"},
    "vgg16": {4: "block2_pool", 8: "block3_pool", 16: "block4_pool", 32: "block5_pool"},
}


@keras.saving.register_keras_serializable(package="fcn_keras")
class ImagenetPreprocess(layers.Layer):
    """Map [0, 1] RGB images to what an ImageNet-trained application expects.

    `tf` mode (ResNet50V2): [-1, 1]. `caffe` mode (VGG16): BGR, 0-255, ImageNet mean removed.
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, inputs):
        if self.mode == "tf":
            return inputs * 2.0 - 1.0
        bgr = inputs[..., ::-1] * 255.0
        return bgr - keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


PROJECT_DIR = Path(__file__).resolve().parents[1]


def weights_file(weights: str, flag: str = "--backbone-weights") -> Path:
    """A `--backbone-weights` (or `--init-weights`) file: the path as given, else relative to
    the project (so a preset can name a file shipped in `weights/` from wherever fcn.py is
    run)."""
    path = Path(weights)
    if not path.is_file() and not path.is_absolute() and (PROJECT_DIR / path).is_file():
        return PROJECT_DIR / path
    if not path.is_file():
        raise ConfigError(f"{flag} {weights}: file not found")
    return path


def _application_weights(name: str, weights: str | None):
    """Turn `--backbone-weights` into the `weights=` argument, failing clearly when offline."""
    if weights in (None, "none", ""):
        return None
    if weights == "imagenet":
        return "imagenet"
    return str(weights_file(weights))


def build_application(name, input_shape, n_layers=3, weights=None):
    """ResNet50V2 or VGG16 from `keras.applications`, exposing features at strides 4..32."""
    constructors = {"resnet50v2": (keras.applications.ResNet50V2, "tf"),
                    "vgg16": (keras.applications.VGG16, "caffe")}
    constructor, mode = constructors[name]
    weights_arg = _application_weights(name, weights)
    try:
        base = constructor(include_top=False, weights=weights_arg, input_shape=input_shape)
    except Exception as exc:  # download failures surface as many exception types
        if weights_arg == "imagenet":
            raise ConfigError(
                f"could not load ImageNet weights for {name} ({type(exc).__name__}: {exc}). "
                "They are downloaded on first use and this machine may be offline: download "
                "them elsewhere and pass --backbone-weights PATH, or use --backbone-weights none"
            ) from None
        raise ConfigError(f"--backbone-weights {weights}: cannot load into {name}: {exc}") from None
    inputs = keras.Input(shape=input_shape)
    features = keras.Model(base.input, [base.get_layer(_APPLICATION_FEATURES[name][s]).output
                                        for s in (4, 8, 16, 32)], name=name + "_features")
    outputs = features(ImagenetPreprocess(mode, name="imagenet_preprocess")(inputs))
    strides = [4, 8, 16, 32][:max(2, n_layers + 1)]
    return keras.Model(inputs, outputs[:len(strides)], name=name), strides


def build_backbone(name, input_shape, n_layers=3, resnet_version=2, n=6, weights=None,
                   l2=1e-4, pyramid_filters=512, pyramid_blocks=0) -> Backbone:
    """Build the backbone chosen by `--backbone`, returning it with its feature strides."""
    if name == "resnet":
        if weights not in (None, "none", ""):
            if weights == "imagenet":
                raise ConfigError("the book's ResNet has no ImageNet weights; use "
                                  "--backbone resnet50v2 or vgg16 with --backbone-weights imagenet")
        model = build_resnet(input_shape, n_layers=n_layers, version=resnet_version, n=n, l2=l2,
                             pyramid_filters=pyramid_filters, pyramid_blocks=pyramid_blocks)
        if weights not in (None, "none", ""):
            path = weights_file(weights)
            try:
                model.load_weights(path)
            except Exception as exc:
                raise ConfigError(f"--backbone-weights {weights}: cannot load into "
                                  f"{model.name}: {exc}") from None
        return Backbone(model, [4 * 2 ** i for i in range(n_layers + 1)])
    if pyramid_blocks:
        raise ConfigError("--pyramid-blocks applies to the book's pyramid (--backbone resnet)")
    if name in _APPLICATION_FEATURES:
        model, strides = build_application(name, input_shape, n_layers, weights)
        return Backbone(model, strides)
    raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
