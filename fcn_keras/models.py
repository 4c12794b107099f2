"""The three segmentation heads: the book's FCN, FCN-32s and FCN-8s.

Each builder returns a `keras.Model` taking float RGB images in [0, 1] of any height and width
and returning per-pixel class probabilities of the same height and width: the input is padded
to the network stride and the output cropped back (see `PadToMultiple`).
"""

from __future__ import annotations

import keras
from keras import layers

from fcn_keras.backbones import Backbone, build_backbone
from fcn_keras.choices import ARCHS, check_context
from fcn_keras.errors import ConfigError
from fcn_keras.layers import (
    BilinearUpSampling2D,
    CropLike,
    PadToMultiple,
    bilinear_upsampling,
    context_module,
    conv_layer,
    set_fast_layers,
    tconv_layer,
)

# The stride of the deepest features of the skip-fusion heads (and of the book's backbones):
# they pad every input to a multiple of it.
NETWORK_STRIDE = 32


def build_fcn(input_shape, backbone, n_classes=4, head_filters=256):
    """The book's FCN (listing 12.3.2) on a pyramid backbone.

    Each pyramid level below the main one gets a Conv-BN-ReLU and bilinear upsampling to the main
    feature's size; all are concatenated, upsampled x4 by two stride-2 transposed-conv blocks and
    classified per pixel by a 1x1 transposed conv and a softmax. Layer names are the book's.
    """
    inputs = keras.Input(shape=input_shape)
    features = backbone(inputs)
    main_feature, features = features[0], features[1:]
    out_features = [main_feature]
    feature_size, size = 8, 2
    for feature in features:
        postfix = "fcn_" + str(feature_size)
        feature = conv_layer(feature, filters=head_filters, use_maxpool=False, postfix=postfix)
        feature = BilinearUpSampling2D(size=size, name=postfix + "_up2d")(feature)
        size *= 2
        feature_size *= 2
        out_features.append(feature)
    x = layers.Concatenate()(out_features) if len(out_features) > 1 else out_features[0]
    x = tconv_layer(x, head_filters, postfix="up_x2")
    x = tconv_layer(x, head_filters, postfix="up_x4")
    x = layers.Conv2DTranspose(filters=n_classes, kernel_size=1, strides=1, padding="same",
                               kernel_initializer="he_normal", name="pre_activation")(x)
    x = layers.Softmax(name="segmentation", dtype="float32")(x)
    return keras.Model(inputs, x, name="fcn")


def build_fcn32s(input_shape, backbone: Backbone, n_classes):
    """FCN-32s as in the d2l chapter: 1x1 conv (Xavier) to classes on the deepest feature, then
    one bilinear-initialised transposed conv (kernel 2s, stride s, padding s/2) back to the input.
    """
    stride = backbone.strides[-1]
    inputs = keras.Input(shape=input_shape)
    deepest = backbone.model(inputs)[-1]
    x = layers.Conv2D(n_classes, kernel_size=1, kernel_initializer="glorot_uniform",
                      name="score")(deepest)
    x = bilinear_upsampling(n_classes, stride, name=f"upsample_x{stride}")(x)
    x = layers.Softmax(name="segmentation", dtype="float32")(x)
    return keras.Model(inputs, x, name="fcn32s")


def build_fcn8s(input_shape, backbone: Backbone, n_classes, context=None):
    """FCN-8s skip fusion (Long et al.): scores at stride 32 are upsampled x2 and added to the
    stride-16 scores, upsampled x2 again and added to the stride-8 scores, then upsampled x8.
    All upsampling layers start as bilinear interpolation.
    """
    return build_skip_fcn(input_shape, backbone, n_classes, finest=8, context=context)


def build_fcn4s(input_shape, backbone: Backbone, n_classes, context=None):
    """FCN-8s with one more skip: the fused stride-8 scores are upsampled x2 and added to scores
    of the stride-4 features before the final x4. Thin things (poles, signs, people) are one
    or two positions wide at stride 8 and get lost there; the extra 1x1 conv costs little."""
    return build_skip_fcn(input_shape, backbone, n_classes, finest=4, context=context)


def build_skip_fcn(input_shape, backbone: Backbone, n_classes, finest=8, context=None):
    """Scores (1x1 conv) at strides 32, 16, ... `finest`, fused coarse to fine by bilinear-
    initialised x2 transposed convs and additions, then upsampled to the input. With
    `context="aspp"` the stride-32 features pass through `context_module` first."""
    inputs = keras.Input(shape=input_shape)
    features = backbone.model(inputs)
    strides = [s for s in (32, 16, 8, 4) if s >= finest]
    maps = {s: features[backbone.feature_index(s)] for s in strides}
    if context == "aspp":
        maps[32] = context_module(maps[32], maps[32].shape[-1])
    scores = {s: layers.Conv2D(n_classes, 1, kernel_initializer="glorot_uniform",
                               name=f"score_stride{s}")(maps[s]) for s in strides}
    x = scores[32]
    for coarse, fine in zip(strides, strides[1:]):
        x = bilinear_upsampling(n_classes, 2, name=f"upsample_{coarse}_to_{fine}")(x)
        x = layers.Add(name=f"fuse_stride{fine}")([x, scores[fine]])
    x = bilinear_upsampling(n_classes, finest, name=f"upsample_x{finest}")(x)
    x = layers.Softmax(name="segmentation", dtype="float32")(x)
    return keras.Model(inputs, x, name=f"fcn{finest}s")


def network_stride(arch: str, backbone: Backbone) -> int:
    """The factor every padded input size must be a multiple of."""
    if arch in ("fcn8s", "fcn4s"):
        backbone.feature_index(NETWORK_STRIDE)
        return NETWORK_STRIDE
    return backbone.strides[-1]


def set_bn_momentum(model, momentum: float) -> None:
    """Set the moving-average momentum of every BatchNormalization layer, nested ones included.

    Keras' default 0.99 (the book's) lets the inference-mode statistics lag the weights for
    hundreds of steps; 0.9 (PyTorch's default) suits short CPU trainings.
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            set_bn_momentum(layer, momentum)
        elif isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum


def with_any_size(core: keras.Model, stride: int, channels: int,
                  downsample: int = 1) -> keras.Model:
    """Wrap `core` so it accepts any height and width: pad to `stride`, run, crop back.

    With `downsample` F > 1 the core sees the image averaged over FxF blocks (F^2 times less
    compute per image, the same weights) and its class probabilities are upsampled back
    bilinearly to the input's size, the usual trade of detail for speed on large, smooth objects.
    """
    inputs = keras.Input(shape=(None, None, channels), name="image")
    x = PadToMultiple(stride * downsample, name="pad_to_stride")(inputs)
    if downsample > 1:
        x = keras.layers.AveragePooling2D(downsample, name="downsample_input")(x)
    x = core(x)
    if downsample > 1:
        x = BilinearUpSampling2D(downsample, name="upsample_output")(x)
    outputs = CropLike(name="crop_to_input")([x, inputs])
    return keras.Model(inputs, outputs, name=core.name)


def build_model(arch="fcn", n_classes=4, channels=3, backbone="resnet", layers_=3,
                resnet_version=2, n=6, backbone_weights=None, head_filters=256, l2=1e-4,
                any_size=True, pyramid_filters=512, bn_momentum=0.99, fast_layers=True,
                context="none", pyramid_blocks=0, downsample=1):
    """Build a segmentation model from the options `fcn.py` exposes.

    Returns `(model, backbone)`. With `any_size=True` (the default) the model takes images of any
    height and width; the core network itself stays exactly the book's (same layers and
    parameters), wrapped in a pad/crop pair. `fast_layers=False` makes the transposed convs and
    batch normalisations compute as Keras' own layers do (same weights and results, slower on
    CPU; see `fcn_keras.layers.set_fast_layers`).
    """
    check_context(arch, context)
    if arch not in ARCHS:
        raise ConfigError(f"unknown --arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if n_classes < 2:
        raise ConfigError(f"a segmentation model needs at least 2 classes, got {n_classes}")
    input_shape = (None, None, channels)
    bb = build_backbone(backbone, input_shape, n_layers=layers_, resnet_version=resnet_version,
                        n=n, weights=backbone_weights, l2=l2, pyramid_filters=pyramid_filters,
                        pyramid_blocks=pyramid_blocks)
    if arch == "fcn":
        core = build_fcn(input_shape, bb.model, n_classes, head_filters=head_filters)
    elif arch == "fcn32s":
        core = build_fcn32s(input_shape, bb, n_classes)
    elif arch == "fcn4s":
        core = build_fcn4s(input_shape, bb, n_classes, context=context)
    else:
        core = build_fcn8s(input_shape, bb, n_classes, context=context)
    set_bn_momentum(core, bn_momentum)
    set_fast_layers(core, fast_layers)
    if not any_size:
        if downsample != 1:
            raise ConfigError("--downsample needs the any-size wrapper (any_size=True)")
        return core, bb
    return with_any_size(core, network_stride(arch, bb), channels, downsample), bb
