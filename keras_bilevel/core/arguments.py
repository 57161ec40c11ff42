"""Checks of arguments shared by both front ends: AdaSTE's, RandomSign's, LatentMomentum's.

Pure Python (no tensor library, Keras or Larq): each front end's `AdaSTE.__init__` calls
`check_adaste_arguments` (likewise `RandomSign` and `LatentMomentum`) so that both accept
and refuse the same values, with the same messages.
"""

import numbers

from keras_bilevel.core.formulas import VARIANTS

__all__ = ["check_adaste_arguments", "check_latent_momentum", "check_number",
           "check_random_sign"]


def check_number(owner, name, value, ok, allowed):
    """Raise ValueError naming `owner`'s argument `name` unless `value` is a real number
    (not a bool) for which `ok(value)` holds; `allowed` says what is."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not ok(value):
        raise ValueError(f"{owner}: `{name}` must be {allowed}, got {value!r}.")


def check_adaste_arguments(alpha, mu, max_scale, grad_eps, theta_eps, variant, **flags):
    """Validate AdaSTE's hyperparameters; `flags` (e.g. relaxed_forward) must be bools.

    !!! example
        ```python
        check_adaste_arguments(0.01, 0.01, 0.5, 1e-3, 1e-6, "symmetric",
                               relaxed_forward=False)
        ```
    """
    check_number("AdaSTE", "alpha", alpha, lambda v: v > 0, "> 0")
    check_number("AdaSTE", "mu", mu, lambda v: v >= 0, ">= 0")
    check_number("AdaSTE", "max_scale", max_scale, lambda v: v > 0, "> 0")
    check_number("AdaSTE", "grad_eps", grad_eps, lambda v: v >= 0, ">= 0")
    check_number("AdaSTE", "theta_eps", theta_eps, lambda v: v >= 0, ">= 0")
    if variant not in VARIANTS:
        raise ValueError(f"AdaSTE: `variant` must be one of {VARIANTS}, got {variant!r}.")
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise ValueError(f"AdaSTE: `{name}` must be True or False, got {flag!r}.")


def check_random_sign(magnitude, seed):
    """Validate RandomSign's arguments; return them as stored (`magnitude` a float).

    !!! example
        ```python
        self.magnitude, self.seed = check_random_sign(10, seed=None)
        ```
    """
    if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)) or not (
        magnitude > 0
    ):
        raise ValueError(f"RandomSign: `magnitude` must be > 0, got {magnitude!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"RandomSign: `seed` must be an int or None, got {seed!r}.")
    return float(magnitude), seed


def check_latent_momentum(learning_rate, momentum, gradient_scale, latent_decay, schedule):
    """Validate LatentMomentum's numeric arguments; `schedule` says whether
    `learning_rate` is a learning-rate schedule (then it is not checked). Returns
    `momentum, gradient_scale, latent_decay` as floats.

    !!! example
        ```python
        check_latent_momentum(3e-4, 0.9, 1.0, 1.0, schedule=False)  # (0.9, 1.0, 1.0)
        ```
    """
    def check(name, value, ok, allowed):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise ValueError(f"LatentMomentum: `{name}` must be {allowed}, got {value!r}.")

    if not schedule:
        check("learning_rate", learning_rate, lambda v: v > 0, "> 0 or a schedule")
    check("momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1)")
    check("gradient_scale", gradient_scale, lambda v: v > 0, "> 0")
    check("latent_decay", latent_decay, lambda v: v >= 0, ">= 0")
    return float(momentum), float(gradient_scale), float(latent_decay)
