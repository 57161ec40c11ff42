"""The Larq front end: AdaSTE on Keras 2 (`tf_keras`) with Larq's layers.

Importing it puts TensorFlow in Keras 2 mode (`legacy_keras`, first), registers the
`"ada_ste"` quantizer and the `"random_sign"` initialiser with Larq, and loads every
module. `keras_bilevel` re-exports it: `keras_bilevel.AdaSTE` is
`keras_bilevel.keras2.AdaSTE`, `keras_bilevel.callbacks` is
`keras_bilevel.keras2.callbacks`, and so on. The formulas are the core's
(`keras_bilevel.core.formulas`), bound to TensorFlow in `formulas`.

!!! example
    ```python
    import keras_bilevel, larq
    larq.layers.QuantDense(64, kernel_quantizer=keras_bilevel.AdaSTE(mu=0.01))
    ```
"""

from keras_bilevel.keras2 import legacy_keras  # noqa: F401  (first: Keras 2 mode)
from keras_bilevel.keras2 import (  # noqa: E402
    callbacks,
    data,
    formulas,
    initializers,
    models,
    optimizers,
    quantizers,
    recipes,
)
from keras_bilevel.keras2.quantizers import AdaSTE  # noqa: E402

__all__ = ["AdaSTE", "callbacks", "data", "formulas", "initializers", "models", "optimizers",
           "quantizers", "recipes"]
