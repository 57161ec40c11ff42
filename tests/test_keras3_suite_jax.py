"""The Keras 3 suite on JAX (the products and layers that depend on jaxlib 0.7, and what needs the Larq stack): `tests/keras3_suite.py`."""

from tests.keras3_suite import run_suite


def test_keras3_suite_on_jax():
    run_suite("jax")
