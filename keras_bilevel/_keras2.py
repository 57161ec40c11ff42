"""Puts TensorFlow in Keras 2 mode before `tf.keras` or Larq are touched.

Larq is built on Keras 2 (`tf_keras`). TensorFlow resolves `tf.keras` lazily, on first
use, from the environment variable `TF_USE_LEGACY_KERAS`, and routes imports of the form
`from tensorflow.keras... import ...` by a search path fixed when TensorFlow itself is
imported. This module sets the variable, repairs that search path if TensorFlow was
imported before it, and checks that `tf.keras` really is Keras 2. It must run before
anything else in the package.
"""

import importlib.util
import os
import sys

_ALREADY_KERAS3 = (
    "keras_bilevel needs Keras 2 (the `tf-keras` package), as Larq does, but `tf.keras` "
    "was already bound to Keras 3 ({where}) before keras_bilevel was imported. Fix: "
    "import keras_bilevel (or set TF_USE_LEGACY_KERAS=1) before any code uses "
    "`tf.keras`, for example put `import keras_bilevel` first, or run "
    "`TF_USE_LEGACY_KERAS=1 python ...`."
)
_NO_TF_KERAS = (
    "keras_bilevel needs Keras 2 from the `tf-keras` package, which is not installed or "
    "does not match TensorFlow {tf_version}. Fix: `pip install \"tf-keras=={minor}.*\"`."
)


def _tf_keras_api_dir():
    spec = importlib.util.find_spec("tf_keras.api._v2.keras")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.dirname(list(spec.submodule_search_locations)[0])


def ensure_keras2():
    """Route `tf.keras` to `tf_keras`; raise ImportError if it is already Keras 3."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    bound = sorted(
        name
        for name, module in list(sys.modules.items())
        if name.startswith("tensorflow.keras")
        and module is not None
        and not getattr(module, "__name__", "").startswith("tf_keras")
    )
    if bound:
        raise ImportError(_ALREADY_KERAS3.format(where=f"module {bound[0]} was imported"))

    import tensorflow as tf

    api_dir = _tf_keras_api_dir()
    if api_dir is None:
        minor = ".".join(tf.__version__.split(".")[:2])
        raise ImportError(_NO_TF_KERAS.format(tf_version=tf.__version__, minor=minor))
    # TensorFlow imported before TF_USE_LEGACY_KERAS was set points its search path at
    # Keras 3; put tf_keras first, as TensorFlow does when the variable is set in time.
    if tf.__path__[0] != api_dir:
        tf.__path__.insert(0, api_dir)

    model_module = tf.keras.Model.__module__
    if not model_module.startswith("tf_keras"):
        raise ImportError(_ALREADY_KERAS3.format(where=f"tf.keras.Model is {model_module}"))
