"""The command line's training methods on Keras 3: `--method NAME` to a recipe.

The Keras 3 twins of `keras_bilevel.keras2.recipes.METHODS` and `make` (Larq's Bop has none:
it is Larq-only), assembled from `keras_bilevel.keras3` objects with the same values:
`adaste` (AdaSTE's sign forward and adaptive backward, Adam from a width-dependent
rate with cosine decay, Glorot initialisation, mu annealed by 1.05 per epoch),
`adaste-reference` (the paper's recipe, `keras_bilevel.keras3.recipes.adaste_reference`,
reference variant), `ste` (`SteSign` with `WeightClip`, Adam at 1e-3) and
`full-precision` (no quantizer). Builds objects; trains nothing.

!!! example
    ```python
    recipe = make("adaste", train_size=54000, epochs=20, steps_per_epoch=422, width=1024)
    model = keras_bilevel.keras3.models.binary_mlp(
        kernel_quantizer=recipe.kernel_quantizer,
        kernel_initializer=recipe.kernel_initializer,
        kernel_constraint=recipe.kernel_constraint)
    ```
"""

import dataclasses
from typing import Any, Callable, Optional

import keras

from keras_bilevel.core import registry
from keras_bilevel.core.recipes import adaste_adam, check_run, width_arguments
from keras_bilevel.keras3 import recipes
from keras_bilevel.keras3.callbacks import AnnealMu, BinarizationGap
from keras_bilevel.keras3.constraints import WeightClip
from keras_bilevel.keras3.quantizers import AdaSTE, SteSign

__all__ = ["LARQ_ONLY", "METHODS", "MethodRecipe", "make"]

LARQ_ONLY = tuple(name for name in registry.METHODS
                  if not registry.supports(registry.METHODS, name, "keras3"))
"""Registered methods that exist on the Larq front end only."""


@dataclasses.dataclass
class MethodRecipe(recipes.Recipe):
    """A `keras_bilevel.keras3.recipes.Recipe` with a kernel constraint (a zero-argument
    factory, or None), as the Larq path's `Recipe` has."""

    kernel_constraint: Optional[Callable[[], Any]] = None


def _adam_cosine(learning_rate, epochs, steps_per_epoch):
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=epochs * steps_per_epoch))


def _adam_recipe(method, train_size, epochs, steps_per_epoch, batch_size, learning_rate,
                 quantizer, constraint, callbacks, sources):
    check_run(method, train_size=train_size, epochs=epochs,
               steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    return MethodRecipe(
        optimizer=_adam_cosine(learning_rate, epochs, steps_per_epoch),
        kernel_quantizer=quantizer,
        kernel_initializer=lambda: "glorot_uniform",
        kernel_constraint=constraint,
        callbacks=callbacks,
        batch_size=batch_size,
        epochs=epochs,
        sources={"optimizer": f"Adam, learning rate {learning_rate} with cosine decay over "
                              "the run", "kernel_initializer": "glorot_uniform", **sources},
    )


def adaste(train_size, epochs, steps_per_epoch, batch_size=128, learning_rate=None,
           width=None):
    """`--method adaste`: as `keras_bilevel.keras2.recipes.adaste_recommended` (Adam from
    `clip(1e-2 * 64 / width, 1e-3, 1e-2)`, or `learning_rate`)."""
    rate, rate_source = adaste_adam(learning_rate, width)
    return _adam_recipe(
        "adaste", train_size, epochs, steps_per_epoch, batch_size, rate,
        quantizer=lambda: AdaSTE(), constraint=None,
        callbacks=[AnnealMu(rate=1.05), BinarizationGap()],
        sources={"kernel_quantizer": "AdaSTE() defaults: sign forward, adaptive backward",
                 "callbacks": "AnnealMu(1.05) as in docs/method.md section 2",
                 "optimizer": rate_source})


def ste(train_size, epochs, steps_per_epoch, batch_size=128, learning_rate=1e-3):
    """`--method ste`: as `keras_bilevel.keras2.recipes.ste`, with `SteSign` and `WeightClip`."""
    return _adam_recipe(
        "ste", train_size, epochs, steps_per_epoch, batch_size, learning_rate,
        quantizer=lambda: SteSign(), constraint=lambda: WeightClip(), callbacks=[],
        sources={"kernel_quantizer": "SteSign (sign forward, identity gradient for "
                                     "|theta| <= 1): BinaryConnect / STE",
                 "kernel_constraint": "WeightClip: latent weights clipped to [-1, 1]"})


def full_precision(train_size, epochs, steps_per_epoch, batch_size=128,
                   learning_rate=1e-3):
    """`--method full-precision`: the same models without quantizers."""
    return _adam_recipe(
        "full-precision", train_size, epochs, steps_per_epoch, batch_size, learning_rate,
        quantizer=lambda: None, constraint=None, callbacks=[],
        sources={"kernel_quantizer": "none: real-valued weights"})


def adaste_reference(train_size, epochs, steps_per_epoch, batch_size=128):
    """`--method adaste-reference`: the paper's recipe with the reference variant."""
    recipe = recipes.adaste_reference(train_size, epochs, steps_per_epoch,
                                      variant="reference", batch_size=batch_size)
    return MethodRecipe(**vars(recipe))  # no constraint: the latent weights are unbounded


METHODS = {
    "adaste": adaste,
    "adaste-reference": adaste_reference,
    "ste": ste,
    "full-precision": full_precision,
}
"""The Keras 3 front end's recipe for every method it supports, by command-line name."""


def make(method, train_size, epochs, steps_per_epoch, batch_size=128, width=None):
    """The recipe named `method` (one of `METHODS`) for a run of the given length, on
    binary layers of `width` (as `keras_bilevel.keras2.recipes.make`)."""
    if method in LARQ_ONLY:
        raise ValueError(f"--method {method} is Larq-only (Larq's {method.title()} "
                         "optimizer): use --backend larq, or another method on Keras 3")
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)}.")
    return METHODS[method](train_size, epochs, steps_per_epoch, batch_size=batch_size,
                           **width_arguments(method, width))
