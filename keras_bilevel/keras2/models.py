"""Reference binary-weight models built from the public API (Larq layers + AdaSTE).

As in the paper's setup: every weight binary (first and last layer included), ReLU
activations in full precision, BatchNorm without affine parameters by default, and a
final BatchNorm on the logits. The kernel quantizer and initializer are arguments, so
the same builder gives the STE baseline with `kernel_quantizer="ste_sign"`.

The convolutional builders (`vgg16`, `resnet18`, `vgg_small`) are the CIFAR forms: 32x32x3
inputs by default, 3x3 convolutions, and a `width` multiplier of every layer's number of
filters and units for small variants. The architectures, their arguments and their
documentation are written once, in `keras_bilevel.core.architectures`, for both front ends;
this module binds them to `tf.keras` (Keras 2) and `larq.layers`.

!!! example
    ```python
    model = keras_bilevel.keras2.models.binary_mlp()                     # AdaSTE
    baseline = keras_bilevel.keras2.models.vgg_small(kernel_quantizer="ste_sign",
                                              kernel_constraint="weight_clip")
    ```
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import larq
import tensorflow as tf

from keras_bilevel.core import architectures, registry
from keras_bilevel.core.binding import FrontEnd, bind

# Larq's layers on tf.keras; `keras_bilevel.keras2.recipes` adds its recipe modules.
FRONT_END = FrontEnd(name="larq", keras=tf.keras, quant_layers=larq.layers,
                     object_type=tf.Module)

# One builder per registered model, the core's architecture bound to Larq's layers.
__all__ = sorted(registry.MODELS[name].builder
                 for name in registry.names(registry.MODELS, front_end="larq"))
for _builder in __all__:
    globals()[_builder] = bind(FRONT_END, getattr(architectures, _builder), __name__)
del _builder
