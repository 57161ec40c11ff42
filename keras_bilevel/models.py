"""Reference binary-weight models built from the public API (Larq layers + AdaSTE).

As in the paper's setup: every weight binary (first and last layer included), ReLU
activations in full precision, BatchNorm without affine parameters by default, and a
final BatchNorm on the logits. The kernel quantizer and initializer are arguments, so
the same builder gives the STE baseline with `kernel_quantizer="ste_sign"`.

The convolutional builders (`vgg16`, `resnet18`, `vgg_small`) are the CIFAR forms: 32x32x3
inputs by default, 3x3 convolutions, and a `width` multiplier of every layer's number of
filters and units for small variants.
"""

import keras_bilevel._keras2  # noqa: F401  (Keras 2 mode before TensorFlow)

import math
import numbers

import larq
import tensorflow as tf

__all__ = ["binary_mlp", "resnet18", "vgg16", "vgg_small"]

# "M" is a 2x2 max-pooling; a number is a binary 3x3 convolution with that many filters.
_VGG16_CONVS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                512, 512, 512, "M", 512, 512, 512, "M")
_VGG_SMALL_CONVS = (128, 128, "M", 256, 256, "M", 512, 512, "M")
_VGG_SMALL_DENSE = (1024, 1024)
# (filters, number of BasicBlocks) per stage; stages 2-4 start with stride 2.
_RESNET18_STAGES = ((64, 2), (128, 2), (256, 2), (512, 2))


def binary_mlp(
    input_shape=(784,),
    hidden_units=1024,
    depth=3,
    classes=10,
    kernel_quantizer="ada_ste",
    kernel_initializer="glorot_uniform",
    kernel_constraint=None,
    batch_norm_affine=False,
    name="binary_mlp",
):
    """The BinaryConnect MLP: `depth` binary hidden layers of `hidden_units`, logits out.

    `kernel_quantizer`, `kernel_initializer` and `kernel_constraint` may be identifiers
    (a fresh object is made for every layer) or zero-argument factories.

    !!! example
        ```python
        model = binary_mlp((64,), hidden_units=256)                 # AdaSTE
        baseline = binary_mlp((64,), kernel_quantizer="ste_sign",
                              kernel_constraint="weight_clip")        # STE
        ```
    """
    if depth < 0 or hidden_units < 1 or classes < 1:
        raise ValueError(
            f"binary_mlp: need depth >= 0, hidden_units >= 1 and classes >= 1, got "
            f"depth={depth!r}, hidden_units={hidden_units!r}, classes={classes!r}."
        )

    binary = _BinaryLayers(kernel_quantizer, kernel_initializer, kernel_constraint,
                           batch_norm_affine)
    inputs = tf.keras.Input(input_shape)
    x = tf.keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    for _ in range(depth):
        x = tf.keras.layers.ReLU()(binary.dense_bn(x, hidden_units))
    return tf.keras.Model(inputs, binary.dense_bn(x, classes), name=name)


def _fresh(spec):
    """A new object per layer from a factory; identifiers are passed through."""
    is_factory = callable(spec) and not isinstance(spec, (type, tf.Module))
    return spec() if is_factory and not hasattr(spec, "get_config") else spec


def vgg16(
    input_shape=(32, 32, 3),
    classes=10,
    width=1.0,
    kernel_quantizer="ada_ste",
    kernel_initializer="glorot_uniform",
    kernel_constraint=None,
    batch_norm_affine=False,
    name="vgg16",
):
    """VGG-16 in its CIFAR form, every weight binary, logits out.

    Thirteen binary 3x3 convolutions (64, 64, M, 128, 128, M, 256, 256, 256, M,
    512, 512, 512, M, 512, 512, 512, M; "M" a 2x2 max-pooling), each followed by
    BatchNorm and a full-precision ReLU, then the common CIFAR head: flatten (1x1x512 for
    32x32 inputs) and one binary dense layer to `classes`, followed by a BatchNorm on the
    logits (no softmax). No biases anywhere: BatchNorm follows every binary layer.

    Parameters at default settings: 14,724,052 in all, of which 14,715,584 trainable
    (the latent binary kernels: 14,710,464 in the convolutions, 5,120 in the dense layer)
    and 8,468 BatchNorm moving statistics (2 per channel); AdaSTE's `mu` is training
    state, not a parameter.

    `kernel_quantizer`, `kernel_initializer` and `kernel_constraint` may be identifiers
    (a fresh object is made for every layer) or zero-argument factories, as in
    `binary_mlp`.

    !!! example
        ```python
        model = vgg16()                                              # AdaSTE
        baseline = vgg16(kernel_quantizer="ste_sign",
                         kernel_constraint="weight_clip")            # STE
        ```

    # Arguments
        input_shape: (height, width, channels), positive ints; height and width >= 32.
        classes: number of logits (>= 1).
        width: multiplier (> 0) of every layer's number of filters, rounded, at least 1.
        kernel_quantizer, kernel_initializer, kernel_constraint: of every binary layer.
        batch_norm_affine: give the BatchNorm layers a trainable scale and offset.
        name: the model's name.
    """
    _check_image_model("vgg16", input_shape, classes, width, pools=5)
    binary = _BinaryLayers(kernel_quantizer, kernel_initializer, kernel_constraint,
                           batch_norm_affine)
    inputs = tf.keras.Input(input_shape)
    x = _vgg_features(binary, inputs, _VGG16_CONVS, width)
    x = tf.keras.layers.Flatten()(x)
    outputs = binary.dense_bn(x, classes)
    return tf.keras.Model(inputs, outputs, name=name)


def vgg_small(
    input_shape=(32, 32, 3),
    classes=10,
    width=1.0,
    kernel_quantizer="ada_ste",
    kernel_initializer="glorot_uniform",
    kernel_constraint=None,
    batch_norm_affine=False,
    name="vgg_small",
):
    """BinaryConnect's CIFAR network, 2x128C3-MP-2x256C3-MP-2x512C3-MP-2x1024FC-classes.

    Six binary 3x3 convolutions (128, 128, M, 256, 256, M, 512, 512, M; "M" a 2x2
    max-pooling), flatten (4x4x512 for 32x32 inputs), two binary dense layers of 1024
    units and a binary dense layer to `classes`. Every binary layer is followed by
    BatchNorm, and every hidden one by a full-precision ReLU (pooling after the ReLU);
    the last BatchNorm is on the logits (no softmax). No biases anywhere.

    Parameters at default settings: 14,029,716 in all, of which 14,022,016 trainable
    (the latent binary kernels: 4,574,592 in the convolutions, 9,447,424 in the dense
    layers) and 7,700 BatchNorm moving statistics (2 per channel); AdaSTE's `mu` is
    training state, not a parameter.

    `kernel_quantizer`, `kernel_initializer` and `kernel_constraint` may be identifiers
    (a fresh object is made for every layer) or zero-argument factories, as in
    `binary_mlp`.

    !!! example
        ```python
        model = vgg_small()                                          # AdaSTE
        baseline = vgg_small(kernel_quantizer="ste_sign",
                             kernel_constraint="weight_clip")        # STE
        tiny = vgg_small(width=0.125)            # 16-16-M-32-32-M-64-64-M-128-128-10
        ```

    # Arguments
        input_shape: (height, width, channels), positive ints; height and width >= 8.
        classes: number of logits (>= 1).
        width: multiplier (> 0) of every layer's number of filters and hidden units,
            rounded, at least 1.
        kernel_quantizer, kernel_initializer, kernel_constraint: of every binary layer.
        batch_norm_affine: give the BatchNorm layers a trainable scale and offset.
        name: the model's name.
    """
    _check_image_model("vgg_small", input_shape, classes, width, pools=3)
    binary = _BinaryLayers(kernel_quantizer, kernel_initializer, kernel_constraint,
                           batch_norm_affine)
    inputs = tf.keras.Input(input_shape)
    x = _vgg_features(binary, inputs, _VGG_SMALL_CONVS, width)
    x = tf.keras.layers.Flatten()(x)
    for units in _VGG_SMALL_DENSE:
        x = tf.keras.layers.ReLU()(binary.dense_bn(x, _scaled(units, width)))
    outputs = binary.dense_bn(x, classes)
    return tf.keras.Model(inputs, outputs, name=name)


def resnet18(
    input_shape=(32, 32, 3),
    classes=10,
    width=1.0,
    kernel_quantizer="ada_ste",
    kernel_initializer="glorot_uniform",
    kernel_constraint=None,
    batch_norm_affine=False,
    name="resnet18",
):
    """ResNet-18 in its CIFAR form, every weight binary (shortcuts included), logits out.

    A binary 3x3 stem convolution with 64 filters (no max-pooling), four stages of two
    BasicBlocks with 64, 128, 256 and 512 filters (stride 2 in the first block of stages
    2-4), global average pooling and a binary dense layer to `classes`. A BasicBlock is
    conv3x3-BN-ReLU-conv3x3-BN, added to the shortcut, then ReLU; the shortcut is the
    identity, or a binary 1x1 convolution with BatchNorm where the shape changes. Every
    binary layer is followed by BatchNorm, the last one on the logits (no softmax); ReLUs
    are full precision; no biases anywhere.

    Parameters at default settings: 11,173,972 in all, of which 11,164,352 trainable
    (the latent binary kernels: 11,159,232 in the convolutions, 5,120 in the dense
    layer) and 9,620 BatchNorm moving statistics (2 per channel); AdaSTE's `mu` is
    training state, not a parameter.

    `kernel_quantizer`, `kernel_initializer` and `kernel_constraint` may be identifiers
    (a fresh object is made for every layer) or zero-argument factories, as in
    `binary_mlp`.

    !!! example
        ```python
        model = resnet18(classes=100)                                # AdaSTE
        baseline = resnet18(kernel_quantizer="ste_sign",
                            kernel_constraint="weight_clip")         # STE
        ```

    # Arguments
        input_shape: (height, width, channels), positive ints.
        classes: number of logits (>= 1).
        width: multiplier (> 0) of every layer's number of filters, rounded, at least 1.
        kernel_quantizer, kernel_initializer, kernel_constraint: of every binary layer.
        batch_norm_affine: give the BatchNorm layers a trainable scale and offset.
        name: the model's name.
    """
    _check_image_model("resnet18", input_shape, classes, width, pools=0)
    binary = _BinaryLayers(kernel_quantizer, kernel_initializer, kernel_constraint,
                           batch_norm_affine)
    inputs = tf.keras.Input(input_shape)
    x = tf.keras.layers.ReLU()(binary.conv_bn(inputs, _scaled(64, width)))
    for stage, (filters, blocks) in enumerate(_RESNET18_STAGES):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(binary, x, _scaled(filters, width), strides)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = binary.dense_bn(x, classes)
    return tf.keras.Model(inputs, outputs, name=name)


class _BinaryLayers:
    """Makes binary layers, each followed by BatchNorm, with fresh per-layer objects."""

    def __init__(self, kernel_quantizer, kernel_initializer, kernel_constraint,
                 batch_norm_affine):
        self.kernel_quantizer = kernel_quantizer
        self.kernel_initializer = kernel_initializer
        self.kernel_constraint = kernel_constraint
        self.batch_norm_affine = batch_norm_affine

    def _kernel_args(self):
        return dict(
            kernel_quantizer=_fresh(self.kernel_quantizer),
            kernel_initializer=_fresh(self.kernel_initializer),
            kernel_constraint=_fresh(self.kernel_constraint),
            use_bias=False,
        )

    def _batch_norm(self, x):
        affine = self.batch_norm_affine
        return tf.keras.layers.BatchNormalization(center=affine, scale=affine)(x)

    def conv_bn(self, x, filters, kernel_size=3, strides=1):
        """A binary convolution ("same" padding, no input quantizer), then BatchNorm."""
        x = larq.layers.QuantConv2D(filters, kernel_size, strides=strides, padding="same",
                                    **self._kernel_args())(x)
        return self._batch_norm(x)

    def dense_bn(self, x, units):
        """A binary dense layer (no input quantizer), then BatchNorm."""
        return self._batch_norm(larq.layers.QuantDense(units, **self._kernel_args())(x))


def _vgg_features(binary, x, layers, width):
    """conv-BN-ReLU for every number in `layers`, a 2x2 max-pooling for every "M"."""
    for layer in layers:
        if layer == "M":
            x = tf.keras.layers.MaxPooling2D(2)(x)
        else:
            x = tf.keras.layers.ReLU()(binary.conv_bn(x, _scaled(layer, width)))
    return x


def _basic_block(binary, x, filters, strides):
    """ResNet's BasicBlock; a binary 1x1 convolution on the shortcut if the shape changes."""
    residual = tf.keras.layers.ReLU()(binary.conv_bn(x, filters, strides=strides))
    residual = binary.conv_bn(residual, filters)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = binary.conv_bn(x, filters, kernel_size=1, strides=strides)
    return tf.keras.layers.ReLU()(tf.keras.layers.Add()([residual, shortcut]))


def _scaled(count, width):
    """`count` filters or units scaled by `width`, rounded, at least 1."""
    return max(1, round(count * width))


def _is_positive_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _check_image_model(builder, input_shape, classes, width, pools):
    """ValueError naming the argument, the value and what is allowed."""
    min_size = 2**pools
    shape_ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(_is_positive_int(size) for size in input_shape)
        and min(input_shape[:2]) >= min_size
    )
    if not shape_ok:
        raise ValueError(
            f"{builder}: `input_shape` must be (height, width, channels) of positive ints "
            f"with height and width >= {min_size}, got {input_shape!r}."
        )
    if not _is_positive_int(classes):
        raise ValueError(f"{builder}: `classes` must be an int >= 1, got {classes!r}.")
    if not isinstance(width, numbers.Real) or isinstance(width, bool) or not (
        0 < width < math.inf
    ):
        raise ValueError(f"{builder}: `width` must be a finite number > 0, got {width!r}.")
