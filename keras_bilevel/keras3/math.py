"""The AdaSTE formulas bound to `keras.ops` (the Keras 3 front end, every backend).

The formulas are written once, in `keras_bilevel._formulas`; this module supplies the
`keras.ops` operations they use, so the same code runs under JAX, TensorFlow and
PyTorch. It exports what `keras_bilevel.math` (the TensorFlow binding of the Larq front
end) does, with the same arguments and values, imports neither TensorFlow nor Larq, and
holds no state.

The reciprocal is a plain division here: the TensorFlow binding's division-free
reciprocal is a CPU speed-up inside XLA's fused update, not part of the formula.

!!! example
    ```python
    from keras_bilevel.keras3 import math as ada_math
    ada_math.backward_scale([-10.0, 0.3], [-0.01, 0.01], mu=0.01)  # [0.101, 0.5]
    ```
"""

import keras
from keras import ops

from keras_bilevel import _formulas
from keras_bilevel._formulas import EXACT_BINARIZER_RTOL, REFERENCE_EXACT_THETA_EPS, VARIANTS  # noqa: F401,E501

__all__ = [*_formulas.CONSTANTS, *_formulas.FORMULAS]

# Guards the division by |theta|; |theta| this small is always inside the dead band.
_TINY = 1e-30


def _dtype(x):
    return keras.backend.standardize_dtype(ops.convert_to_tensor(x).dtype)


def _f32(x):
    x = ops.convert_to_tensor(x)
    return x if _dtype(x) == "float32" else ops.cast(x, "float32")


def _same_sign(a, b):
    """Whether the sign bits of float32 a and b agree (as the TensorFlow binding reads them)."""
    return ops.bitwise_xor(ops.view(a, "int32"), ops.view(b, "int32")) >= 0


def _reciprocal(x):
    return 1.0 / ops.maximum(x, _TINY)


_OPS = _formulas.make_ops(ops, tensor=ops.convert_to_tensor, f32=_f32, dtype=_dtype,
                          clip=ops.clip, reciprocal=_reciprocal, same_sign=_same_sign)
sign, is_exact_binarizer, inner_solution, backward_scale, adaste_gradient = _formulas.bind(
    _OPS, __name__)
