"""How the core's functions become a front end's: one `bind`, one `FrontEnd`.

The core writes each formula, architecture and recipe once, as a function whose first
argument is what differs per front end: the tensor operations (`ops`, for the formulas)
or the front end's modules (`FrontEnd`, for models and recipes). `bind` fixes that first
argument and gives the result to a front end's module, so that `help()` there shows the
core's name, docstring and signature without the bound argument.

!!! example
    ```python
    binary_mlp = bind(LARQ_FRONT_END, architectures.binary_mlp, __name__)
    ```
"""

import dataclasses
import functools
import inspect
from typing import Any

__all__ = ["FrontEnd", "bind"]


@dataclasses.dataclass(frozen=True)
class FrontEnd:
    """The modules of one front end that the core's builders and recipes use.

    # Attributes
        name: the front end's name in the registries (`"larq"` or `"keras3"`).
        keras: its Keras module (`tf.keras` for Larq, `keras` for Keras 3): `Input`,
            `Model`, `layers` and `optimizers.schedules.CosineDecay`.
        quant_layers: the module of `QuantDense` and `QuantConv2D` (`larq.layers`, or
            `keras_bilevel.keras3.layers`).
        object_type: instances of this type are objects, never factories, even when
            callable (`tf.Module`, or `keras.layers.Layer`).
        recipe: its `Recipe` dataclass.
        callbacks, initializers, optimizers, quantizers: its modules of those names, with
            `AnnealMu`, `BinarizationGap`, `NonFiniteSteps`, `RandomSign`,
            `LatentMomentum` and `AdaSTE`.
        extra_callbacks: callbacks of that front end only, made with no arguments.
        extra_callbacks_note: what they do, appended to `sources["callbacks"]`.
    """

    name: str
    keras: Any
    quant_layers: Any = None
    object_type: type = object
    recipe: Any = None
    callbacks: Any = None
    initializers: Any = None
    optimizers: Any = None
    quantizers: Any = None
    extra_callbacks: tuple = ()
    extra_callbacks_note: str = ""


def bind(first, function, module, then=None):
    """`function` with its first argument fixed to `first`, as a function of `module`;
    `then`, if given, is applied to what it returns (a front end's finishing touch).

    Keeps `function`'s name and docstring, and its signature less the first parameter.
    """

    @functools.wraps(function)
    def bound(*args, **kwargs):
        result = function(first, *args, **kwargs)
        return result if then is None else then(result)

    signature = inspect.signature(function)
    bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    del bound.__wrapped__
    bound.__module__ = module
    return bound
