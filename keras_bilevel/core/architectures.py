"""The reference architectures, written once for both front ends.

The binary MLP, VGG-16, VGG-Small and ResNet-18 of `keras_bilevel.keras2.models` (Larq, Keras 2)
and `keras_bilevel.keras3.models` (Keras 3) are the same networks built from different
layer libraries. This module holds the architectures and the argument checks; a
`keras_bilevel.core.binding.FrontEnd` names the library (the Keras module and the module
of `QuantDense` and `QuantConv2D`), and each front end's `models` binds every builder
that `keras_bilevel.core.registry.MODELS` names. Pure Python: it imports no Keras,
TensorFlow or Larq, so both front ends can use it.

!!! example
    ```python
    import keras
    from keras_bilevel.keras3 import layers
    front = FrontEnd("keras3", keras=keras, quant_layers=layers,
                     object_type=keras.layers.Layer)
    model = binary_mlp(front, input_shape=(64,), hidden_units=32, depth=2, classes=10,
                       kernel_quantizer="ada_ste", kernel_initializer="glorot_uniform",
                       kernel_constraint=None, batch_norm_affine=False, name="mlp")
    ```
"""

import math
import numbers

__all__ = [
    "FORMS",
    "RESNET18_STAGES",
    "VGG16_CONVS",
    "VGG_SMALL_CONVS",
    "VGG_SMALL_DENSE",
    "binary_mlp",
    "form_for",
    "resnet18",
    "vgg16",
    "vgg_small",
]

VGG16_CONVS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
               512, 512, 512, "M", 512, 512, 512, "M")
""""M" is a 2x2 max-pooling; a number is a binary 3x3 convolution with that many
filters."""
VGG_SMALL_CONVS = (128, 128, "M", 256, 256, "M", 512, 512, "M")
"""VGG-Small's convolutions, in the notation of `VGG16_CONVS`."""
VGG_SMALL_DENSE = (1024, 1024)
"""The widths of VGG-Small's binary dense layers before the classifier."""
RESNET18_STAGES = ((64, 2), (128, 2), (256, 2), (512, 2))
"""(filters, number of BasicBlocks) per stage; stages 2-4 start with stride 2."""
FORMS = {"resnet18": (("cifar", 0), ("tiny", 64), ("imagenet", 128)),
         "vgg16": (("cifar", 0), ("imagenet", 128))}
"""The forms of ResNet-18 and VGG-16 and the smallest input side (min(height, width))
each is picked for by `form="auto"`: the CIFAR form below 64; ResNet-18's TinyImageNet
form (the public AdaSTE code's: its 3x3 stem with stride 2) from 64; the ImageNet form
from 128."""
# VGG-16's ImageNet classifier: two hidden dense layers of 4096 units.
VGG16_IMAGENET_DENSE = (4096, 4096)


def _fresh(spec, object_type):
    """A new object per layer from a zero-argument factory; anything else passes through."""
    is_factory = callable(spec) and not isinstance(spec, (type, object_type))
    return spec() if is_factory and not hasattr(spec, "get_config") else spec


class _BinaryLayers:
    """Makes binary layers, each followed by BatchNorm, with fresh per-layer objects."""

    def __init__(self, front, kernel_quantizer, kernel_initializer, kernel_constraint,
                 batch_norm_affine):
        self.front = front
        self.specs = dict(kernel_quantizer=kernel_quantizer,
                          kernel_initializer=kernel_initializer,
                          kernel_constraint=kernel_constraint)
        self.batch_norm_affine = batch_norm_affine

    def layer(self, name, *args):
        """A plain Keras layer of the front end, e.g. `layer("ReLU")`."""
        return getattr(self.front.keras.layers, name)(*args)

    def _kernel_args(self):
        kinds = self.front.object_type
        args = {key: _fresh(spec, kinds) for key, spec in self.specs.items()}
        return dict(args, use_bias=False)

    def _batch_norm(self, x):
        affine = self.batch_norm_affine
        return self.front.keras.layers.BatchNormalization(center=affine, scale=affine)(x)

    def conv_bn(self, x, filters, kernel_size=3, strides=1):
        """A binary convolution ("same" padding, no input quantizer), then BatchNorm."""
        x = self.front.quant_layers.QuantConv2D(filters, kernel_size, strides=strides,
                                                padding="same", **self._kernel_args())(x)
        return self._batch_norm(x)

    def dense_bn(self, x, units):
        """A binary dense layer (no input quantizer), then BatchNorm."""
        return self._batch_norm(self.front.quant_layers.QuantDense(units,
                                                                   **self._kernel_args())(x))

    def relu(self, x):
        return self.layer("ReLU")(x)


def binary_mlp(
    front,
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

    Each hidden layer is QuantDense-BatchNorm-ReLU, the output layer QuantDense-BatchNorm
    (no softmax); inputs of more than one axis are flattened first. At default settings:
    2,916,372 parameters, 2,910,208 of them trainable (the latent binary kernels,
    784x1024 + 2x1024x1024 + 1024x10) and 6,164 BatchNorm moving statistics.

    `kernel_quantizer`, `kernel_initializer` and `kernel_constraint` may be identifiers
    (each layer gets a fresh object), objects (shared by every layer) or zero-argument
    factories (called once per layer).

    !!! example
        ```python
        model = binary_mlp((64,), hidden_units=256)                  # AdaSTE
        baseline = binary_mlp((64,), kernel_quantizer="ste_sign",
                              kernel_constraint="weight_clip")        # STE
        ```

    # Arguments
        input_shape: the shape of one input, without the batch axis.
        hidden_units: units of every hidden layer (>= 1).
        depth: number of hidden layers (>= 0).
        classes: number of logits (>= 1).
        kernel_quantizer, kernel_initializer, kernel_constraint: of every binary layer.
        batch_norm_affine: give the BatchNorm layers a trainable scale and offset.
        name: the model's name.
    """
    if depth < 0 or hidden_units < 1 or classes < 1:
        raise ValueError(
            f"binary_mlp: need depth >= 0, hidden_units >= 1 and classes >= 1, got "
            f"depth={depth!r}, hidden_units={hidden_units!r}, classes={classes!r}."
        )
    binary = _BinaryLayers(front, kernel_quantizer, kernel_initializer, kernel_constraint,
                           batch_norm_affine)
    inputs = front.keras.Input(input_shape)
    x = binary.layer("Flatten")(inputs) if len(input_shape) > 1 else inputs
    for _ in range(depth):
        x = binary.relu(binary.dense_bn(x, hidden_units))
    return front.keras.Model(inputs, binary.dense_bn(x, classes), name=name)


def vgg16(
    front,
    input_shape=(32, 32, 3),
    classes=10,
    width=1.0,
    kernel_quantizer="ada_ste",
    kernel_initializer="glorot_uniform",
    kernel_constraint=None,
    batch_norm_affine=False,
    form="auto",
    name="vgg16",
):
    """VGG-16, every weight binary, logits out; the CIFAR or the ImageNet head.

    Thirteen binary 3x3 convolutions, each with BatchNorm and a full-precision ReLU (64,
    64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M; "M" a 2x2
    max-pooling), then flatten and, in the CIFAR form, the common CIFAR head: a binary
    dense layer to `classes` with BatchNorm on the logits (no softmax; 1x1x512 inputs
    for 32x32 images, 2x2x512 for 64x64); in the ImageNet form, Simonyan and
    Zisserman's classifier: binary dense layers of 4096 and 4096 units (BatchNorm, ReLU)
    before the logits (7x7x512 inputs for 224x224 images: 138,344,128 binary weights for
    1000 classes, the original's 138,357,544 parameters less its 13,416 biases). No
    biases. At default settings: 14,724,052 parameters, 14,715,584 of them trainable
    (the latent binary kernels: 14,710,464 in the convolutions, 5,120 in the dense
    layer) and 8,468 BatchNorm moving statistics.

    The kernel arguments take identifiers, objects or factories, as in `binary_mlp`.

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
        form: "cifar", "imagenet", or "auto" (the default): the ImageNet head for inputs
            of at least 128x128 (`FORMS`), else the CIFAR head.
        name: the model's name.
    """
    check_image_model("vgg16", input_shape, classes, width, pools=5)
    form = form_for("vgg16", input_shape, form)
    binary = _BinaryLayers(front, kernel_quantizer, kernel_initializer, kernel_constraint,
                           batch_norm_affine)
    dense = VGG16_IMAGENET_DENSE if form == "imagenet" else ()
    return _vgg(binary, input_shape, VGG16_CONVS, dense, classes, width, name)


def vgg_small(
    front,
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
    BatchNorm, every hidden one by a full-precision ReLU (pooling after the ReLU); the
    last BatchNorm is on the logits (no softmax). No biases. At default settings:
    14,029,716 parameters, 14,022,016 of them trainable (4,574,592 in the convolutions,
    9,447,424 in the dense layers) and 7,700 BatchNorm moving statistics.

    The kernel arguments take identifiers, objects or factories, as in `binary_mlp`.

    !!! example
        ```python
        model = vgg_small()                                          # AdaSTE
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
    check_image_model("vgg_small", input_shape, classes, width, pools=3)
    binary = _BinaryLayers(front, kernel_quantizer, kernel_initializer, kernel_constraint,
                           batch_norm_affine)
    return _vgg(binary, input_shape, VGG_SMALL_CONVS, VGG_SMALL_DENSE, classes, width,
                name)


def resnet18(
    front,
    input_shape=(32, 32, 3),
    classes=10,
    width=1.0,
    kernel_quantizer="ada_ste",
    kernel_initializer="glorot_uniform",
    kernel_constraint=None,
    batch_norm_affine=False,
    form="auto",
    name="resnet18",
):
    """ResNet-18, every weight binary (stem and shortcuts included), logits out.

    A binary stem convolution with 64 filters, four stages of two BasicBlocks with 64,
    128, 256 and 512 filters (stride 2 in the first block of stages 2-4), global
    average pooling and a binary dense layer to `classes`. A BasicBlock is
    conv3x3-BN-ReLU-conv3x3-BN, added to the shortcut, then ReLU; the shortcut is the
    identity, or a binary 1x1 convolution with BatchNorm where the shape changes. The
    last BatchNorm is on the logits (no softmax); no biases. The stem (BN, ReLU after
    it) takes one of three forms:

    - `cifar`: a 3x3 convolution, stride 1 (32x32 inputs: 4x4 maps in the last stage);
    - `tiny`: a 3x3 convolution, stride 2, as the public AdaSTE code's TinyImageNet
      ResNet-18 (64x64 inputs: 4x4 in the last stage);
    - `imagenet`: He et al.'s 7x7 convolution with stride 2 and a 3x3 max-pooling with
      stride 2 (224x224 inputs: 7x7 in the last stage); 11,678,912 binary weights for
      1000 classes, torchvision's resnet18 (11,689,512 parameters) less its fc bias and
      BatchNorm scales and offsets.

    At default settings (CIFAR form): 11,173,972 parameters, 11,164,352 of them
    trainable (11,159,232 in the convolutions, 5,120 in the dense layer) and 9,620
    BatchNorm moving statistics; the TinyImageNet form has the same.

    The kernel arguments take identifiers, objects or factories, as in `binary_mlp`.

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
        form: "cifar", "tiny", "imagenet", or "auto" (the default): picked by the
            input's smaller side (`FORMS`): below 64 CIFAR, from 64 TinyImageNet, from
            128 ImageNet.
        name: the model's name.
    """
    check_image_model("resnet18", input_shape, classes, width, pools=0)
    form = form_for("resnet18", input_shape, form)
    binary = _BinaryLayers(front, kernel_quantizer, kernel_initializer, kernel_constraint,
                           batch_norm_affine)
    inputs = front.keras.Input(input_shape)
    if form == "imagenet":
        x = binary.relu(binary.conv_bn(inputs, scaled(64, width), kernel_size=7, strides=2))
        x = binary.layer("MaxPooling2D", 3, 2, "same")(x)
    else:
        x = binary.relu(binary.conv_bn(inputs, scaled(64, width),
                                       strides=2 if form == "tiny" else 1))
    for stage, (filters, blocks) in enumerate(RESNET18_STAGES):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(binary, x, scaled(filters, width), strides)
    x = binary.layer("GlobalAveragePooling2D")(x)
    return front.keras.Model(inputs, binary.dense_bn(x, classes), name=name)


def _vgg(binary, input_shape, convs, dense, classes, width, name):
    """Convolutions and poolings, flatten, binary dense hidden layers, logits."""
    inputs = binary.front.keras.Input(input_shape)
    x = binary.layer("Flatten")(_vgg_features(binary, inputs, convs, width))
    for units in dense:
        x = binary.relu(binary.dense_bn(x, scaled(units, width)))
    return binary.front.keras.Model(inputs, binary.dense_bn(x, classes), name=name)


def _vgg_features(binary, x, layers, width):
    """conv-BN-ReLU for every number in `layers`, a 2x2 max-pooling for every "M"."""
    for layer in layers:
        if layer == "M":
            x = binary.layer("MaxPooling2D", 2)(x)
        else:
            x = binary.relu(binary.conv_bn(x, scaled(layer, width)))
    return x


def _basic_block(binary, x, filters, strides):
    """ResNet's BasicBlock; a binary 1x1 convolution on the shortcut if the shape changes."""
    residual = binary.relu(binary.conv_bn(x, filters, strides=strides))
    residual = binary.conv_bn(residual, filters)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = binary.conv_bn(x, filters, kernel_size=1, strides=strides)
    return binary.relu(binary.layer("Add")([residual, shortcut]))


def form_for(builder, input_shape, form):
    """The form of `builder` ("resnet18", "vgg16") for `input_shape`: `form` itself, or
    for "auto" the last of `FORMS[builder]` whose smallest side the input reaches."""
    names = [name for name, _ in FORMS[builder]]
    if form == "auto":
        side = min(input_shape[:2])
        return [name for name, smallest in FORMS[builder] if side >= smallest][-1]
    if form not in names:
        raise ValueError(f"{builder}: `form` must be 'auto' or one of "
                         f"{', '.join(map(repr, names))}, got {form!r}.")
    return form


def scaled(count, width):
    """`count` filters or units scaled by `width`, rounded, at least 1."""
    return max(1, round(count * width))


def _is_positive_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def check_image_model(builder, input_shape, classes, width, pools):
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
