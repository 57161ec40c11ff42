"""Training recipes for Keras 3: every setting of a published protocol in one call.

The Keras 3 twin of `keras_bilevel.recipes.adaste_reference`: the values, their
`sources` and the documentation are written once, in `keras_bilevel._recipes`, and this
module assembles them from Keras 3 objects. It trains nothing itself and imports
neither TensorFlow nor Larq.
"""

import keras

from keras_bilevel import _recipes
from keras_bilevel.keras3 import callbacks, initializers, optimizers, quantizers

__all__ = ["Recipe", "adaste_reference"]


class Recipe(_recipes.Recipe):
    """What `model.compile` and `model.fit` need, with where each value comes from.

    `kernel_quantizer` and `kernel_initializer` are zero-argument factories: call them
    once per layer (`keras_bilevel.keras3.models` builders accept them as they are).
    """


_KERAS3 = _recipes.FrontEnd(recipe=Recipe, keras=keras, callbacks=callbacks,
                            initializers=initializers, optimizers=optimizers,
                            quantizers=quantizers)

adaste_reference = _recipes.bind(_KERAS3, _recipes.adaste_reference, __name__)
