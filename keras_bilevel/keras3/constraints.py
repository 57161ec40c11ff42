"""Weight constraints for binary latent weights, for Keras 3 (every backend).

The Keras 3 twin of `larq.constraints.WeightClip` (alias `"weight_clip"`), so that the
straight-through baseline needs no Larq. Imports neither TensorFlow nor Larq.
"""

import keras
from keras import ops

from keras_bilevel.core.arguments import check_number

__all__ = ["WeightClip", "get"]


@keras.saving.register_keras_serializable(package="keras_bilevel")
class WeightClip(keras.constraints.Constraint):
    r"""Clips the latent weights to [-clip_value, clip_value] after every update.

    \\[ \theta \leftarrow \mathrm{clip}(\theta, -c, c) \\]

    !!! example
        ```python
        layers.QuantDense(64, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
        ```

    # Arguments
        clip_value: the bound c (> 0).
    """

    def __init__(self, clip_value=1.0):
        check_number("WeightClip", "clip_value", clip_value, lambda v: v > 0, "> 0")
        self.clip_value = float(clip_value)

    def __call__(self, w):
        return ops.clip(w, -self.clip_value, self.clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


def get(identifier):
    """The constraint for `identifier`: `"weight_clip"` or anything `keras.constraints.get` takes."""
    if identifier == "weight_clip":
        return WeightClip()
    return keras.constraints.get(identifier)
