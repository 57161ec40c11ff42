"""Fixtures for the Keras 3 tests, which run under the backend named by KERAS_BACKEND.

Run one backend per process (Keras reads the backend once, at import):
`KERAS_BACKEND=jax python -m pytest tests_keras3`. The main test run does this for
every backend (`tests/test_keras3_suite_*.py`). Nothing here may import keras_bilevel's
Larq front end (the package top level, TensorFlow in Keras 2 mode, Larq).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

# Imported first, keras_bilevel.keras3 makes `import keras_bilevel` load no Larq front end,
# so a test module may import `keras_bilevel.core.stacks` (or the like) before it.
import keras_bilevel.keras3  # noqa: E402,F401

BACKEND = keras.backend.backend()
# Backends whose `fit(..., jit_compile=True)` compiles the step with XLA. PyTorch's
# jit_compile is torch.compile, which Keras does not turn on by default.
JIT_COMPILE = BACKEND in ("jax", "tensorflow")


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield
