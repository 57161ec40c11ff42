"""keras_bilevel: binary-weight networks in Keras trained with AdaSTE.

The package has three parts (`docs/method.md` describes the method):

- `keras_bilevel.core`: the backend-free core, the AdaSTE formulas, architectures,
  recipes and registries written once;
- `keras_bilevel.keras2`: the Larq front end (Keras 2), re-exported here:
  `import keras_bilevel` puts TensorFlow in Keras 2 mode (Larq needs it), registers the
  `"ada_ste"` quantizer with Larq and loads every module of it; import it before
  anything touches `tf.keras`;
- `keras_bilevel.keras3`: the Keras 3 front end (JAX, TensorFlow or PyTorch), which
  imports neither TensorFlow (unless it is the backend) nor Larq.

`keras_bilevel.export` writes TFLite and Larq Compute Engine files; `keras_bilevel.cli`
is the `keras-bilevel` command. When the package is imported only as the parent of
`keras_bilevel.keras3`, `.cli` or `.core`, nothing of the Larq front end is loaded
(`keras_bilevel._light_import` says how that is told); its attributes
(`keras_bilevel.AdaSTE`, `keras_bilevel.callbacks`, ...) then load on first use.

!!! example
    ```python
    import keras_bilevel, larq
    layer = larq.layers.QuantDense(64, kernel_quantizer="ada_ste",
                                   kernel_initializer="random_sign")
    ```
"""

import importlib
import sys

from keras_bilevel import _light_import

__all__ = [
    "AdaSTE",
    "callbacks",
    "data",
    "export",
    "formulas",
    "initializers",
    "models",
    "optimizers",
    "quantizers",
    "recipes",
]
__version__ = "0.1.0"

# The Larq front end's modules, also importable under their names here
# (`import keras_bilevel.quantizers`), as in every earlier version; `math` is the name
# `formulas` had before 0.2.
_FRONT_END_MODULES = {name: name for name in ("callbacks", "data", "formulas", "initializers",
                                              "models", "optimizers", "quantizers",
                                              "recipes")}
_FRONT_END_MODULES["math"] = "formulas"


def _front_end_module(name):
    module = importlib.import_module(f"{__name__}.keras2.{_FRONT_END_MODULES[name]}")
    sys.modules.setdefault(f"{__name__}.{name}", module)
    return module


def __getattr__(name):
    """The Larq front end's attributes, loaded on first use (after a light import)."""
    if name in _FRONT_END_MODULES:
        return _front_end_module(name)
    if name == "export":
        return importlib.import_module(f"{__name__}.export")
    if name == "AdaSTE":
        return _front_end_module("quantizers").AdaSTE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if not _light_import.importing_a_light_subpackage():
    from keras_bilevel import keras2  # noqa: E402  (Keras 2 mode, then the front end)
    from keras_bilevel import export  # noqa: E402
    from keras_bilevel.keras2 import AdaSTE  # noqa: E402

    for _name in _FRONT_END_MODULES:
        globals()[_name] = _front_end_module(_name)
    del _name
