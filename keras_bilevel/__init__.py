"""keras_bilevel: binary-weight networks in Keras trained with AdaSTE.

Two front ends share one set of formulas (`keras_bilevel._formulas`):

- the Larq front end (Keras 2), this package's top level: `import keras_bilevel` puts
  TensorFlow in Keras 2 mode (Larq needs it), registers the `"ada_ste"` quantizer with
  Larq and loads every module; import it before anything touches `tf.keras`;
- the Keras 3 front end, `keras_bilevel.keras3` (JAX, TensorFlow or PyTorch), which
  imports neither TensorFlow nor Larq.

When the package is imported only as the parent of `keras_bilevel.keras3` or of the
command line (`keras_bilevel.cli`, which must configure TensorFlow's logging before
TensorFlow loads), nothing of the Larq front end is imported here; its attributes
(`keras_bilevel.AdaSTE`, `keras_bilevel.callbacks`, ...) are then loaded on first use.
"""

import importlib
import sys

__all__ = [
    "AdaSTE",
    "callbacks",
    "data",
    "export",
    "initializers",
    "math",
    "models",
    "optimizers",
    "quantizers",
    "recipes",
]
__version__ = "0.1.0"

# Submodules that must load without the Larq front end.
_LIGHT_SUBMODULES = ("keras_bilevel.keras3", "keras_bilevel.cli", "keras_bilevel.__main__")
_LARQ_MODULES = ("callbacks", "data", "export", "initializers", "math", "models",
                 "optimizers", "quantizers", "recipes")


def _is_light(name):
    return isinstance(name, str) and any(
        name == light or name.startswith(light + ".") for light in _LIGHT_SUBMODULES
    )


def _imported_as_parent_of_light_submodule():
    """Whether the import in progress is that of a light submodule (see the docstring).

    Python imports a package before its submodules; the name being imported is a local
    of the import machinery's `_find_and_load(name, ...)` frame (and of runpy's
    `_get_module_details(mod_name, ...)` for `python -m keras_bilevel.cli`).
    """
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_find_and_load" and _is_light(frame.f_locals.get("name")):
            return True
        if code.co_name == "_get_module_details" and _is_light(frame.f_locals.get("mod_name")):
            return True
        frame = frame.f_back
    return False


def __getattr__(name):
    """The Larq front end's attributes, loaded on first use (light imports only)."""
    if name in _LARQ_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "AdaSTE":
        return importlib.import_module(f"{__name__}.quantizers").AdaSTE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if not _imported_as_parent_of_light_submodule():
    from keras_bilevel import (  # noqa: E402  (_keras2 first: Keras 2 mode)
        _keras2,
        callbacks,
        data,
        export,
        initializers,
        math,
        models,
        optimizers,
        quantizers,
        recipes,
    )
    from keras_bilevel.quantizers import AdaSTE  # noqa: E402
