"""Runs the Keras 3 test suite (`tests_keras3/`) under one backend, in its own process.

Keras reads `KERAS_BACKEND` once, at import, so every backend needs a fresh interpreter;
`TF_USE_LEGACY_KERAS` is removed from the environment (it is the Larq front end's
setting, and the Keras 3 front end must not need it). One test file per backend
(`test_keras3_suite_*.py`), so that the main run's workers take them in parallel; each
suite runs on two workers of its own, so that one left running at the end of the main
run still uses both cores.
"""

import os
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# On JAX the whole suite runs in CI's second environment, installed with `.[jax]` (numpy
# 2, a current JAX); here, with the pinned jaxlib 0.7, the products whose backward pass
# is rewritten on those jaxlib versions (`keras3/dense_product.py`) and the layers and
# training that use them.
SUITES = {"jax": ["tests_keras3/test_dense_product.py", "tests_keras3/test_layers.py",
                  "tests_keras3/test_training.py",
                  # LCE export needs the Larq stack, and the export formats TensorFlow
                  # and OpenVINO, which `.[jax]` does not install.
                  "tests_keras3/test_lce_export.py", "tests_keras3/test_keras_export.py"],
          "tensorflow": ["tests_keras3"], "torch": ["tests_keras3"]}


def run_suite(backend):
    """Run `SUITES[backend]` under `backend` in a fresh interpreter; fail with its output."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *SUITES[backend], "-q", "-m", "not slow",
         "-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"tests_keras3 failed under {backend}:\n{output[-6000:]}"
