"""`import keras_bilevel` puts TensorFlow in Keras 2 mode, or says why it cannot."""

import os
import subprocess
import sys

import pytest

ENV = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
ENV["TF_CPP_MIN_LOG_LEVEL"] = "3"


def _run(code, **extra_env):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**ENV, **extra_env}, timeout=300)
    return result.returncode, result.stdout + result.stderr


WORKS = """
{before}
import keras_bilevel, larq, tensorflow as tf
assert tf.keras.Model.__module__.startswith("tf_keras"), tf.keras.Model.__module__
assert "tf_keras" in larq.optimizers.Bop.__mro__[1].__module__
from tensorflow.keras.optimizers.legacy import Optimizer
assert Optimizer.__module__.startswith("tf_keras"), Optimizer.__module__
print("OK")
"""


@pytest.mark.parametrize("before", ["", "import tensorflow as tf", "import keras",
                                    "import numpy"])
def test_import_selects_keras2(before):
    code, output = _run(WORKS.format(before=before))
    assert code == 0 and "OK" in output, output


@pytest.mark.parametrize("before", ["import tensorflow as tf; tf.keras.layers.Dense",
                                    "from tensorflow.keras import layers"])
def test_keras3_already_bound_raises_a_clear_import_error(before):
    code, output = _run(f"{before}\nimport keras_bilevel")
    assert code != 0
    assert "ImportError: keras_bilevel needs Keras 2" in output, output
    assert "TF_USE_LEGACY_KERAS=1" in output and "import keras_bilevel" in output


# With TF_USE_LEGACY_KERAS=1 set by the user (as Larq's documentation says), `tf.keras` is
# Keras 2 whatever is imported first; keras_bilevel must accept every order.
IMPORT_ORDERS = [
    "import larq; import keras_bilevel",
    "import keras_bilevel; import larq",
    "import tensorflow.keras; import keras_bilevel",
    "from tensorflow.keras import layers; import keras_bilevel",
    "from tensorflow.keras.optimizers import legacy; import keras_bilevel",
    "import tensorflow as tf; tf.keras.layers.Dense; import keras_bilevel",
    "import tf_keras; import keras_bilevel",
    "import larq; import keras_bilevel.keras2.legacy_keras; import keras_bilevel.quantizers",
]


@pytest.mark.parametrize("order", IMPORT_ORDERS)
def test_any_import_order_works_when_the_user_set_legacy_keras(order):
    code = f"""
{order}
import keras_bilevel, larq, tensorflow as tf
assert tf.keras.Model.__module__.startswith("tf_keras"), tf.keras.Model.__module__
layer = larq.layers.QuantDense(3, kernel_quantizer="ada_ste")
assert isinstance(layer.kernel_quantizer, keras_bilevel.AdaSTE)
print("OK")
"""
    status, output = _run(code, TF_USE_LEGACY_KERAS="1")
    assert status == 0 and "OK" in output, output


def test_explicit_keras3_setting_is_overridden_before_tf_keras_is_used():
    code, output = _run(WORKS.format(before=""), TF_USE_LEGACY_KERAS="0")
    assert code == 0 and "OK" in output, output


# The Larq front end lives in keras_bilevel.keras2; every name a user imported from the
# top level before it moved there still works, as an attribute and as a module path.
PUBLIC_FACE = """
import importlib, keras_bilevel
from keras_bilevel import keras2
for name in ("callbacks", "data", "initializers", "models", "optimizers", "quantizers",
             "recipes", "formulas"):
    module = getattr(keras2, name)
    assert getattr(keras_bilevel, name) is module, name
    assert importlib.import_module("keras_bilevel." + name) is module, name
assert keras_bilevel.math is keras2.formulas  # the name formulas had before
import keras_bilevel.math
from keras_bilevel.quantizers import AdaSTE
from keras_bilevel.callbacks import AnnealMu
assert AdaSTE is keras_bilevel.AdaSTE and AnnealMu is keras2.callbacks.AnnealMu
assert keras_bilevel.export.to_tflite and keras_bilevel.__all__
print("OK")
"""


def test_every_top_level_name_of_the_larq_front_end_still_imports():
    code, output = _run(PUBLIC_FACE)
    assert code == 0 and "OK" in output, output


@pytest.mark.parametrize("name", ["keras_bilevel.core.formulas", "keras_bilevel.core.registry",
                                  "keras_bilevel.cli", "keras_bilevel.cli.parser"])
def test_the_core_and_the_parser_load_without_the_larq_front_end(name):
    code, output = _run(f"import importlib, sys; importlib.import_module({name!r}); "
                        "print(sorted(m for m in ('tensorflow', 'larq', 'keras') "
                        "if m in sys.modules))")
    assert code == 0 and output.strip().endswith("[]"), output
