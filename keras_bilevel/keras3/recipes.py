"""Training recipes for Keras 3: every setting of a published protocol in one call.

The Keras 3 twin of `keras_bilevel.recipes.adaste_reference` (same values, same
`sources`), assembled from Keras 3 objects only; it trains nothing itself and imports
neither TensorFlow nor Larq.
"""

import dataclasses
from typing import Any, Callable

import keras

from keras_bilevel.keras3.callbacks import AnnealMu, BinarizationGap, NonFiniteSteps
from keras_bilevel.keras3.initializers import RandomSign
from keras_bilevel.keras3.optimizers import LatentMomentum
from keras_bilevel.keras3.quantizers import AdaSTE

__all__ = ["Recipe", "adaste_reference"]


@dataclasses.dataclass
class Recipe:
    """What `model.compile` and `model.fit` need, with where each value comes from.

    `kernel_quantizer` and `kernel_initializer` are zero-argument factories: call them
    once per layer.
    """

    optimizer: Any
    kernel_quantizer: Callable[[], Any]
    kernel_initializer: Callable[[], Any]
    callbacks: list
    batch_size: int
    epochs: int
    sources: dict


def adaste_reference(
    train_size,
    epochs,
    steps_per_epoch,
    momentum=0.9,
    variant="symmetric",
    learning_rate=3e-4,
    batch_size=128,
    default_optimizer="adam",
):
    """The AdaSTE reference training recipe (`shared/adaste-math.md`, section 5), Keras 3.

    !!! example
        ```python
        from keras_bilevel.keras3 import layers, recipes
        recipe = recipes.adaste_reference(
            train_size=len(x_train), epochs=6, steps_per_epoch=len(x_train) // 128)
        model = keras.Sequential([
            keras.Input((784,)),
            layers.QuantDense(10, use_bias=False,
                              kernel_quantizer=recipe.kernel_quantizer(),
                              kernel_initializer=recipe.kernel_initializer()),
        ])
        model.compile(recipe.optimizer, loss, metrics=["accuracy"])
        model.fit(x_train, y_train, batch_size=recipe.batch_size, epochs=recipe.epochs,
                  callbacks=recipe.callbacks)
        ```

    # Arguments
        train_size: number of training examples N (sets gradient_scale = (10 N)^2).
        epochs, steps_per_epoch: the length of the run (the cosine decay spans it).
        momentum: 0.9 for CIFAR-10 in the reference, 0.0 for CIFAR-100.
        variant: AdaSTE backward variant, "symmetric" or "reference".
        learning_rate: initial learning rate of the latent weights.
        batch_size: the reference batch size.
        default_optimizer: for the variables that are not binary (none in the paper's
            models, where BatchNorm has no affine parameters).
    """
    for name, value in dict(train_size=train_size, epochs=epochs,
                            steps_per_epoch=steps_per_epoch,
                            batch_size=batch_size).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"adaste_reference: `{name}` must be an int >= 1, "
                             f"got {value!r}.")
    gradient_scale = float(10 * train_size) ** 2
    optimizer = LatentMomentum(
        learning_rate=keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=epochs * steps_per_epoch),
        momentum=momentum,
        gradient_scale=gradient_scale,
        latent_decay=1.0,
        default_optimizer=default_optimizer,
    )
    spec = "shared/adaste-math.md, section 5 (the paper's public reference code)"
    sources = {
        "learning_rate": f"{learning_rate} with cosine decay to 0 over "
                         f"{epochs * steps_per_epoch} steps: {spec}",
        "momentum": f"{momentum}: 0.9 for CIFAR-10, 0.0 for CIFAR-100: {spec}",
        "gradient_scale": f"(10 N)^2 = {gradient_scale:.4g} with N = {train_size} training "
                          f"examples: {spec}",
        "latent_decay": f"1: {spec}",
        "kernel_initializer": f"+-10 with random signs: {spec}",
        "kernel_quantizer": f"AdaSTE(mu=0.01, alpha=0.01, variant={variant!r}, "
                            "relaxed_forward=True): mu0 and alpha from shared/adaste-math.md "
                            "section 1; the relaxed forward is the method's (the loss is "
                            "evaluated at w*(theta))",
        "callbacks": "AnnealMu(1.05): mu times 1.05 at the start of every epoch, capped at "
                     "1/alpha (section 1); BinarizationGap and NonFiniteSteps only log",
        "batch_size": f"{batch_size}: {spec}",
    }
    return Recipe(
        optimizer=optimizer,
        kernel_quantizer=lambda: AdaSTE(mu=0.01, alpha=0.01, variant=variant,
                                        relaxed_forward=True),
        kernel_initializer=lambda: RandomSign(10.0),
        callbacks=[AnnealMu(rate=1.05), BinarizationGap(), NonFiniteSteps()],
        batch_size=batch_size,
        epochs=epochs,
        sources=sources,
    )
