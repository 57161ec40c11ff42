"""Reference binary-weight models built from the public API (Larq layers + AdaSTE).

As in the paper's setup: every weight binary (first and last layer included), ReLU
activations in full precision, BatchNorm without affine parameters by default, and a
final BatchNorm on the logits. The kernel quantizer and initializer are arguments, so
the same builder gives the STE baseline with `kernel_quantizer="ste_sign"`.

The convolutional builders (`vgg16`, `resnet18`, `vgg_small`) are the CIFAR forms: 32x32x3
inputs by default, 3x3 convolutions, and a `width` multiplier of every layer's number of
filters and units for small variants. The architectures, their arguments and their
documentation are written once, in `keras_bilevel._architectures`, for both front ends;
this module binds them to `tf.keras` (Keras 2) and `larq.layers`.

!!! example
    ```python
    model = keras_bilevel.models.binary_mlp()                     # AdaSTE
    baseline = keras_bilevel.models.vgg_small(kernel_quantizer="ste_sign",
                                              kernel_constraint="weight_clip")
    ```
"""

import keras_bilevel._keras2  # noqa: F401  (Keras 2 mode before TensorFlow)

import larq
import tensorflow as tf

from keras_bilevel import _architectures

__all__ = ["binary_mlp", "resnet18", "vgg16", "vgg_small"]

_LARQ = _architectures.FrontEnd(keras=tf.keras, quant_layers=larq.layers,
                                object_type=tf.Module)

binary_mlp = _architectures.bind(_LARQ, _architectures.binary_mlp, __name__)
vgg16 = _architectures.bind(_LARQ, _architectures.vgg16, __name__)
vgg_small = _architectures.bind(_LARQ, _architectures.vgg_small, __name__)
resnet18 = _architectures.bind(_LARQ, _architectures.resnet18, __name__)
