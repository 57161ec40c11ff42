"""The product of a dense layer's inputs and its quantized kernel, fast on every backend.

\\[ y = x\\,K, \\qquad \\frac{\\partial L}{\\partial x} = g\\,K^\\top, \\qquad
    \\frac{\\partial L}{\\partial K} = x^\\top g \\]

`dense_product(x, kernel)` is `keras.ops.matmul(x, kernel)`, with the same values and the
same gradients, on every backend. One case gets another backward pass: JAX on CPU with
jaxlib older than 0.9.0, whose XLA runs a product that contracts the last axis of both
operands (the input gradient g K^T above) about 4x slower than the other layouts
(measured on this project's 2-core x86 machine, 100x1024 by 1024x1024: 4.8 to 5.5 ms
against 1.2 to 1.5 ms with jaxlib 0.4.38, 0.6.2, 0.7.1, 0.7.2 and 0.8.0; 0.9.0, 0.10.0
and 0.10.2 run it in 0.9 to 1.0 ms, but jaxlib 0.7.2 and newer need numpy >= 2, which
Larq's pin excludes from our environment). There the input gradient is computed as
(K (g^T))^T with both transposes materialised, which XLA runs at the fast rate: a Keras 3
binary MLP's step went from 23 ms to 15-16 ms here. The values are the same products,
summed in another order: equal within float rounding.

This module holds no formula and no Keras object; it imports JAX only when JAX is the
Keras backend (and is then loaded already).

!!! example
    ```python
    from keras_bilevel.keras3.dense_product import dense_product
    y = dense_product(x, quantized_kernel)   # x: (..., k), kernel: (k, n)
    ```
"""

import functools

import keras
from keras import ops

__all__ = ["dense_product", "uses_transposed_backward"]

# The first jaxlib measured to run the CPU product with both last axes contracted at the
# fast rate (0.8.0 was slow; 0.8.1 to 0.8.3 were not measured).
_FIXED_JAXLIB = (0, 9, 0)


@functools.lru_cache(maxsize=None)
def uses_transposed_backward():
    """True where `dense_product` computes the input gradient as (K g^T)^T: the Keras
    backend is JAX, its default device a CPU, and jaxlib older than 0.9.0."""
    if keras.backend.backend() != "jax":
        return False
    import jax
    import jaxlib

    version = tuple(int(part) for part in jaxlib.__version__.split(".")[:3]
                    if part.isdigit())
    return jax.default_backend() == "cpu" and version < _FIXED_JAXLIB


@functools.lru_cache(maxsize=None)
def _jax_product_with_transposed_backward():
    import jax
    from jax import lax

    @jax.custom_vjp
    def product(x, kernel):
        return x @ kernel

    def forward(x, kernel):
        return x @ kernel, (x, kernel)

    def backward(residuals, g):
        x, kernel = residuals
        # The barriers keep XLA from folding the transposes back into the product.
        grad_x = lax.optimization_barrier(kernel @ lax.optimization_barrier(g.T)).T
        return grad_x.astype(x.dtype), (x.T @ g).astype(kernel.dtype)

    product.defvjp(forward, backward)
    return product


def dense_product(x, kernel):
    """`x @ kernel` for x of shape (..., k) and a kernel of shape (k, n), with the
    backward pass described in the module docstring (JAX on CPU, jaxlib < 0.9.0).

    !!! example
        ```python
        dense_product(keras.ops.ones((2, 3)), keras.ops.ones((3, 4)))  # all 3.0, (2, 4)
        ```
    """
    # The backend first: torch.compile's Dynamo warns about traced lru_cache functions.
    if (keras.backend.backend() != "jax" or not uses_transposed_backward()
            or len(kernel.shape) != 2):
        return ops.matmul(x, kernel)
    product = _jax_product_with_transposed_backward()
    # A Keras variable (a kernel with no quantizer) to the value the trainer's stateless
    # scope holds: passed as itself, JAX would capture it as a constant of the jitted
    # product and read it outside the scope (a run with `--method full-precision`).
    kernel = ops.convert_to_tensor(kernel)
    if len(x.shape) == 2:
        return product(x, kernel)
    outputs = product(ops.reshape(x, (-1, x.shape[-1])), kernel)
    return ops.reshape(outputs, (*x.shape[:-1], kernel.shape[-1]))
