import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_bilevel  # noqa: E402,F401  (Keras 2 mode before anything else)
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    tf.keras.backend.clear_session()
    yield
