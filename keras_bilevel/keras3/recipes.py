"""Training recipes for Keras 3: every setting of a published protocol in one call.

The Keras 3 twin of `keras_bilevel.keras2.recipes.adaste_reference`: the values, their
`sources` and the documentation are written once, in `keras_bilevel.core.recipes`, and this
module assembles them from Keras 3 objects. It trains nothing itself and imports
neither TensorFlow nor Larq.
"""

import dataclasses

from keras_bilevel.core import recipes as _recipes
from keras_bilevel.core.binding import bind
from keras_bilevel.keras3 import callbacks, initializers, models, optimizers, quantizers

__all__ = ["Recipe", "adaste_reference"]


class Recipe(_recipes.Recipe):
    """What `model.compile` and `model.fit` need, with where each value comes from.

    `kernel_quantizer` and `kernel_initializer` are zero-argument factories: call them
    once per layer (`keras_bilevel.keras3.models` builders accept them as they are).
    """


_KERAS3 = dataclasses.replace(models.FRONT_END, recipe=Recipe, callbacks=callbacks,
                              initializers=initializers, optimizers=optimizers,
                              quantizers=quantizers)

adaste_reference = bind(_KERAS3, _recipes.adaste_reference, __name__)
