"""The AdaSTE formulas bound to TensorFlow (the Larq front end).

The formulas are written once, in `keras_bilevel._formulas`, against a small namespace
of tensor operations; this module supplies TensorFlow's and exports the bound functions:
`inner_solution` (the forward pass w*), `backward_scale` and `adaste_gradient` (the
backward pass, both variants), `sign` and `is_exact_binarizer`. They take tensors (or
Python numbers), return tensors, hold no state and compute in float32, casting results
back to the input's dtype. This module must not import Keras or Larq;
`keras_bilevel.keras3.math` is the same formulas bound to `keras.ops`.

Notation (see `shared/adaste-math.md`): `theta` latent weight, `g` the incoming gradient
d loss / d w, `mu` the relaxation parameter, `alpha` the well offset.

!!! example
    ```python
    from keras_bilevel import math as ada_math
    ada_math.backward_scale(tf.constant([-10.0, 0.3]), tf.constant([-0.01, 0.01]), mu=0.01)
    # [0.101, 0.5]
    ```
"""

import keras_bilevel._keras2  # noqa: F401  (Keras 2 mode before TensorFlow)

import tensorflow as tf

from keras_bilevel import _formulas
from keras_bilevel._formulas import EXACT_BINARIZER_RTOL, REFERENCE_EXACT_THETA_EPS, VARIANTS  # noqa: F401,E501

__all__ = [*_formulas.CONSTANTS, *_formulas.FORMULAS]

# Clips the argument of the reciprocal; |theta| this small is always inside the dead band.
_TINY = 1e-30


def _f32(x):
    x = tf.convert_to_tensor(x)
    return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)


def _sign_bits(x):
    return tf.bitcast(x, tf.int32)


def _same_sign(a, b):
    return tf.bitwise.bitwise_xor(_sign_bits(a), _sign_bits(b)) >= 0


def _reciprocal(x):
    """1 / x for float32 x >= 0, to about 1 ulp, without a division instruction.

    A vector division costs as much as a dozen multiplies on CPUs; inside the fused
    training update of a binary MLP it made the AdaSTE step ~15% slower than ste_sign
    (see BENCHMARKS.md). A bit-level first guess refined by three Newton steps,
    r <- r (2 - x r), reaches float32 precision (max relative error 1.2e-7, tested).
    x is clipped to [1e-30, 1e30]; callers only use the result where x is not tiny.
    """
    x = tf.clip_by_value(x, _TINY, 1.0 / _TINY)
    r = tf.bitcast(0x7EF311C7 - _sign_bits(x), tf.float32)
    for _ in range(3):
        r = r * (2.0 - x * r)
    return r


_OPS = _formulas.make_ops(
    tf, tensor=tf.convert_to_tensor, f32=_f32, dtype=lambda x: tf.convert_to_tensor(x).dtype,
    clip=tf.clip_by_value, reciprocal=_reciprocal, same_sign=_same_sign)
sign, is_exact_binarizer, inner_solution, backward_scale, adaste_gradient = _formulas.bind(
    _OPS, __name__)
