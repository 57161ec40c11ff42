"""Whether `keras_bilevel` is being imported only as the parent of a light subpackage.

`import keras_bilevel` must load the Larq front end at once: Larq resolves
`kernel_quantizer="ada_ste"` through a registry that only an imported module can fill, and
TensorFlow must be put in Keras 2 mode before anything touches `tf.keras`. Yet Python
imports a package before any of its submodules, so `import keras_bilevel.keras3` (which
must load no TensorFlow under JAX or PyTorch) and `keras-bilevel` (which must configure
TensorFlow's logging before TensorFlow loads) run the package's `__init__` first. No
import hook tells `__init__` which submodule was asked for; the name is a local variable
of the import machinery's frame, so this module reads it there. It is the only place that
does so.
"""

import sys

# Subpackages that load without the Larq front end.
LIGHT_SUBPACKAGES = ("keras_bilevel.keras3", "keras_bilevel.cli", "keras_bilevel.core",
                     "keras_bilevel.__main__")


def is_light(name):
    """Whether module `name` is, or is inside, a light subpackage."""
    return isinstance(name, str) and any(
        name == light or name.startswith(light + ".") for light in LIGHT_SUBPACKAGES)


def importing_a_light_subpackage():
    """Whether the import in progress is that of a light subpackage.

    The name being imported is a local of the import machinery's `_find_and_load(name,
    ...)` frame, and of runpy's `_get_module_details(mod_name, ...)` for
    `python -m keras_bilevel.cli`.
    """
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_find_and_load" and is_light(frame.f_locals.get("name")):
            return True
        if code.co_name == "_get_module_details" and is_light(frame.f_locals.get("mod_name")):
            return True
        frame = frame.f_back
    return False
