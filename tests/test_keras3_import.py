"""The Keras 3 front end imports neither TensorFlow nor Larq; the Larq front end is unchanged.

Each case runs in a fresh interpreter (what is imported is per process).
"""

import os
import subprocess
import sys

import pytest

ENV = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
ENV["TF_CPP_MIN_LOG_LEVEL"] = "3"

LIGHT = """
import os, sys
{statement}
heavy = [name for name in ("tensorflow", "larq", "tf_keras") if name in sys.modules]
assert not heavy, heavy
assert "TF_USE_LEGACY_KERAS" not in os.environ, os.environ["TF_USE_LEGACY_KERAS"]
print("OK")
"""


def _run(code, **env):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**ENV, **env}, timeout=300)
    return result.returncode, result.stdout + result.stderr


# Each way of importing the front end first (the package is imported as its parent).
STATEMENTS = [
    "import keras_bilevel.keras3; import keras_bilevel; keras_bilevel.__version__",
    "import numpy; from keras_bilevel.keras3 import AdaSTE; AdaSTE()(numpy.ones(2), training=True)",
    "from keras_bilevel.keras3.layers import QuantDense; QuantDense(2, kernel_quantizer='ada_ste')",
    "import importlib; importlib.import_module('keras_bilevel.keras3.quantizers')",
]


@pytest.mark.parametrize("backend,statement", [
    *[("jax", statement) for statement in STATEMENTS],
    *[("torch", statement) for statement in STATEMENTS[1:3]],
])
def test_keras3_front_end_is_light(backend, statement):
    status, output = _run(LIGHT.format(statement=statement), KERAS_BACKEND=backend)
    assert status == 0 and "OK" in output, output


def test_larq_attributes_load_on_first_use_after_a_light_import():
    code = """
import sys
import keras_bilevel.keras3, keras_bilevel
assert "larq" not in sys.modules
AdaSTE = keras_bilevel.AdaSTE  # loads the Larq front end (Keras 2 mode first)
import larq
assert isinstance(larq.quantizers.get("ada_ste"), AdaSTE)
assert keras_bilevel.callbacks.AnnealMu and keras_bilevel.keras2.formulas.inner_solution
print("OK")
"""
    status, output = _run(code, KERAS_BACKEND="jax")
    assert status == 0 and "OK" in output, output


@pytest.mark.parametrize("statement", ["import keras_bilevel",
                                       "from keras_bilevel import AdaSTE",
                                       "import keras_bilevel.models"])
def test_the_package_still_registers_ada_ste_with_larq(statement):
    code = f"""
{statement}
import keras_bilevel, larq, os
assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
assert isinstance(larq.quantizers.get("ada_ste"), keras_bilevel.AdaSTE)
print("OK")
"""
    status, output = _run(code)
    assert status == 0 and "OK" in output, output
