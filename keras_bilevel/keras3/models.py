"""Reference binary-weight models for Keras 3 (every backend).

The Keras 3 twins of `keras_bilevel.models`: the same networks, arguments, defaults and
parameter counts, built from `keras_bilevel.keras3.layers` and plain `keras` layers.
As in the paper's setup: every weight binary (first and last layer included),
full-precision ReLU, BatchNorm without affine parameters by default after every binary
layer (the last one on the logits), no biases. The architectures and their
documentation are written once, in `keras_bilevel._architectures`; this module binds
them to Keras 3 and imports neither TensorFlow nor Larq.

AdaSTE's `mu` is state, not a parameter: `count_params()` leaves it out, as the Larq
front end does.

!!! example
    ```python
    from keras_bilevel.keras3 import models
    model = models.binary_mlp()                                       # AdaSTE
    baseline = models.vgg_small(kernel_quantizer="ste_sign",
                                kernel_constraint="weight_clip")       # STE
    ```
"""

import keras

from keras_bilevel import _architectures
from keras_bilevel.keras3 import layers

__all__ = ["binary_mlp", "resnet18", "vgg16", "vgg_small"]

_KERAS3 = _architectures.FrontEnd(keras=keras, quant_layers=layers,
                                  object_type=keras.layers.Layer)

binary_mlp = _architectures.bind(_KERAS3, _architectures.binary_mlp, __name__)
vgg16 = _architectures.bind(_KERAS3, _architectures.vgg16, __name__)
vgg_small = _architectures.bind(_KERAS3, _architectures.vgg_small, __name__)
resnet18 = _architectures.bind(_KERAS3, _architectures.resnet18, __name__)
