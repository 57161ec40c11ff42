"""What differs per Keras 3 backend, in one module per backend, chosen once.

Keras reads its backend once per process; so does this package: `current` is the module
of the running backend (`jax`, `tensorflow`, `torch`, or `portable` for any other), and
every other module of `keras_bilevel.keras3` asks it, never `keras.backend.backend()`.
Each backend module provides the same names:

- `NAME`: the Keras backend's name;
- `DIVISION_FREE_RECIPROCAL`: whether the formulas' reciprocal avoids the division (where
  the step is compiled and the reciprocal fuses into the update);
- `quantizer_input(x)`: a latent kernel as a tensor a custom gradient may take;
- `fuse_formulas(formulas)`: the formulas run as one pass each on this backend, a dict
  of those it replaces (`sign`, `inner_solution`, `adaste_gradient`);
- `latent_momentum_step(ops)`: `LatentMomentum`'s update as one pass, or None;
- `replica_sum(value)`: a value summed over data-parallel replicas, or None;
- `dense_product(x, kernel)`: a dense layer's product with the fastest backward pass;
- `convolution(layer, inputs, kernel)`: a convolution layer's product, the fastest way
  this backend has;
- `CONVERTS_TO_TFLITE`: whether this process can write a TFLite file itself;
- `compile_ready(model)`: the model with what stops this backend's compiler removed
  (every builder of `keras_bilevel.keras3.models` returns its models through it);
- `default_jit(steps)`, `is_compile_error(error)`, `slow_convolutions_note(model)`: the
  command line's choices for this backend.

!!! example
    ```python
    from keras_bilevel.keras3.backends import current as backend
    backend.NAME  # "jax"
    ```
"""

import importlib

import keras

__all__ = ["current"]

_MODULES = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}

current = importlib.import_module(
    f"{__name__}.{_MODULES.get(keras.backend.backend(), 'portable')}")
