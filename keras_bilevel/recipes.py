"""Training recipes: every setting of a published protocol in one call.

A recipe only assembles public objects (optimizer, initializer, quantizer, callbacks);
it trains nothing itself.
"""

import keras_bilevel._keras2  # noqa: F401  (Keras 2 mode before TensorFlow)

import dataclasses
from typing import Any, Callable, Optional

import larq
import tensorflow as tf

from keras_bilevel.callbacks import AnnealMu, BinarizationGap, LinkLossScale, NonFiniteSteps
from keras_bilevel.initializers import RandomSign
from keras_bilevel.optimizers import LatentMomentum
from keras_bilevel.quantizers import AdaSTE

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
class Recipe:
    """What `model.compile` and `model.fit` need, with where each value comes from.

    `kernel_quantizer` and `kernel_initializer` are zero-argument factories: call them
    once per layer (`keras_bilevel.models` builders accept them as they are).
    """

    optimizer: Any
    kernel_quantizer: Callable[[], Any]
    kernel_initializer: Callable[[], Any]
    callbacks: list
    batch_size: int
    epochs: int
    sources: dict
    kernel_constraint: Optional[Callable[[], Any]] = None


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
    """The AdaSTE reference training recipe (`shared/adaste-math.md`, section 5).

    !!! example
        ```python
        recipe = keras_bilevel.recipes.adaste_reference(
            train_size=len(x_train), epochs=6, steps_per_epoch=len(x_train) // 128)
        model = keras_bilevel.models.binary_mlp(
            kernel_quantizer=recipe.kernel_quantizer,
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
    """
    _check_run("adaste_reference", train_size=train_size, epochs=epochs,
               steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    gradient_scale = float(10 * train_size) ** 2
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=epochs * steps_per_epoch
    )
    optimizer = LatentMomentum(
        learning_rate=schedule,
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
                     "1/alpha (section 1); BinarizationGap and NonFiniteSteps only log; "
                     "LinkLossScale keeps grad_eps exact under mixed_float16",
        "batch_size": f"{batch_size}: {spec}",
    }
    return Recipe(
        optimizer=optimizer,
        kernel_quantizer=lambda: AdaSTE(mu=0.01, alpha=0.01, variant=variant,
                                        relaxed_forward=True),
        kernel_initializer=lambda: RandomSign(10.0),
        callbacks=[AnnealMu(rate=1.05), BinarizationGap(), NonFiniteSteps(), LinkLossScale()],
        batch_size=batch_size,
        epochs=epochs,
        sources=sources,
    )


def _check_run(recipe, **values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{recipe}: `{name}` must be an int >= 1, got {value!r}.")


def _adam_cosine(learning_rate, epochs, steps_per_epoch):
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=epochs * steps_per_epoch
    )
    return tf.keras.optimizers.Adam(schedule)


def adaste_recommended(train_size, epochs, steps_per_epoch, learning_rate=1e-3,
                       batch_size=128):
    """The project's recommended AdaSTE configuration (what `--method adaste` runs).

    AdaSTE with its default sign forward and adaptive backward, Adam with cosine decay,
    the layers' default (Glorot) initialisation, and mu annealed by 1.05 per epoch.
    """
    _check_run("adaste_recommended", train_size=train_size, epochs=epochs,
               steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    return Recipe(
        optimizer=_adam_cosine(learning_rate, epochs, steps_per_epoch),
        kernel_quantizer=lambda: AdaSTE(),
        kernel_initializer=lambda: "glorot_uniform",
        callbacks=[AnnealMu(rate=1.05), BinarizationGap(), LinkLossScale()],
        batch_size=batch_size,
        epochs=epochs,
        sources={
            "kernel_quantizer": "AdaSTE() defaults: sign forward (safe with small latent "
                                "weights, see AdaSTE's docstring), adaptive backward",
            "optimizer": f"Adam, learning rate {learning_rate} with cosine decay over the "
                         "run: the same optimizer as the STE baseline",
            "kernel_initializer": "glorot_uniform: Keras' default for these layers",
            "callbacks": "AnnealMu(1.05) as in shared/adaste-math.md section 1",
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


# The command line's --method names.
METHODS = {
    "adaste": adaste_recommended,
    "adaste-reference": _adaste_reference_variant,
    "ste": ste,
    "bop": bop,
    "full-precision": full_precision,
}


def make(method, train_size, epochs, steps_per_epoch, batch_size=128):
    """The recipe named `method` (one of `METHODS`) for a run of the given length."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)}.")
    return METHODS[method](train_size, epochs, steps_per_epoch, batch_size=batch_size)
