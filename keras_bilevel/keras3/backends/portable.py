"""Any Keras 3 backend, with `keras.ops` alone: the defaults the other backends refine.

Nothing is fused or rewritten; steps run as Keras runs them. The JAX, TensorFlow and
PyTorch modules take what they do not change from here.
"""

import functools

import keras
from keras import ops

NAME = keras.backend.backend()
# Eager steps: one division is fewer kernels than the division-free form.
DIVISION_FREE_RECIPROCAL = False
CONVERTS_TO_TFLITE = False


def quantizer_input(x):
    """x as a tensor (a variable's value)."""
    return ops.convert_to_tensor(x)


def variable_value(x):
    """A Keras variable as its backend's value; anything else as a tensor."""
    return x.value if isinstance(x, keras.Variable) else ops.convert_to_tensor(x)


def on_values(function, tensor_arguments, value_of):
    """`function` with its first `tensor_arguments` arguments, and `g_total`, passed
    through `value_of` (a backend's `variable_value`): how a fused pass takes tensors."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        args = [value_of(a) if i < tensor_arguments else a for i, a in enumerate(args)]
        if kwargs.get("g_total") is not None:
            kwargs["g_total"] = value_of(kwargs["g_total"])
        return function(*args, **kwargs)

    return run


def fuse_formulas(formulas):
    """No formula replaced: `formulas`' `keras.ops` forms run as they are."""
    return {}


def latent_momentum_step(formula_ops):
    """None: the update runs as `keras.ops` writes it."""
    return None


def replica_sum(value):
    """None: no replicas to sum over."""
    return None


def dense_product(x, kernel):
    """`x @ kernel`."""
    return ops.matmul(x, kernel)


def convolution(layer, inputs, kernel):
    """`layer.convolution_op(inputs, kernel)`: the Keras convolution layer's own."""
    return layer.convolution_op(inputs, kernel)


def uses_transposed_backward():
    """False: the product's backward pass is Keras'."""
    return False


def compile_ready(model):
    """`model` as it is: nothing stops this backend's compiler."""
    return model


def default_jit(steps=None):
    """False: steps run as Keras runs them."""
    return False


def is_compile_error(error):
    """False: no compiler to fall back from."""
    return False


def slow_convolutions_note(model):
    """None: nothing to warn of."""
    return None
