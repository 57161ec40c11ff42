"""The AdaSTE reference recipe, written once for both front ends.

`keras_bilevel.keras2.recipes.adaste_reference` (Larq, Keras 2) and
`keras_bilevel.keras3.recipes.adaste_reference` (Keras 3) set the same values and say
where each comes from in the same words; only the classes they assemble differ. This
module holds the values, the `sources` text, the argument checks and the `Recipe`
fields; a `keras_bilevel.core.binding.FrontEnd` names the classes. Pure Python: it
imports no Keras, TensorFlow or Larq, so both front ends can use it. A recipe only
assembles objects; it trains nothing.
"""

import dataclasses
from typing import Any, Callable

__all__ = ["ADASTE_LEARNING_RATE", "Recipe", "adaste_adam", "adaste_learning_rate",
           "adaste_reference", "check_run", "width_arguments"]

_SPEC = "docs/method.md, section 6 (the paper's public reference code)"

ADASTE_LEARNING_RATE = 1e-2      # up to ADASTE_BASE_WIDTH
"""`--method adaste` (`adaste_recommended` on both front ends): Adam's initial learning
rate, cosine-decayed over the run, up to `ADASTE_BASE_WIDTH` (see `adaste_learning_rate`
for wider layers)."""
ADASTE_BASE_WIDTH = 64
ADASTE_MIN_LEARNING_RATE = 1e-3  # `--method ste`'s rate, from width 640 up
_ADASTE_LEARNING_RATE_SOURCE = (
    "Adam, learning rate clip(1e-2 x 64 / width, 1e-3, 1e-2) = {lr:.4g} for width {width}, "
    "with cosine decay over the run. Adam moves every latent weight by about the learning "
    "rate a step, and the sign flips of a unit's weights add up over its fan-in, so the "
    "rate falls as 1 / width (muP's scaling of Adam on hidden layers, Yang et al. 2022); "
    "from width 640 it is --method ste's 1e-3, and the two differ only by the estimator. "
    "Chosen on MNIST validation accuracy, where the best rate falls with width "
    "(benchmarks/adaste_map.py; BENCHMARKS.md, 'When does AdaSTE pay?')")


def adaste_learning_rate(width=None):
    """Adam's initial learning rate of `--method adaste` for binary layers of `width`.

    `lr = clip(1e-2 * 64 / width, 1e-3, 1e-2)`

    `width` is the typical fan-in of the binary layers: an MLP's hidden units. Adam moves
    each latent weight by about `lr` a step whatever its gradient, and the weights whose
    sign a step flips move a unit's input together, by an amount that grows with its
    fan-in; the rate falls as `1 / width` to keep that change the same (muP's scaling of
    Adam on hidden layers). None stands for the convolutional models, whose binary layers
    have fan-in 9 x channels >= 576 (their median is above 640): 1e-3.

    !!! example
        ```python
        adaste_learning_rate(64)    # 0.01
        adaste_learning_rate(256)   # 0.0025
        adaste_learning_rate(1024)  # 0.001
        ```
    """
    if width is None:
        return ADASTE_MIN_LEARNING_RATE
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"adaste_learning_rate: `width` must be an int >= 1 or None, got "
                         f"{width!r}.")
    scaled = ADASTE_LEARNING_RATE * ADASTE_BASE_WIDTH / width
    return min(ADASTE_LEARNING_RATE, max(ADASTE_MIN_LEARNING_RATE, scaled))


@dataclasses.dataclass
class Recipe:
    """What `model.compile` and `model.fit` need, with where each value comes from.

    `kernel_quantizer` and `kernel_initializer` are zero-argument factories: call them
    once per layer (the `models` builders of both front ends accept them as they are).
    """

    optimizer: Any
    kernel_quantizer: Callable[[], Any]
    kernel_initializer: Callable[[], Any]
    callbacks: list
    batch_size: int
    epochs: int
    sources: dict


def adaste_adam(learning_rate, width):
    """`(rate, sources["optimizer"])` of `--method adaste`: Adam's initial rate, the
    caller's `learning_rate` or, when it is None, `adaste_learning_rate(width)` (width
    None: convolutional), and where it comes from."""
    if learning_rate is not None:
        return learning_rate, (
            f"Adam, learning rate {learning_rate} with cosine decay over the run (the "
            f"caller's; the recommended rate depends on width, see "
            f"keras_bilevel.core.recipes.adaste_learning_rate)")
    rate = adaste_learning_rate(width)
    return rate, _ADASTE_LEARNING_RATE_SOURCE.format(
        lr=rate, width=width if width is not None else "None (convolutional: 1e-3)")


def width_arguments(method, width):
    """What a front end's `make` passes on about the network's width: `width` for
    `adaste`, whose learning rate depends on it; nothing for the other methods."""
    return {"width": width} if method == "adaste" else {}


def check_run(recipe, **values):
    """Raise ValueError naming `recipe`'s argument unless every value is an int >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{recipe}: `{name}` must be an int >= 1, got {value!r}.")


def adaste_reference(
    front,
    train_size,
    epochs,
    steps_per_epoch,
    momentum=0.9,
    variant="symmetric",
    learning_rate=3e-4,
    batch_size=128,
    default_optimizer="adam",
    mu_rate=1.05,
):
    """The AdaSTE reference training recipe (docs/method.md, section 6).

    LatentMomentum with gradient scale (10 N)^2 and latent decay 1, the learning rate
    decayed to 0 by a cosine over the run, AdaSTE(mu=0.01, alpha=0.01) with the relaxed
    forward pass, latent weights initialised to +-10, and mu annealed by 1.05 per epoch.
    `recipe.sources` says where each value comes from.

    !!! example
        ```python
        from keras_bilevel.keras2 import models           # Larq (Keras 2)
        from keras_bilevel.keras2 import recipes
        # from keras_bilevel.keras3 import models, recipes  # Keras 3
        recipe = recipes.adaste_reference(
            train_size=len(x_train), epochs=6, steps_per_epoch=len(x_train) // 128)
        model = models.binary_mlp(kernel_quantizer=recipe.kernel_quantizer,
                                  kernel_initializer=recipe.kernel_initializer)
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
        mu_rate: mu's growth per epoch (`AnnealMu`): 1.05 in the specification; the
            public code's TinyImageNet script runs 700 epochs with 1.009.
    """
    if isinstance(mu_rate, bool) or not isinstance(mu_rate, (int, float)) or mu_rate < 1:
        raise ValueError(f"adaste_reference: `mu_rate` must be a number >= 1, got "
                         f"{mu_rate!r}.")
    check_run("adaste_reference", train_size=train_size, epochs=epochs,
              steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    gradient_scale = float(10 * train_size) ** 2
    decay_steps = epochs * steps_per_epoch
    schedule = front.keras.optimizers.schedules.CosineDecay(learning_rate,
                                                            decay_steps=decay_steps)
    optimizer = front.optimizers.LatentMomentum(
        learning_rate=schedule,
        momentum=momentum,
        gradient_scale=gradient_scale,
        latent_decay=1.0,
        default_optimizer=default_optimizer,
    )
    sources = {
        "learning_rate": f"{learning_rate} with cosine decay to 0 over {decay_steps} "
                         f"steps: {_SPEC}",
        "momentum": f"{momentum}: 0.9 for CIFAR-10, 0.0 for CIFAR-100: {_SPEC}",
        "gradient_scale": f"(10 N)^2 = {gradient_scale:.4g} with N = {train_size} training "
                          f"examples: {_SPEC}",
        "latent_decay": f"1: {_SPEC}",
        "kernel_initializer": f"+-10 with random signs: {_SPEC}",
        "kernel_quantizer": f"AdaSTE(mu=0.01, alpha=0.01, variant={variant!r}, "
                            "relaxed_forward=True): mu0 and alpha from docs/method.md "
                            "section 2; the relaxed forward is the method's (the loss is "
                            "evaluated at w*(theta))",
        "callbacks": f"AnnealMu({mu_rate}): mu times {mu_rate} at the start of every epoch "
                     "(1.05 in section 2), capped at 1/alpha; BinarizationGap and "
                     "NonFiniteSteps only log"
                     + front.extra_callbacks_note,
        "batch_size": f"{batch_size}: {_SPEC}",
    }
    callbacks = front.callbacks
    return front.recipe(
        optimizer=optimizer,
        kernel_quantizer=lambda: front.quantizers.AdaSTE(mu=0.01, alpha=0.01, variant=variant,
                                                         relaxed_forward=True),
        kernel_initializer=lambda: front.initializers.RandomSign(10.0),
        callbacks=[callbacks.AnnealMu(rate=mu_rate), callbacks.BinarizationGap(),
                   callbacks.NonFiniteSteps(), *(extra() for extra in front.extra_callbacks)],
        batch_size=batch_size,
        epochs=epochs,
        sources=sources,
    )
