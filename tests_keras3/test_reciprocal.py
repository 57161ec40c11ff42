"""The reciprocals of the `keras.ops` binding (a speed choice per backend) against NumPy.

`keras_bilevel.keras3.formulas` computes 1/|theta| in the backward pass without a division
on the compiled backends and with one elsewhere; both must give float32's 1/x, and the
binding must use the one meant for the current backend.
"""

import keras
import numpy as np
import pytest

from keras_bilevel.keras3 import formulas


def _positive_floats():
    rng = np.random.default_rng(0)
    x = rng.uniform(1.0, 2.0, 20000) * 10.0 ** rng.uniform(-29, 29, 20000)
    return np.concatenate([x, [1e-30, 0.5, 1.0, 3.0, 1e29]]).astype(np.float32)


@pytest.mark.parametrize("name", ["_fused_reciprocal", "_division_reciprocal"])
def test_reciprocal_is_float32_one_over_x(name):
    x = _positive_floats()
    got = keras.ops.convert_to_numpy(getattr(formulas, name)(x))
    want = 1.0 / x.astype(np.float64)
    assert got.dtype == np.float32
    # Within 2 ulp of 1/x (the division-free one measures 1.44e-7 at most here).
    np.testing.assert_array_less(np.abs(got / want - 1.0), 2.4e-7)


def test_reciprocal_of_zero_is_finite():
    # |theta| = 0 lies in the dead band: the value is unused but must not be NaN.
    for reciprocal in (formulas._fused_reciprocal, formulas._division_reciprocal):
        assert np.isfinite(keras.ops.convert_to_numpy(reciprocal(np.zeros(3, np.float32)))).all()


def test_backend_uses_the_reciprocal_meant_for_it():
    compiled = keras.backend.backend() in ("jax", "tensorflow")
    want = formulas._fused_reciprocal if compiled else formulas._division_reciprocal
    assert formulas._OPS.reciprocal is want
