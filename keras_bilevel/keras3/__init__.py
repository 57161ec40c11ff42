"""keras_bilevel for Keras 3: AdaSTE on JAX, TensorFlow and PyTorch.

The Keras 3 front end of the package. It imports neither TensorFlow (unless it is the
Keras backend) nor Larq, and leaves `TF_USE_LEGACY_KERAS` alone; the AdaSTE formulas are
the same as the Larq front end's (`keras_bilevel.core.formulas`). Choose the backend as Keras
does, with `KERAS_BACKEND` before the first `import keras`; where neither it nor
keras.json names one and TensorFlow (Keras' default) is not installed, importing this
package before Keras picks the installed backend (JAX, else PyTorch).

!!! example
    ```python
    import keras
    from keras_bilevel.keras3 import AdaSTE, layers
    layer = layers.QuantDense(64, kernel_quantizer="ada_ste")
    ```
"""

from keras_bilevel.core import cpu_defaults, stacks

cpu_defaults.prefer_onednn()  # before Keras loads TensorFlow (as backend, or for data)
stacks.choose_keras_backend()  # a JAX- or PyTorch-only install needs no KERAS_BACKEND

from keras_bilevel.keras3 import constraints, formulas, layers, quantizers  # noqa: E402
from keras_bilevel.keras3 import callbacks, initializers, optimizers, recipes  # noqa: E402
from keras_bilevel.keras3 import export, models  # noqa: E402  (export: TF only when used)
from keras_bilevel.keras3.quantizers import AdaSTE, SteSign  # noqa: E402

__all__ = [
    "AdaSTE",
    "SteSign",
    "callbacks",
    "constraints",
    "export",
    "initializers",
    "formulas",
    "layers",
    "models",
    "optimizers",
    "quantizers",
    "recipes",
]

# The name of `formulas` in versions before 0.2 (an alias; not a module of its own).
math = formulas
