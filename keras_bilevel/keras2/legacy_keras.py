"""Puts TensorFlow in Keras 2 mode before `tf.keras` or Larq are touched.

Larq is built on Keras 2 (`tf_keras`). TensorFlow resolves `tf.keras` lazily, on first
use, from the environment variable `TF_USE_LEGACY_KERAS`, and routes imports of the form
`from tensorflow.keras... import ...` by a search path fixed when TensorFlow itself is
imported. This module sets the variable, repairs that search path if TensorFlow was
imported before it, and checks that `tf.keras` really is Keras 2. Importing this module
runs the check (once per process), so every module that needs Keras 2 imports it first.

What decides is what `tf.keras` resolves to, not whether it was imported: with
`TF_USE_LEGACY_KERAS=1` set beforehand (as Larq's documentation says), Larq or any code
may import `tensorflow.keras` before this package, and that is Keras 2 already.
"""

import importlib.util
import os
import sys

from keras_bilevel.core import cpu_defaults, stacks

_ALREADY_KERAS3 = (
    "keras_bilevel needs Keras 2 (the `tf-keras` package), as Larq does, but `tf.keras` "
    "was already bound to Keras 3 ({where}) before keras_bilevel was imported. Fix: "
    "import keras_bilevel (or set TF_USE_LEGACY_KERAS=1) before any code uses "
    "`tf.keras`, for example put `import keras_bilevel` first, or run "
    "`TF_USE_LEGACY_KERAS=1 python ...`."
)
_KERAS3_INSTEAD = ("; for Keras 3 on JAX, PyTorch or TensorFlow, import "
                   "keras_bilevel.keras3 instead")
_NO_TF_KERAS = (
    "keras_bilevel needs Keras 2 from the `tf-keras` package, which is not installed or "
    "does not match TensorFlow {tf_version}. Fix: `pip install \"tf-keras=={minor}.*\"`."
)


def _package_dir(name):
    """The folder of package `name`, or None if it is not installed."""
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # a parent package is missing
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _is_keras2_module(module, tf_keras_dir):
    """True when a module imported as `tensorflow.keras...` is one of tf_keras's."""
    if getattr(module, "__name__", "").startswith("tf_keras"):
        return True
    location = getattr(module, "__file__", None)
    if location is None:  # a package: look at where its submodules come from
        location = next(iter(getattr(module, "__path__", None) or []), None)
    if location is None or tf_keras_dir is None:
        return False
    return os.path.realpath(location).startswith(tf_keras_dir + os.sep)


def _keras3_modules():
    """Names of the `tensorflow.keras...` modules already imported from Keras 3."""
    tf_keras_dir = _package_dir("tf_keras")
    if tf_keras_dir is not None:
        tf_keras_dir = os.path.realpath(tf_keras_dir)
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if (name == "tensorflow.keras" or name.startswith("tensorflow.keras."))
        and module is not None
        and not _is_keras2_module(module, tf_keras_dir)
    )


_done = []


def ensure_keras2():
    """Route `tf.keras` to `tf_keras`; raise ImportError if it is already Keras 3.

    Idempotent: after the first successful call it returns at once.
    """
    if _done:
        return
    if stacks.missing_modules("larq"):
        raise ImportError(stacks.missing_message(
            "larq", what="keras_bilevel (the Larq front end, Keras 2)") + _KERAS3_INSTEAD)
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    cpu_defaults.prefer_onednn()
    bound = _keras3_modules()
    if bound:
        where = f"module {bound[0]} was imported from Keras 3"
        raise ImportError(_ALREADY_KERAS3.format(where=where))

    import tensorflow as tf

    keras_api = _package_dir("tf_keras.api._v2.keras")
    if keras_api is None:
        minor = ".".join(tf.__version__.split(".")[:2])
        raise ImportError(_NO_TF_KERAS.format(tf_version=tf.__version__, minor=minor))
    # TensorFlow imported before TF_USE_LEGACY_KERAS was set points its search path at
    # Keras 3; put tf_keras first, as TensorFlow does when the variable is set in time.
    api_dir = os.path.dirname(keras_api)
    if tf.__path__[0] != api_dir:
        tf.__path__.insert(0, api_dir)

    model_module = tf.keras.Model.__module__
    if not model_module.startswith("tf_keras"):
        raise ImportError(_ALREADY_KERAS3.format(where=f"tf.keras.Model is {model_module}"))
    _done.append(True)


ensure_keras2()
