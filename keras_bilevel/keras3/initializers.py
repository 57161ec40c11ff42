"""Initialisers for binary latent weights, for Keras 3 (every backend).

The Keras 3 twin of `keras_bilevel.keras2.initializers`; imports neither TensorFlow nor Larq.
"""

import random

import keras
from keras import ops

from keras_bilevel.core.arguments import check_random_sign

__all__ = ["RandomSign"]


@keras.saving.register_keras_serializable(package="keras_bilevel")
class RandomSign(keras.initializers.Initializer):
    r"""Latent weights of +-`magnitude` with independent, equally likely signs.

    \\[ \theta_i = \text{magnitude} \cdot \epsilon_i, \qquad \epsilon_i \in \{-1, +1\} \\]

    The AdaSTE reference recipe starts every latent weight at +-10, deep in the saturated
    region of the relaxation, so the relaxed network starts as the binary one. As with
    Keras 3's own random initialisers, one instance gives the same values at every call:
    with `seed=None` a seed is drawn once, when the instance is made (reproducible after
    `keras.utils.set_random_seed`); make one instance per layer.

    !!! example
        ```python
        keras_bilevel.keras3.layers.QuantDense(
            64, kernel_quantizer=AdaSTE(), kernel_initializer=RandomSign(10.0))
        ```

    # Arguments
        magnitude: the absolute value of every weight (> 0).
        seed: an int for reproducible values, or None.
    """

    def __init__(self, magnitude=10.0, seed=None):
        self.magnitude, self.seed = check_random_sign(magnitude, seed)
        self._seed = seed if seed is not None else random.randint(1, 10**9)

    def __call__(self, shape, dtype=None):
        uniform = keras.random.uniform(shape, seed=self._seed)
        signs = ops.where(uniform < 0.5, -1.0, 1.0)
        return ops.cast(self.magnitude * signs, dtype or keras.config.floatx())

    def get_config(self):
        return {"magnitude": self.magnitude, "seed": self.seed}
