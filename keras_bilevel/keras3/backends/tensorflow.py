"""TensorFlow: graph steps, XLA only on a GPU by default, `tf.distribute` replicas.

What differs from `portable`:

- the AdaSTE formulas and `LatentMomentum`'s update run compiled with XLA
  (`tf.function(jit_compile=True)`), one pass over the weights each, also when the step
  itself is not compiled, as the Larq front end runs them; with the division-free
  reciprocal, which fuses into that pass;
- a variable reaches a custom gradient or a compiled pass as its value: a `tf.function`
  traces a variable argument by shape, and under `tf.distribute` the first mirrored
  variable would be captured by the trace and read for every later one of that shape;
- `replica_sum` all-reduces over a `tf.distribute` strategy's replicas in sync;
- the step is compiled by default on a GPU only (XLA is slow for convolutions on a CPU);
- this process writes TFLite files itself.
"""

import functools

import keras
import tensorflow as tf
from keras import ops

from keras_bilevel.keras3.backends.portable import (  # noqa: F401  (this backend's too)
    compile_ready, convolution, dense_product, on_values, is_compile_error,
    slow_convolutions_note, uses_transposed_backward)

NAME = "tensorflow"
DIVISION_FREE_RECIPROCAL = True
CONVERTS_TO_TFLITE = True


def quantizer_input(x):
    """x as a tensor; a variable copied (an identity in the graph): TensorFlow's custom
    gradients must not see variables, and `convert_to_tensor` passes them through."""
    if isinstance(x, keras.Variable):
        return ops.copy(x)
    return ops.convert_to_tensor(x)


def variable_value(x):
    """A Keras variable as a tensor of its value (see the module docstring)."""
    if isinstance(x, keras.Variable):
        return tf.convert_to_tensor(x.value)
    return ops.convert_to_tensor(x)


def compiled_with_xla(function):
    """`function` as a TensorFlow function compiled with XLA."""
    return tf.function(function, jit_compile=True)


def fuse_formulas(formulas):
    """`sign`, `inner_solution` and `adaste_gradient` of `formulas`, XLA-compiled."""
    return {name: on_values(compiled_with_xla(getattr(formulas, name)), count,
                            variable_value)
            for name, count in (("sign", 1), ("inner_solution", 2), ("adaste_gradient", 3))}


def latent_momentum_step(formula_ops):
    """The core's `latent_momentum_step` on `formula_ops`, XLA-compiled."""
    from keras_bilevel.core import formulas

    return compiled_with_xla(functools.partial(formulas.latent_momentum_step, formula_ops))


def replica_sum(value):
    """`value` summed over the replicas in sync of a `tf.distribute` strategy, or None
    outside a replica context or with one replica (an all-reduce: a collective)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def default_jit(steps=None):
    """XLA on a GPU only: on a CPU it is slow for convolutions, and for dense models the
    graph with the XLA-compiled AdaSTE passes is as fast."""
    return bool(tf.config.list_physical_devices("GPU"))
