"""The AdaSTE formulas bound to `keras.ops` (the Keras 3 front end, every backend).

The formulas are written once, in `keras_bilevel.core.formulas`; this module supplies the
`keras.ops` operations they use, so the same code runs under JAX, TensorFlow and
PyTorch. It exports what `keras_bilevel.keras2.formulas` (the TensorFlow binding of the
Larq front end) does, with the same arguments and values, imports neither TensorFlow nor
Larq, and holds no state.

Two choices are the backend's (`keras_bilevel.keras3.backends`), for speed, not values:
the reciprocal of |theta| in the backward pass (division-free where the step is compiled
and it fuses into the update; a division where steps run op by op), and whether `sign`,
`inner_solution` and `adaste_gradient` run as one fused pass each (PyTorch's fused
kernels, TensorFlow's XLA) instead of op by op.

!!! example
    ```python
    from keras_bilevel.keras3 import formulas
    formulas.backward_scale([-10.0, 0.3], [-0.01, 0.01], mu=0.01)  # [0.101, 0.5]
    ```
"""

import types

import keras
from keras import ops

from keras_bilevel.core import formulas as _core
from keras_bilevel.core.formulas import (  # noqa: F401  (constants, exported)
    EXACT_BINARIZER_RTOL, REFERENCE_EXACT_THETA_EPS, VARIANT_SETTINGS, VARIANTS)
from keras_bilevel.keras3.backends import current as _backend

__all__ = [*_core.CONSTANTS, *_core.FORMULAS]

# Guards the division by |theta|; |theta| this small is always inside the dead band.
_TINY = 1e-30


def _dtype(x):
    return keras.backend.standardize_dtype(ops.convert_to_tensor(x).dtype)


def _f32(x):
    x = ops.convert_to_tensor(x)
    return x if _dtype(x) == "float32" else ops.cast(x, "float32")


def _to_bits(x):
    return ops.view(x, "int32")


def _from_bits(x):
    return ops.view(x, "float32")


def _same_sign(a, b):
    """Whether the sign bits of float32 a and b agree (as the TensorFlow binding reads them)."""
    return ops.bitwise_xor(_to_bits(a), _to_bits(b)) >= 0


def _division_reciprocal(x):
    return ops.reciprocal(ops.maximum(x, _TINY))  # two kernels; `1.0 / x` is three in torch


def _fused_reciprocal(x):
    return _core.division_free_reciprocal(_OPS, x)


_OPS = _core.make_ops(
    ops, tensor=ops.convert_to_tensor, f32=_f32, dtype=_dtype, clip=ops.clip,
    to_bits=_to_bits, from_bits=_from_bits, same_sign=_same_sign,
    reciprocal=(_fused_reciprocal if _backend.DIVISION_FREE_RECIPROCAL
                else _division_reciprocal))
# The formulas on `keras.ops`, and those this backend runs as one pass each instead (the
# same values): each name below is bound once, to the backend's choice.
_ON_KERAS_OPS = dict(zip(_core.FORMULAS, _core.bind(_OPS, __name__)))
_FUSED = _backend.fuse_formulas(types.SimpleNamespace(**_ON_KERAS_OPS))
for _function in _FUSED.values():
    _function.__module__ = __name__
sign, is_exact_binarizer, inner_solution, backward_scale, adaste_gradient = (
    _FUSED.get(name, _ON_KERAS_OPS[name]) for name in _core.FORMULAS)
