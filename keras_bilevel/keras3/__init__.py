"""keras_bilevel for Keras 3: AdaSTE on JAX, TensorFlow and PyTorch.

The Keras 3 front end of the package. It imports neither TensorFlow (unless it is the
Keras backend) nor Larq, and leaves `TF_USE_LEGACY_KERAS` alone; the AdaSTE formulas are
the same as the Larq front end's (`keras_bilevel._formulas`). Choose the backend as Keras
does, with `KERAS_BACKEND` before the first `import keras`.

!!! example
    ```python
    import keras
    from keras_bilevel.keras3 import AdaSTE, layers
    layer = layers.QuantDense(64, kernel_quantizer="ada_ste")
    ```
"""

from keras_bilevel.keras3 import constraints, layers, math, quantizers
from keras_bilevel.keras3 import callbacks, initializers, optimizers, recipes
from keras_bilevel.keras3 import export, models  # export: TensorFlow only when used
from keras_bilevel.keras3.quantizers import AdaSTE, SteSign

__all__ = [
    "AdaSTE",
    "SteSign",
    "callbacks",
    "constraints",
    "export",
    "initializers",
    "layers",
    "math",
    "models",
    "optimizers",
    "quantizers",
    "recipes",
]
