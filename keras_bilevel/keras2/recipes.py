"""Training recipes: every setting of a published protocol in one call.

A recipe only assembles public objects (optimizer, initializer, quantizer, callbacks);
it trains nothing itself.
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import dataclasses
from typing import Any, Callable, Optional

import larq
import tensorflow as tf

from keras_bilevel.core import recipes as _recipes
from keras_bilevel.core.binding import bind
from keras_bilevel.keras2 import callbacks, initializers, models, optimizers, quantizers
from keras_bilevel.keras2.callbacks import AnnealMu, BinarizationGap, LinkLossScale
from keras_bilevel.keras2.initializers import RandomSign
from keras_bilevel.keras2.quantizers import AdaSTE

__all__ = [
    "METHODS",
    "Recipe",
    "adaste_recommended",
    "adaste_reference",
    "bop",
    "full_precision",
    "make",
    "ste",
]


@dataclasses.dataclass
class Recipe(_recipes.Recipe):
    """What `model.compile` and `model.fit` need, with where each value comes from.

    `kernel_quantizer`, `kernel_initializer` and `kernel_constraint` are zero-argument
    factories: call them once per layer (`keras_bilevel.keras2.models` builders accept them as
    they are); `kernel_constraint` is None when the recipe has none.
    """

    kernel_constraint: Optional[Callable[[], Any]] = None


_LARQ = dataclasses.replace(
    models.FRONT_END, recipe=Recipe, callbacks=callbacks, initializers=initializers,
    optimizers=optimizers, quantizers=quantizers, extra_callbacks=(LinkLossScale,),
    extra_callbacks_note="; LinkLossScale keeps grad_eps exact under mixed_float16")

# The values, their sources and the documentation are written once, in
# `keras_bilevel.core.recipes`, for both front ends.
adaste_reference = bind(_LARQ, _recipes.adaste_reference, __name__)
_check_run = _recipes.check_run


def _adam_cosine(learning_rate, epochs, steps_per_epoch):
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=epochs * steps_per_epoch
    )
    return tf.keras.optimizers.Adam(schedule)


def adaste_recommended(train_size, epochs, steps_per_epoch, learning_rate=None,
                       batch_size=128, width=None):
    """The project's recommended AdaSTE configuration (what `--method adaste` runs).

    AdaSTE with its default sign forward and adaptive backward, Adam with cosine decay
    from `lr = clip(1e-2 * 64 / width, 1e-3, 1e-2)` (`keras_bilevel.core.recipes.
    adaste_learning_rate`, chosen on validation; `sources["optimizer"]` says why), the
    layers' default (Glorot) initialisation, and mu annealed by 1.05 per epoch.

    !!! example
        ```python
        recipe = adaste_recommended(train_size=54000, epochs=20, steps_per_epoch=422,
                                    width=1024)  # Adam from 1e-3
        model.compile(recipe.optimizer, loss, metrics=["accuracy"])
        model.fit(train, epochs=recipe.epochs, callbacks=recipe.callbacks)
        ```

    # Arguments
        train_size, epochs, steps_per_epoch: the run (the cosine decay spans it).
        learning_rate: Adam's initial rate; None (the default) takes it from `width`.
        batch_size: the batch size.
        width: the binary layers' typical fan-in (an MLP's hidden units); None for the
            convolutional models (1e-3).
    """
    _check_run("adaste_recommended", train_size=train_size, epochs=epochs,
               steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    rate, rate_source = _recipes.adaste_adam(learning_rate, width)
    return Recipe(
        optimizer=_adam_cosine(rate, epochs, steps_per_epoch),
        kernel_quantizer=lambda: AdaSTE(),
        kernel_initializer=lambda: "glorot_uniform",
        callbacks=[AnnealMu(rate=1.05), BinarizationGap(), LinkLossScale()],
        batch_size=batch_size,
        epochs=epochs,
        sources={
            "kernel_quantizer": "AdaSTE() defaults: sign forward (safe with small latent "
                                "weights, see AdaSTE's docstring), adaptive backward",
            "optimizer": rate_source,
            "kernel_initializer": "glorot_uniform: Keras' default for these layers",
            "callbacks": "AnnealMu(1.05) as in docs/method.md section 2",
        },
    )


def ste(train_size, epochs, steps_per_epoch, learning_rate=1e-3, batch_size=128):
    """The BinaryConnect/STE baseline: Larq `ste_sign` + `weight_clip` + Adam."""
    _check_run("ste", train_size=train_size, epochs=epochs,
               steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    return Recipe(
        optimizer=_adam_cosine(learning_rate, epochs, steps_per_epoch),
        kernel_quantizer=lambda: "ste_sign",
        kernel_initializer=lambda: "glorot_uniform",
        kernel_constraint=lambda: "weight_clip",
        callbacks=[],
        batch_size=batch_size,
        epochs=epochs,
        sources={
            "kernel_quantizer": "larq ste_sign (sign forward, identity gradient for "
                                "|theta| <= 1): BinaryConnect / STE",
            "kernel_constraint": "larq weight_clip: latent weights clipped to [-1, 1]",
            "optimizer": f"Adam, learning rate {learning_rate} with cosine decay",
        },
    )


def bop(train_size, epochs, steps_per_epoch, threshold=1e-8, gamma=1e-4,
        learning_rate=1e-3, batch_size=128):
    """Larq's latent-free Bop for the binary weights, Adam for the rest.

    The binary weights are +-1 themselves (`NoOp(precision=1)`, initialised to +-1);
    Bop flips a weight when its gradient's moving average exceeds `threshold`.
    """
    _check_run("bop", train_size=train_size, epochs=epochs,
               steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    optimizer = larq.optimizers.CaseOptimizer(
        (larq.optimizers.Bop.is_binary_variable,
         larq.optimizers.Bop(threshold=threshold, gamma=gamma)),
        default_optimizer=tf.keras.optimizers.legacy.Adam(learning_rate),
    )
    return Recipe(
        optimizer=optimizer,
        kernel_quantizer=lambda: larq.quantizers.NoOp(precision=1),
        kernel_initializer=lambda: RandomSign(1.0),
        callbacks=[],
        batch_size=batch_size,
        epochs=epochs,
        sources={
            "optimizer": f"larq Bop(threshold={threshold}, gamma={gamma}) in a "
                         "CaseOptimizer with Adam for real-valued variables (Larq docs)",
            "kernel_quantizer": "NoOp(precision=1): the weights are binary themselves",
            "kernel_initializer": "+-1 with random signs",
        },
    )


def full_precision(train_size, epochs, steps_per_epoch, learning_rate=1e-3,
                   batch_size=128):
    """The real-valued reference: same models with no quantizer, Adam with cosine decay."""
    _check_run("full_precision", train_size=train_size, epochs=epochs,
               steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    return Recipe(
        optimizer=_adam_cosine(learning_rate, epochs, steps_per_epoch),
        kernel_quantizer=lambda: None,
        kernel_initializer=lambda: "glorot_uniform",
        callbacks=[],
        batch_size=batch_size,
        epochs=epochs,
        sources={"kernel_quantizer": "none: real-valued weights"},
    )


def _adaste_reference_variant(train_size, epochs, steps_per_epoch, batch_size=128):
    return adaste_reference(train_size, epochs, steps_per_epoch, variant="reference",
                            batch_size=batch_size)


METHODS = {
    "adaste": adaste_recommended,
    "adaste-reference": _adaste_reference_variant,
    "ste": ste,
    "bop": bop,
    "full-precision": full_precision,
}
"""The command line's --method names."""


def make(method, train_size, epochs, steps_per_epoch, batch_size=128, width=None):
    """The recipe named `method` (one of `METHODS`) for a run of the given length, on
    binary layers of `width` (an MLP's hidden units; None for the convolutional models),
    which sets `adaste`'s learning rate."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)}.")
    return METHODS[method](train_size, epochs, steps_per_epoch, batch_size=batch_size,
                           **_recipes.width_arguments(method, width))
