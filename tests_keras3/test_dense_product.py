"""`dense_product`: x @ K with its gradients, on the current backend, against NumPy."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_bilevel.keras3.dense_product import dense_product, uses_transposed_backward
from tests_keras3.autodiff import gradient
from tests_keras3.conftest import BACKEND

# (input shape, kernel shape): a batch of vectors, a batch of sequences, a 1-unit layer.
SHAPES = [((7, 5), (5, 3)), ((2, 4, 5), (5, 3)), ((6, 9), (9, 1))]


def _case(shape_x, shape_k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape_x).astype(np.float32)
    kernel = rng.standard_normal(shape_k).astype(np.float32)
    weights = rng.standard_normal((*shape_x[:-1], shape_k[-1])).astype(np.float32)
    return x, kernel, weights


@pytest.mark.parametrize("shape_x, shape_k", SHAPES)
def test_values_and_gradients_equal_the_matrix_product(shape_x, shape_k):
    x, kernel, weights = _case(shape_x, shape_k)
    x64, k64, w64 = (a.astype(np.float64) for a in (x, kernel, weights))

    def loss_of_x(t):
        return ops.sum(dense_product(t, ops.convert_to_tensor(kernel))
                       * ops.convert_to_tensor(weights))

    def loss_of_kernel(t):
        return ops.sum(dense_product(ops.convert_to_tensor(x), t)
                       * ops.convert_to_tensor(weights))

    outputs = ops.convert_to_numpy(dense_product(ops.convert_to_tensor(x),
                                                 ops.convert_to_tensor(kernel)))
    np.testing.assert_allclose(outputs, x64 @ k64, atol=1e-5)
    # d/dx sum(W * (x K)) = W K^T;  d/dK = sum over the leading axes of x^T W.
    np.testing.assert_allclose(gradient(loss_of_x, x), w64 @ k64.T, atol=1e-5)
    expected_k = x64.reshape(-1, shape_k[0]).T @ w64.reshape(-1, shape_k[1])
    np.testing.assert_allclose(gradient(loss_of_kernel, kernel), expected_k, atol=1e-5)


def test_the_transposed_backward_is_used_exactly_where_it_is_faster():
    if BACKEND != "jax":
        assert not uses_transposed_backward()
        return
    import jax
    import jaxlib

    version = tuple(int(p) for p in jaxlib.__version__.split(".")[:3] if p.isdigit())
    expected = jax.default_backend() == "cpu" and version < (0, 9, 0)
    assert uses_transposed_backward() == expected
    x, kernel, _ = _case((4, 3), (3, 2))
    # The custom backward shows in the traced program as a custom_vjp call.
    program = str(jax.make_jaxpr(lambda a: dense_product(a, kernel).sum())(x))
    assert ("custom_vjp" in program) == expected


def test_a_quant_dense_layer_trains_through_it():
    from keras_bilevel.keras3 import layers

    x, kernel, weights = _case((8, 5), (5, 3), seed=1)
    layer = layers.QuantDense(3, kernel_quantizer=None, use_bias=False)
    layer.build((None, 5))
    layer.kernel.assign(kernel)

    def loss_of_x(t):
        return ops.sum(layer(t) * ops.convert_to_tensor(weights))

    np.testing.assert_allclose(gradient(loss_of_x, x),
                               weights.astype(np.float64) @ kernel.astype(np.float64).T,
                               atol=1e-5)
    assert keras.backend.backend() == BACKEND


@pytest.mark.parametrize("jit_compile", [True, False])
def test_a_model_with_an_unquantized_dense_kernel_fits(jit_compile):
    """`--method full-precision` (no kernel quantizer): the kernel reaches the product
    as a value, not as the variable (on JAX's trainer the variable holds no value during
    fit, and the product must not capture it). Plain SGD, so one step is checkable:
    the kernel moves by -lr * gradient of the mean squared error."""
    from keras_bilevel.keras3 import layers

    x, kernel, _ = _case((8, 5), (5, 3), seed=2)
    target = np.zeros((8, 3), np.float32)
    model = keras.Sequential([keras.Input((5,)),
                              layers.QuantDense(3, kernel_quantizer=None, use_bias=False)])
    model.layers[0].kernel.assign(kernel)
    model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=jit_compile)
    model.fit(x, target, batch_size=8, epochs=1, verbose=0)
    x64, k64 = x.astype(np.float64), kernel.astype(np.float64)
    expected = k64 - 0.1 * x64.T @ (2 * (x64 @ k64) / (8 * 3))
    np.testing.assert_allclose(ops.convert_to_numpy(model.layers[0].kernel), expected,
                               atol=1e-5)
