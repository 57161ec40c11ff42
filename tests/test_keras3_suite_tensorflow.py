"""The Keras 3 suite on TensorFlow: `tests/keras3_suite.py`."""

from tests.keras3_suite import run_suite


def test_keras3_suite_on_tensorflow():
    run_suite("tensorflow")
