"""PyTorch: eager steps unless compiled, fused AdaSTE kernels.

What differs from `portable`:

- `sign`, `inner_solution`, `adaste_gradient` and `LatentMomentum`'s update run as one
  fused kernel each (`torch_kernels`, TorchInductor), which makes an eager AdaSTE step
  cost what a `ste_sign` step costs (BENCHMARKS.md, "Keras 3 front end: training-step cost");
- a variable reaches them as its value;
- `compile_ready(model)` lets `torch.compile` trace a model's forward pass in one graph;
- `torch.compile` is the default only for runs of at least `COMPILE_MIN_STEPS` steps
  (compiling costs tens of seconds once per process; eager steps with the fused kernels
  are close to compiled ones), and a step it cannot compile runs eagerly instead.
"""

import keras

from keras_bilevel.core import cpu_defaults
from keras_bilevel.keras3.backends import torch_kernels
from keras_bilevel.keras3.backends.portable import (  # noqa: F401  (this backend's too)
    CONVERTS_TO_TFLITE, DIVISION_FREE_RECIPROCAL, convolution, dense_product, on_values,
    quantizer_input, replica_sum, slow_convolutions_note, uses_transposed_backward,
    variable_value)

NAME = "torch"
# Runs of at least this many training steps are compiled by default.
COMPILE_MIN_STEPS = cpu_defaults.COMPILE_MIN_STEPS


def fuse_formulas(formulas):
    """`sign`, `inner_solution` and `adaste_gradient` as `torch_kernels`' fused kernels."""
    return {name: on_values(getattr(torch_kernels, name), count, variable_value)
            for name, count in (("sign", 1), ("inner_solution", 2), ("adaste_gradient", 3))}


def latent_momentum_step(formula_ops):
    """`torch_kernels.latent_momentum_step`, one fused kernel."""
    return torch_kernels.latent_momentum_step


def compile_ready(model):
    """`model`, with what stops `torch.compile` from tracing its forward pass removed.

    Keras' `BatchNormalization` keeps its reduction axes as a list, which Keras' attribute
    tracking wraps in a `TrackedList`; Dynamo cannot pass that object to `torch.mean`,
    so a compiled step broke its graph three times in every BatchNorm layer and ran as
    many small graphs, each with its guards and calls (on the 512-wide MLP the compiled
    step cost what the eager one did). Stored as a tuple, the same axes trace: the step
    compiles to one forward graph. The values are unchanged. Layers not yet built are
    left as they are.

    !!! example
        ```python
        model = backend.compile_ready(keras.Sequential([...]))
        model.compile(..., jit_compile=True)
        ```
    """
    for layer in model._flatten_layers(include_self=False):
        axes = getattr(layer, "_reduction_axes", None)
        if isinstance(layer, keras.layers.BatchNormalization) and isinstance(axes, list):
            # Past Keras' tracking, which would wrap a list again.
            object.__setattr__(layer, "_reduction_axes", tuple(axes))
    return model


def default_jit(steps=None):
    """`torch.compile` for runs of at least `COMPILE_MIN_STEPS` training steps."""
    return steps is not None and steps >= COMPILE_MIN_STEPS


def is_compile_error(error):
    """Whether `error` (or what caused it) was raised by torch.compile's Dynamo/Inductor."""
    while error is not None:
        if type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
            return True
        error = error.__cause__ or error.__context__
    return False
