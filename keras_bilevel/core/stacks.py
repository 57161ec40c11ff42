"""Which stacks are installed, and the extra that installs each: no tensor library imported.

keras_bilevel serves four kinds of user, each with one stack (`setup.cfg` extras):

    extra         front end                      what it brings
    [larq]        keras_bilevel (Larq, Keras 2)  tensorflow 2.21, tf-keras, larq, numpy < 2
    [jax]         keras_bilevel.keras3           keras 3 and a current JAX (numpy 2)
    [torch]       keras_bilevel.keras3           keras 3 and PyTorch (CPU wheel)
    [tensorflow]  keras_bilevel.keras3           keras 3 and TensorFlow (numpy 2), also
                                                 what exporting a Keras 3 model needs

This module answers "is it there?" with `importlib.util.find_spec` (which imports
nothing) and words the one-line errors that name the extra to install.

!!! example
    ```python
    from keras_bilevel.core import stacks
    stacks.default_backend()        # "larq" where Larq is installed, else e.g. "jax"
    stacks.require_backend("torch")  # ImportError naming keras-bilevel[torch] if missing
    ```
"""

import importlib.util
import json
import os
import sys

__all__ = ["LCE_MODULES", "BACKENDS", "KERAS3_BACKENDS", "choose_keras_backend", "default_backend",
           "install_hint",
           "installed_backends", "is_installed", "missing_lce_message", "missing_message",
           "missing_modules",
           "require_backend"]

# The importable modules each backend needs, and the extra that installs them.
_MODULES = {
    "larq": ("tensorflow", "tf_keras", "larq"),
    "jax": ("keras", "jax"),
    "torch": ("keras", "torch"),
    "tensorflow": ("keras", "tensorflow"),
}
_NAMES = {"larq": "Larq on Keras 2", "jax": "Keras 3 on JAX", "torch": "Keras 3 on PyTorch",
          "tensorflow": "Keras 3 on TensorFlow"}
BACKENDS = ("larq", "jax", "tensorflow", "torch")
# When the Larq stack is not there, the first of these that is installed (on the MLP
# on a CPU JAX's and PyTorch's compiled steps are the fastest; BENCHMARKS.md).
KERAS3_BACKENDS = ("jax", "torch", "tensorflow")


def install_hint(extra):
    """The command that installs `extra`: `pip install "keras-bilevel[extra]"`."""
    return f'pip install "keras-bilevel[{extra}]"'


def is_installed(module):
    """Whether top-level module `module` can be imported (nothing is imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install or a stub left in sys.modules
        return False


def missing_modules(backend):
    """The modules of `backend`'s stack that are not installed (empty: all there)."""
    return [module for module in _MODULES[backend] if not is_installed(module)]


def installed_backends():
    """The backends in `BACKENDS` whose whole stack is installed."""
    return [backend for backend in BACKENDS if not missing_modules(backend)]


def default_backend():
    """`larq` where its stack is installed; else `KERAS_BACKEND` if set and installed; else
    the first installed of `KERAS3_BACKENDS`; None when none is."""
    installed = installed_backends()
    if "larq" in installed:
        return "larq"
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen in installed:
        return chosen
    return next((backend for backend in KERAS3_BACKENDS if backend in installed), None)


def missing_message(backend, what=None):
    """One line: `what` (default: the backend's name) needs modules that are missing, and
    the command that installs them."""
    missing = missing_modules(backend)
    what = what or f"--backend {backend} ({_NAMES[backend]})"
    return (f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed: {install_hint(backend)}")


# What exporting to Larq Compute Engine needs (a Keras 3 model is rebuilt from Larq
# layers for it): the Larq stack and LCE, the `lce` extra.
LCE_MODULES = ("tensorflow", "tf_keras", "larq", "larq_compute_engine")


def missing_lce_message(what):
    """One line: `what` needs the LCE modules that are missing, and how to install them;
    None when all are installed."""
    missing = [module for module in LCE_MODULES if not is_installed(module)]
    if not missing:
        return None
    return (f"{what} needs the Larq stack and Larq Compute Engine ({', '.join(missing)} "
            f"not installed): {install_hint('lce')}")


def require_backend(backend, what=None):
    """Raise ImportError (one line naming the extra) unless `backend`'s stack is installed."""
    if missing_modules(backend):
        raise ImportError(missing_message(backend, what))


def _configured_keras_backend():
    """The backend named in Keras' own configuration file (keras.json), or None."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        return None


def choose_keras_backend():
    """Before Keras 3 is imported: unless `KERAS_BACKEND` is set, or the backend Keras
    would use (keras.json's, else TensorFlow) is installed, set `KERAS_BACKEND` to the
    first installed of `KERAS3_BACKENDS`, so that a JAX- or PyTorch-only install works
    without configuration (Keras writes keras.json naming TensorFlow the first time it
    is imported, installed or not). Returns the backend set, or None (nothing changed)."""
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return None
    installed = installed_backends()
    if (_configured_keras_backend() or "tensorflow") in installed:
        return None
    backend = next((b for b in KERAS3_BACKENDS if b in installed), None)
    if backend is not None:
        os.environ["KERAS_BACKEND"] = backend
    return backend
