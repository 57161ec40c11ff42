"""Initialisers for binary latent weights."""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import larq
import tensorflow as tf

from keras_bilevel.core.arguments import check_random_sign

__all__ = ["RandomSign"]


@larq.utils.register_alias("random_sign")
@larq.utils.register_keras_custom_object
@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class RandomSign(tf.keras.initializers.Initializer):
    r"""Latent weights of +-`magnitude` with independent, equally likely signs.

    \\[ \theta_i = \text{magnitude} \cdot \epsilon_i, \qquad \epsilon_i \in \{-1, +1\} \\]

    The AdaSTE reference recipe starts every latent weight at +-10, deep in the saturated
    region of the relaxation, so the relaxed network starts as the binary one. With a
    `seed`, every call gives the same values (as Keras' seeded initialisers do).

    !!! example
        ```python
        larq.layers.QuantDense(64, kernel_quantizer="ada_ste",
                               kernel_initializer=RandomSign(10.0))
        larq.layers.QuantDense(64, kernel_initializer="random_sign")
        ```

    # Arguments
        magnitude: the absolute value of every weight (> 0).
        seed: an int for reproducible values, or None.
    """

    def __init__(self, magnitude=10.0, seed=None):
        self.magnitude, self.seed = check_random_sign(magnitude, seed)

    def __call__(self, shape, dtype=None, **kwargs):
        dtype = tf.as_dtype(dtype or tf.keras.backend.floatx())
        if self.seed is None:
            uniform = tf.random.uniform(shape)
        else:
            uniform = tf.random.stateless_uniform(shape, seed=[self.seed, 0])
        signs = tf.where(uniform < 0.5, -1.0, 1.0)
        return tf.cast(self.magnitude * signs, dtype)

    def get_config(self):
        return {"magnitude": self.magnitude, "seed": self.seed}
