"""The AdaSTE formulas bound to TensorFlow (the Larq front end).

The formulas are written once, in `keras_bilevel.core.formulas`, against a small namespace
of tensor operations; this module supplies TensorFlow's and exports the bound functions:
`inner_solution` (the forward pass w*), `backward_scale` and `adaste_gradient` (the
backward pass, every variant), `sign` and `is_exact_binarizer`. They take tensors (or
Python numbers), return tensors, hold no state and compute in float32, casting results
back to the input's dtype. This module must not import Keras or Larq;
`keras_bilevel.keras3.formulas` is the same formulas bound to `keras.ops`.

The reciprocal of |theta| in the backward pass is the core's division-free one
(`division_free_reciprocal`): the training step fuses it into the update, where a vector
division would cost as much as a dozen multiplies.

Notation (`docs/method.md`): `theta` latent weight, `g` the incoming gradient
d loss / d w, `mu` the relaxation parameter, `alpha` the well offset.

!!! example
    ```python
    from keras_bilevel.keras2 import formulas
    formulas.backward_scale(tf.constant([-10.0, 0.3]), tf.constant([-0.01, 0.01]), mu=0.01)
    # [0.101, 0.5]
    ```
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import tensorflow as tf

from keras_bilevel.core import formulas as _core
from keras_bilevel.core.formulas import (  # noqa: F401  (constants, exported)
    EXACT_BINARIZER_RTOL, REFERENCE_EXACT_THETA_EPS, VARIANT_SETTINGS, VARIANTS)

__all__ = [*_core.CONSTANTS, *_core.FORMULAS]


def _f32(x):
    x = tf.convert_to_tensor(x)
    return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)


def _to_bits(x):
    return tf.bitcast(x, tf.int32)


def _same_sign(a, b):
    return tf.bitwise.bitwise_xor(_to_bits(a), _to_bits(b)) >= 0


_OPS = _core.make_ops(
    tf, tensor=tf.convert_to_tensor, f32=_f32, dtype=lambda x: tf.convert_to_tensor(x).dtype,
    clip=tf.clip_by_value, to_bits=_to_bits, from_bits=lambda x: tf.bitcast(x, tf.float32),
    same_sign=_same_sign, reciprocal=lambda x: _core.division_free_reciprocal(_OPS, x))
sign, is_exact_binarizer, inner_solution, backward_scale, adaste_gradient = _core.bind(
    _OPS, __name__)
