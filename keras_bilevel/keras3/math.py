"""The AdaSTE formulas bound to `keras.ops` (the Keras 3 front end, every backend).

The formulas are written once, in `keras_bilevel._formulas`; this module supplies the
`keras.ops` operations they use, so the same code runs under JAX, TensorFlow and
PyTorch. It exports what `keras_bilevel.math` (the TensorFlow binding of the Larq front
end) does, with the same arguments and values, imports neither TensorFlow nor Larq, and
holds no state.

The reciprocal (of |theta|, in the backward pass) is chosen per backend, as a speed-up
and not part of the formula: on JAX and TensorFlow, whose training steps are compiled,
the division-free `_formulas.division_free_reciprocal` (as the TensorFlow binding), which
XLA fuses into the optimizer's update; a division would be hoisted into a pass of its
own over every kernel. PyTorch runs eagerly, where one division is fewer kernels.

On PyTorch, `sign`, `inner_solution` and `adaste_gradient` are the same formulas bound to
PyTorch's own operations and compiled into one fused kernel each
(`keras_bilevel.keras3.torch_kernels`), which makes an eager AdaSTE step cost what a
`ste_sign` step costs instead of 1.9x it. On TensorFlow they are compiled with XLA
(`tf.function(jit_compile=True)`) also when the training step is not, as the Larq front
end runs them: one pass over the weights each instead of a dozen graph kernels.

!!! example
    ```python
    from keras_bilevel.keras3 import math as ada_math
    ada_math.backward_scale([-10.0, 0.3], [-0.01, 0.01], mu=0.01)  # [0.101, 0.5]
    ```
"""

import functools

import keras
from keras import ops

from keras_bilevel import _formulas
from keras_bilevel._formulas import EXACT_BINARIZER_RTOL, REFERENCE_EXACT_THETA_EPS, VARIANTS  # noqa: F401,E501

__all__ = [*_formulas.CONSTANTS, *_formulas.FORMULAS]

# Guards the division by |theta|; |theta| this small is always inside the dead band.
_TINY = 1e-30
# Backends whose training steps run op by op (no XLA fusion).
_EAGER_BACKENDS = ("torch", "numpy")


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
    return _formulas.division_free_reciprocal(_OPS, x)


_OPS = _formulas.make_ops(
    ops, tensor=ops.convert_to_tensor, f32=_f32, dtype=_dtype, clip=ops.clip,
    to_bits=_to_bits, from_bits=_from_bits, same_sign=_same_sign,
    reciprocal=(_division_reciprocal if keras.backend.backend() in _EAGER_BACKENDS
                else _fused_reciprocal))
sign, is_exact_binarizer, inner_solution, backward_scale, adaste_gradient = _formulas.bind(
    _OPS, __name__)


def _fused_on_device(fused, tensor_arguments):
    """`fused` (a `torch_kernels` function, or one compiled with XLA) with its first
    `tensor_arguments` arguments and `g_total` made tensors on Keras' device, as the
    `keras.ops` binding takes them."""

    def tensor(x):  # a Keras variable as its backend's own variable or tensor
        if not isinstance(x, keras.Variable):
            return ops.convert_to_tensor(x)
        if keras.backend.backend() == "tensorflow":
            # Its value (Keras' convert_to_tensor passes a tf.Variable through): a
            # tf.function traces a variable argument by shape, and under tf.distribute the
            # first mirrored variable is captured by the trace, so that every later call
            # with a variable of that shape read the first one (every 64x64 kernel of a
            # model evaluated as the first one's, found under MultiWorkerMirroredStrategy).
            import tensorflow as tf  # the backend: loaded already

            return tf.convert_to_tensor(x.value)
        return x.value

    @functools.wraps(fused)
    def run(*args, **kwargs):
        args = [tensor(a) if i < tensor_arguments else a for i, a in enumerate(args)]
        if kwargs.get("g_total") is not None:
            kwargs["g_total"] = tensor(kwargs["g_total"])
        return fused(*args, **kwargs)

    run.__module__ = __name__
    return run


def compiled_with_xla(function):
    """`function` as a TensorFlow function compiled with XLA (the TensorFlow backend)."""
    import tensorflow as tf  # the backend: loaded already

    return tf.function(function, jit_compile=True)


if keras.backend.backend() == "torch":  # one fused kernel each (see the docstring)
    from keras_bilevel.keras3 import torch_kernels

    sign = _fused_on_device(torch_kernels.sign, 1)
    inner_solution = _fused_on_device(torch_kernels.inner_solution, 2)
    adaste_gradient = _fused_on_device(torch_kernels.adaste_gradient, 3)
elif keras.backend.backend() == "tensorflow":  # one XLA pass each, as on the Larq path
    sign = _fused_on_device(compiled_with_xla(sign), 1)
    inner_solution = _fused_on_device(compiled_with_xla(inner_solution), 2)
    adaste_gradient = _fused_on_device(compiled_with_xla(adaste_gradient), 3)
