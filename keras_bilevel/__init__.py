"""keras_bilevel: binary-weight networks in Keras trained with AdaSTE.

Importing the package puts TensorFlow in Keras 2 mode (Larq needs it); import it before
anything touches `tf.keras`.
"""

from keras_bilevel import _keras2

_keras2.ensure_keras2()

from keras_bilevel import (  # noqa: E402
    callbacks,
    data,
    export,
    initializers,
    math,
    models,
    optimizers,
    quantizers,
    recipes,
)
from keras_bilevel.quantizers import AdaSTE  # noqa: E402

__all__ = [
    "AdaSTE",
    "callbacks",
    "data",
    "export",
    "initializers",
    "math",
    "models",
    "optimizers",
    "quantizers",
    "recipes",
]
__version__ = "0.1.0"
