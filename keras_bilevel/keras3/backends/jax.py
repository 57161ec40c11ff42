"""JAX: the whole training step is compiled by XLA, over the global batch.

What differs from `portable`: the division-free reciprocal (it fuses into the compiled
update); a dense product with another backward pass on CPUs whose jaxlib runs the
product that contracts both last axes slowly (`dense_product`; measured in
BENCHMARKS.md, "Keras 3 front end: training-step cost"); on a CPU, convolutions whose
kernel is larger than their input as patches and a matrix product (`convolution`);
every step compiled by default; a note that convolutions are slow on a CPU. Under
`keras.distribution.DataParallel` the gradient is already the global batch's, so
`replica_sum` stays None.
"""

import functools

import jax
import jaxlib
from jax import lax
from jax.experimental import sparse as jax_sparse
from keras import ops

from keras_bilevel.core import registry

from keras_bilevel.keras3.backends.portable import (  # noqa: F401  (this backend's too)
    CONVERTS_TO_TFLITE, compile_ready, fuse_formulas, is_compile_error, latent_momentum_step,
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
    layouts; the values are the same products summed in another order. Sparse inputs
    (`jax.experimental.sparse` arrays, as Keras's Dense takes them) use Keras's product.
    """
    if (not uses_transposed_backward() or len(kernel.shape) != 2
            or isinstance(x, jax_sparse.JAXSparse)):
        return ops.matmul(x, kernel)
    # A Keras variable (a kernel with no quantizer) to the value the trainer's stateless
    # scope holds: passed as itself, JAX would capture it as a constant of the product.
    kernel = ops.convert_to_tensor(kernel)
    if len(x.shape) == 2:
        return _product(x, kernel)
    outputs = _product(ops.reshape(x, (-1, x.shape[-1])), kernel)
    return ops.reshape(outputs, (*x.shape[:-1], kernel.shape[-1]))


def _patches_apply(layer, inputs, kernel):
    """Whether `convolution` takes the patches form: on a CPU, a 2-D convolution with
    stride 1, no dilation, one group, channels last, "same" padding, an odd kernel, and
    the kernel larger than the input in some spatial axis."""
    if jax.default_backend() != "cpu" or len(kernel.shape) != 4 or len(inputs.shape) != 4:
        return False
    kh, kw = kernel.shape[:2]
    h, w = inputs.shape[1:3]
    return (layer.padding == "same" and tuple(layer.strides) == (1, 1)
            and tuple(layer.dilation_rate) == (1, 1) and getattr(layer, "groups", 1) == 1
            and layer.data_format == "channels_last" and kh % 2 == 1 and kw % 2 == 1
            and None not in (h, w) and (kh > h or kw > w))


def convolution(layer, inputs, kernel):
    r"""A convolution layer's product; on a CPU, as patches and one matrix product where
    the kernel is larger than the input.

    XLA's CPU convolution is slow in that case: VGG-16's 3x3 convolutions on 2x2x512
    maps (its last stage on 32x32 images) took about 1 s forward and 2 s with both
    gradients at batch 128, against 14 and 51 ms for the same product written as
    \[ y_{n,i,j} = \mathrm{concat}_{a,b}(x^{pad}_{n,i+a,j+b}) \cdot
        \mathrm{reshape}(K, (k_h k_w c, f)) \]
    (every output pixel's neighbourhood gathered into one row, then one product;
    `benchmarks/jax_cpu_convolution.py`). At larger maps XLA's own is the faster, and
    it is used there. Same values up to float32 rounding (the sums run in another
    order).
    """
    if not _patches_apply(layer, inputs, kernel):
        return layer.convolution_op(inputs, kernel)
    kh, kw, channels, filters = kernel.shape
    h, w = inputs.shape[1:3]
    kernel = ops.convert_to_tensor(kernel)
    padded = ops.pad(inputs, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    patches = ops.concatenate([padded[:, i:i + h, j:j + w, :]
                               for i in range(kh) for j in range(kw)], axis=-1)
    product = ops.matmul(ops.reshape(patches, (-1, kh * kw * channels)),
                         ops.reshape(kernel, (kh * kw * channels, filters)))
    return ops.reshape(product, (-1, h, w, filters))


def default_jit(steps=None):
    """True: compiling the step is JAX's way of running it."""
    return True


def slow_convolutions_note(model):
    """One line for a convolutional `model` on a CPU (XLA's CPU convolutions are slow;
    BENCHMARKS.md, "Against the public PyTorch AdaSTE code"), else None."""
    if not registry.MODELS[model].convolutional or jax.default_backend() != "cpu":
        return None
    return (f"Note: JAX runs convolutions slowly on a CPU ({model}: see BENCHMARKS.md, "
            "'Against the public PyTorch AdaSTE code'); --backend larq or --backend torch is "
            "faster here")
