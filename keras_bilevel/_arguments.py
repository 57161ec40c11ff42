"""Checks of the AdaSTE quantizer's arguments, shared by both front ends.

Pure Python (no tensor library, Keras or Larq): each front end's `AdaSTE.__init__` calls
`check_adaste_arguments` so that both accept and refuse the same values, with the same
messages.
"""

import numbers

from keras_bilevel._formulas import VARIANTS

__all__ = ["check_number", "check_adaste_arguments"]


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
