"""JAX: the whole training step is compiled by XLA, over the global batch.

What differs from `portable`: the division-free reciprocal (it fuses into the compiled
update); a dense product with another backward pass on CPUs whose jaxlib runs the
product that contracts both last axes slowly (`dense_product`; measured in
BENCHMARKS.md, "Keras 3 front end: training-step cost"); every step compiled by default;
a note that convolutions are slow on a CPU. Under `keras.distribution.DataParallel` the
gradient is already the global batch's, so `replica_sum` stays None.
"""

import functools

import jax
import jaxlib
from jax import lax
from keras import ops

from keras_bilevel.keras3.backends.portable import (  # noqa: F401  (this backend's too)
    CONVERTS_TO_TFLITE, fuse_formulas, is_compile_error, latent_momentum_step,
    quantizer_input, replica_sum, variable_value)

NAME = "jax"
DIVISION_FREE_RECIPROCAL = True
# The first jaxlib whose CPU product with both last axes contracted runs at the rate of
# the other layouts (0.8.0 did not; 0.8.1 to 0.8.3 were not measured).
FIXED_JAXLIB = (0, 9, 0)


@functools.lru_cache(maxsize=None)
def uses_transposed_backward():
    """True where `dense_product` computes the input gradient as (K g^T)^T: the default
    device is a CPU and jaxlib is older than `FIXED_JAXLIB`."""
    version = tuple(int(part) for part in jaxlib.__version__.split(".")[:3]
                    if part.isdigit())
    return jax.default_backend() == "cpu" and version < FIXED_JAXLIB


@jax.custom_vjp
def _product(x, kernel):
    return x @ kernel


def _product_forward(x, kernel):
    return x @ kernel, (x, kernel)


def _product_backward(residuals, g):
    x, kernel = residuals
    # The barriers keep XLA from folding the transposes back into the product.
    grad_x = lax.optimization_barrier(kernel @ lax.optimization_barrier(g.T)).T
    return grad_x.astype(x.dtype), (x.T @ g).astype(kernel.dtype)


_product.defvjp(_product_forward, _product_backward)


def dense_product(x, kernel):
    r"""`x @ kernel` for x of shape (..., k) and a kernel of shape (k, n).

    \\[ y = x K, \qquad \partial L / \partial x = g K^\top = (K g^\top)^\top \\]

    Where `uses_transposed_backward()`, the input gradient is computed in the second
    form with both transposes materialised, which XLA runs at the rate of the other
    layouts; the values are the same products summed in another order.
    """
    if not uses_transposed_backward() or len(kernel.shape) != 2:
        return ops.matmul(x, kernel)
    # A Keras variable (a kernel with no quantizer) to the value the trainer's stateless
    # scope holds: passed as itself, JAX would capture it as a constant of the product.
    kernel = ops.convert_to_tensor(kernel)
    if len(x.shape) == 2:
        return _product(x, kernel)
    outputs = _product(ops.reshape(x, (-1, x.shape[-1])), kernel)
    return ops.reshape(outputs, (*x.shape[:-1], kernel.shape[-1]))


def default_jit(steps=None):
    """True: compiling the step is JAX's way of running it."""
    return True


def slow_convolutions_note(model):
    """One line for a convolutional `model` on a CPU (XLA's CPU convolutions are slow;
    BENCHMARKS.md, "Against the public PyTorch AdaSTE code"), else None."""
    if model == "mlp" or jax.default_backend() != "cpu":
        return None
    return (f"Note: JAX runs convolutions slowly on a CPU ({model}: see BENCHMARKS.md, "
            "'Against the public PyTorch AdaSTE code'); --backend larq or --backend torch is "
            "faster here")
