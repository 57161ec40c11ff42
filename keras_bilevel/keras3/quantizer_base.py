"""The base class of the Keras 3 quantizers: a small layer with a precision.

As in Larq, a quantizer is a Keras layer: it chooses its forward pass from the training
flag and attaches its backward pass with `keras.ops.custom_gradient`, so one definition
runs under JAX, TensorFlow and PyTorch. `precision` (bits; 1 for binary) is what
`keras_bilevel.keras3.quantizers.is_binary_variable` and the optimizers read.
"""

import keras

from keras_bilevel.keras3.backends import current as backend

__all__ = ["Quantizer", "quantizer_input"]


def quantizer_input(x):
    """x as a tensor a custom gradient may take (`backends.current.quantizer_input`)."""
    return backend.quantizer_input(x)


class Quantizer(keras.layers.Layer):
    """A quantizer layer: no autocast (the math casts), built at once, no weights.

    # Arguments
        precision: bits of the output (class attribute; None where not set).
    """

    precision = None

    def __init__(self, **kwargs):
        # Keep the dtype of the latent weights as they are read (float16 inside a
        # mixed_float16 layer): the math runs in float32 and casts back to it.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.built = True

    def quantize(self, mode=None, type_check=True, config=None):
        """Nothing to store: the layer applying a quantizer quantizes its own kernel
        (`keras_bilevel.keras3.keras_quantization`), so `model.quantize` passes here
        without a warning."""

    @property
    def weights(self):
        # A quantizer's variables (AdaSTE's mu) are state, not parameters: they stay in
        # `variables` (what compiled steps receive and `.keras` files save) only.
        return []

    def compute_output_shape(self, input_shape):
        return input_shape
