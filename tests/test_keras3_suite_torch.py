"""The Keras 3 suite on PyTorch: `tests/keras3_suite.py`."""

from tests.keras3_suite import run_suite


def test_keras3_suite_on_torch():
    run_suite("torch")
