"""Reference binary-weight models for Keras 3 (every backend).

The Keras 3 twins of `keras_bilevel.keras2.models`: the same networks, arguments, defaults and
parameter counts, built from `keras_bilevel.keras3.layers` and plain `keras` layers.
As in the paper's setup: every weight binary (first and last layer included),
full-precision ReLU, BatchNorm without affine parameters by default after every binary
layer (the last one on the logits), no biases. The architectures and their
documentation are written once, in `keras_bilevel.core.architectures`; this module binds
them to Keras 3 and imports neither TensorFlow nor Larq.

AdaSTE's `mu` is state, not a parameter: `count_params()` leaves it out, as the Larq
front end does. Every model is returned through `backends.current.compile_ready` (on
PyTorch it lets `torch.compile` trace the whole forward pass).

!!! example
    ```python
    from keras_bilevel.keras3 import models
    model = models.binary_mlp()                                       # AdaSTE
    baseline = models.vgg_small(kernel_quantizer="ste_sign",
                                kernel_constraint="weight_clip")       # STE
    ```
"""

import keras

from keras_bilevel.core import architectures, registry
from keras_bilevel.core.binding import FrontEnd, bind
from keras_bilevel.keras3 import layers
from keras_bilevel.keras3.backends import current as backend

# This package's layers on Keras 3; `keras_bilevel.keras3.recipes` adds its recipe modules.
FRONT_END = FrontEnd(name="keras3", keras=keras, quant_layers=layers,
                     object_type=keras.layers.Layer)

# One builder per registered model, the core's architecture bound to Keras 3's layers.
__all__ = sorted(registry.MODELS[name].builder
                 for name in registry.names(registry.MODELS, front_end="keras3"))
for _builder in __all__:
    globals()[_builder] = bind(FRONT_END, getattr(architectures, _builder), __name__,
                               then=backend.compile_ready)
del _builder
